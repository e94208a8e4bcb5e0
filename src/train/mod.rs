//! Training machinery the `train-vae` and `train-facenet` stages are built from: TF's Adam
//! with checkpointable state, and resumable checkpoints.

pub mod adam;
pub mod checkpoint;
pub mod driver;
