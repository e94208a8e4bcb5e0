//! Deliberate faults for the parity harness's own tests (`tests/parity/`, `make parity`).
//!
//! The harness proves it can fail by running vaepipe's side with one of facenet's error-prone
//! details (models.md §7) flipped and checking that the comparison it names fails. Only the
//! hidden `vaepipe parity-dump --mutate NAME` verb ever sets one; every other code path sees
//! `None`, and the check at each site is one relaxed atomic load.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mutation {
    /// KL summed over the batch instead of averaged (models.md §7.1).
    KlSum,
    /// The FC boundary flattens/reshapes in NCHW order instead of TF's NHWC (§7.6).
    FlattenNchw,
    /// A 4×4 stride-1 SAME conv pads 2 before and 1 after instead of 1/2 (§7.5).
    SameSplit,
    /// Batch norm with ε 1e-5 (PyTorch's default) instead of slim's 1e-3 (§7.3).
    BnEpsilon,
    /// Adam's ε added to the bias-corrected √v̂ (PyTorch) instead of TF's uncorrected √v.
    AdamEpsilonHat,
}

static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// Makes `m` active for the rest of the process (the parity-dump verb, before any work).
pub fn activate(m: Mutation) {
    ACTIVE.store(m as u8 + 1, Ordering::Relaxed);
}

/// Whether the harness asked for `m`.
pub fn is_active(m: Mutation) -> bool {
    ACTIVE.load(Ordering::Relaxed) == m as u8 + 1
}
