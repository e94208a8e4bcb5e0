//! TensorFlow's (LevelDB's) CRC masking: checksums stored next to data are masked so that a CRC
//! of bytes that themselves contain CRCs stays well distributed (TF `core/lib/hash/crc32c.h`).
//! The CRC itself is CRC-32C (Castagnoli), computed by the `crc32c` crate.

const MASK_DELTA: u32 = 0xa282_ead8;

/// `Mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`, wrapping.
pub fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// The inverse of [`mask`].
pub fn unmask(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

/// The masked CRC-32C of `data`, as stored in checkpoint entries.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    mask(crc32c::crc32c(data))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;

    #[test]
    fn mask_matches_the_formula_and_unmask_inverts_it() {
        for c in [0u32, 1, 0x1234_5678, u32::MAX, 0x8000_0000] {
            #[allow(clippy::manual_rotate)] // spelled as in TF's crc32c.h on purpose
            let expected = ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8);
            assert_eq!(mask(c), expected);
            assert_eq!(unmask(mask(c)), c);
        }
        // The masked CRC of no bytes, as TF stores it for empty tensors.
        assert_eq!(masked_crc32c(&[]), 0xa282_ead8);
        // CRC-32C check value ("123456789" -> 0xe3069283), i.e. Castagnoli, not zlib's CRC-32.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }
}
