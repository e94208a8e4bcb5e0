//! What the pipeline computes from latents beyond the models: attribute vectors
//! (facenet's calculate_attribute_vectors) and the linear probes that measure them.

pub mod attribute_vectors;
pub mod probe;
