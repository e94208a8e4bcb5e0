//! Little-endian base-128 varints as used by both the LevelDB table format and protobuf.
//! Each reader returns the value and the unread rest of the buffer, or `None` when the bytes end
//! mid-varint or the value does not fit the type.

/// Reads a varint that must fit in 64 bits (at most 10 bytes).
pub(crate) fn read_varint64(buf: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return None; // would overflow 64 bits
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &buf[i + 1..]));
        }
    }
    None
}

/// Reads a varint that must fit in 32 bits (at most 5 bytes).
pub(crate) fn read_varint32(buf: &[u8]) -> Option<(u32, &[u8])> {
    let (value, rest) = read_varint64(buf)?;
    if buf.len() - rest.len() > 5 {
        return None;
    }
    u32::try_from(value).ok().map(|v| (v, rest))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap: a panic is a test failure
mod tests {
    use super::*;

    #[test]
    fn decodes_and_rejects() {
        assert_eq!(read_varint64(&[0x00]), Some((0, &[][..])));
        assert_eq!(read_varint64(&[0xac, 0x02, 0x07]), Some((300, &[0x07][..])));
        assert_eq!(read_varint64(&[0x80]), None);
        assert_eq!(read_varint64(&[]), None);
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(read_varint64(&max), Some((u64::MAX, &[][..])));
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(read_varint64(&over), None);
        assert_eq!(
            read_varint32(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Some((u32::MAX, &[][..]))
        );
        assert_eq!(read_varint32(&[0xff, 0xff, 0xff, 0xff, 0x1f]), None);
    }
}
