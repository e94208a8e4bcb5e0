//! A per-step seed, so a step's random draws (flips, dropout, sampling noise) depend only on
//! (seed, step) and a resumed run draws what an uninterrupted one would have.

/// A per-step seed derived from the experiment seed (splitmix64 of seed ⊕ step), so each
/// step's random draws are independent of how the run got there.
pub fn step_seed(seed: u64, step: u64) -> i64 {
    let mut z = seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as i64 & i64::MAX
}
