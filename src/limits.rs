//! Limits on sizes that come from users (params, files) and fallible allocation for them: a
//! size past a limit, one that overflows, or one the allocator refuses is an error naming the
//! buffer, not an abort. (An aborted allocation is SIGABRT, which no `catch_unwind` stops: the
//! whole run and the report of its finished stages would be lost.)

use anyhow::{anyhow, Result};

// Upper bounds on size-like params. A value past one is a typo or a test of the machine, not
// an experiment: `input_image_size = 100000` would ask for hundreds of gigabytes, and an
// allocation failure aborts the whole process (finished stages' report included) rather than
// failing one stage. Each bound is far above any published setup.

/// Side in pixels of a crop or an image the pipeline holds (CelebA is 178 × 218).
pub const IMAGE_SIDE: u64 = 2048;
/// Images in one batch.
pub const BATCH_SIZE: u64 = 4096;
/// Bytes of one batch of f32 crops (batch × side² × 3 × 4): what one step holds at least.
pub const BATCH_BYTES: u64 = 8 << 30;
/// Width of a latent or embedding vector.
pub const VECTOR_WIDTH: u64 = 16_384;
/// Images a stage generates or a grid holds.
pub const IMAGE_COUNT: u64 = 10_000_000;
/// Tiles in one PNG grid (faces × amounts).
pub const GRID_TILES: u64 = 4096;

/// The product of `dims`, or an error naming `what` when it overflows.
pub fn product(dims: &[usize], what: &str) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| anyhow!("{what}: {dims:?} elements overflow"))
}

/// `len` copies of `value`, or an error naming `what` when the memory is not there.
pub fn filled<T: Clone>(len: usize, value: T, what: &str) -> Result<Vec<T>> {
    let mut v = with_capacity(len, what)?;
    v.resize(len, value);
    Ok(v)
}

/// An empty vector with room for `len`, or an error naming `what`.
pub fn with_capacity<T>(len: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        anyhow!(
            "{what}: cannot allocate {len} elements ({} bytes)",
            len.saturating_mul(std::mem::size_of::<T>())
        )
    })?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_sizes_are_errors_not_aborts() {
        assert_eq!(product(&[3, 4, 5], "x").unwrap(), 60);
        let err = product(&[usize::MAX, 2], "latents").unwrap_err();
        assert!(err.to_string().contains("latents"), "{err}");
        // More than any address space: try_reserve refuses instead of aborting.
        let err = filled(usize::MAX / 8, 0f64, "latent means").unwrap_err();
        assert!(err.to_string().contains("latent means"), "{err}");
        assert!(with_capacity::<f32>(usize::MAX / 2, "grid").is_err());
        assert_eq!(filled(3, 1u8, "x").unwrap(), [1, 1, 1]);
    }
}
