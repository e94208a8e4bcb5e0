//! The built-in stage kinds of the DFC-VAE face pipeline, one file each, and the registry the
//! engine looks them up in. A kind is a small `vaepipe_engine::stage::Stage` implementation:
//! typed params (hashed into the cache key), the upstream roles it reads, and `run`.

pub mod align;
pub mod align_check;
pub mod attribute_vectors;
pub mod encode;
pub mod params;
pub mod render_attribute;
pub mod synth_faces;
pub mod train_facenet;
pub mod train_vae;

use vaepipe_engine::registry::Registry;

/// Every kind an experiment file can name, in pipeline order.
pub fn registry() -> Registry {
    Registry::new()
        .with::<synth_faces::SynthFaces>()
        .with::<align::Align>()
        .with::<align_check::AlignCheck>()
        .with::<train_facenet::TrainFacenet>()
        .with::<train_vae::TrainVae>()
        .with::<encode::Encode>()
        .with::<attribute_vectors::AttributeVectorsStage>()
        .with::<render_attribute::RenderAttribute>()
}

/// The hooks through which `verify` looks inside tensors and a sweep gets its contact sheet and
/// loss plot.
pub fn hooks() -> vaepipe_engine::Hooks {
    vaepipe_engine::Hooks::default()
        .compare_outputs(crate::formats::compare::describe_difference)
        .sweep_images(crate::formats::sweep_images::build)
}
