//! Training machinery the `train-vae` and `train-facenet` stages are built from: TF's Adam
//! with checkpointable state, and resumable checkpoints.

pub mod adam;
pub mod checkpoint;
pub mod driver;
pub mod metrics;
pub mod seed;

/// TF's `exponential_decay(..., staircase=True)` evaluated with the pre-increment global step,
/// as both trainers' originals do: lr = initial · factor^floor((step − 1) / decay_steps).
pub fn staircase_learning_rate(initial: f64, decay_steps: u64, factor: f64, step: u64) -> f64 {
    let decays = (step.saturating_sub(1) / decay_steps.max(1)) as i32;
    initial * factor.powi(decays)
}
