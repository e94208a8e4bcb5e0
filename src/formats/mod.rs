//! File formats vaepipe writes and reads beside its tensors: facenet-compatible HDF5 files and
//! PNG grids, TensorBoard event files. Model weights live with the models (`crate::models`).

pub mod attribute_vectors_h5;
pub mod compare;
pub mod face_net_spec;
pub mod h5_input;
pub mod h5_output;
pub mod image_grid;
pub mod latents_h5;
pub mod logs_h5;
pub mod plot;
pub mod sweep_images;
pub mod tensorboard;
pub mod vae_spec;
