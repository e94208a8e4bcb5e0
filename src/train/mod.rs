//! Training machinery the `train-vae` stage is built from: TF's Adam with checkpointable
//! state, and resumable checkpoints.

pub mod adam;
pub mod checkpoint;
