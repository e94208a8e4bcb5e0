//! Stage `synth-faces`: the embedded default dataset. Renders a deterministic synthetic face
//! set in CelebA layout (`celeba/`) and in facenet's aligned identity-folder layout
//! (`casia/`), with truthfully labelled attributes, so the whole pipeline runs on a fresh
//! machine. Same params and seed → byte-identical files on any machine.

use anyhow::Result;
use vaepipe_engine::stage::{ParamIssue, Stage, StageCx};
use vaepipe_facedata::synth::{self, SynthParams};

pub struct SynthFaces;

impl Stage for SynthFaces {
    const KIND: &'static str = "synth-faces";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "renders a deterministic synthetic face set in CelebA and CASIA layouts";
    type Params = SynthParams;

    fn validate(p: &Self::Params) -> Vec<ParamIssue> {
        use crate::limits::IMAGE_COUNT;
        use crate::stages::params::at_most;
        let images = (p.identities as u64).saturating_mul(p.images_per_identity as u64);
        [
            at_most(
                "celeba_images",
                p.celeba_images as u64,
                IMAGE_COUNT,
                "images",
            ),
            at_most(
                "celeba_identities",
                p.celeba_identities as u64,
                IMAGE_COUNT,
                "people",
            ),
            at_most(
                "identities",
                p.identities as u64,
                IMAGE_COUNT,
                "identity folders",
            ),
            at_most(
                "images_per_identity",
                images,
                IMAGE_COUNT,
                "images, identities × images_per_identity",
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn run(p: &Self::Params, cx: &mut StageCx<'_>) -> Result<()> {
        let summary = synth::generate_cancellable(cx.out_dir(), p, cx.seed(), cx.cancel_flag());
        cx.check_cancelled()?;
        let summary = summary?;
        tracing::info!(
            "stage `{}`: {} CelebA-layout images of {} people (partitions {:?}), {} identity folders with {} images",
            cx.stage_name(),
            summary.celeba_images,
            summary.celeba_identities,
            summary.partition_counts,
            summary.casia_identities,
            summary.casia_images
        );
        if summary.wild.images > 0 {
            tracing::info!(
                "stage `{}`: {} raw in-the-wild photos in wild/ ({} without a face, {} with two)",
                cx.stage_name(),
                summary.wild.images,
                summary.wild.no_face,
                summary.wild.two_faces
            );
        }
        Ok(())
    }
}
