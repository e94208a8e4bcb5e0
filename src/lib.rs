//! vaepipe as a library: the stage kinds of the DFC-VAE face pipeline, the models they train,
//! and the file formats they write. The engine (config, graph, cache, scheduler) lives in
//! `vaepipe-engine` and the torch-free face data in `vaepipe-facedata`; this crate is where
//! torch, images and HDF5 meet them. `main.rs` only parses the command line and dispatches.

pub mod align;
pub mod analysis;
pub mod cli;
pub mod data;
pub mod device;
pub mod formats;
pub mod limits;
pub mod malloc_policy;
pub mod models;
pub mod omp_wait;
pub mod precision;
pub mod stages;
pub mod torch_runtime;
pub mod train;
