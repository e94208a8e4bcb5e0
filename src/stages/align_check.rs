//! Stage `align-check`: decodes every image of a face set in parallel and checks it is an
//! aligned set — readable, RGB-convertible, the expected size, at least the crop — writing
//! `report.json`, `report.txt` and `excluded.txt`. With `on_bad = "skip"` the excluded list is
//! part of the artifact, so stages that read `from.check` skip those files and their keys
//! change when the set does. With `on_bad = "fail"` a bad file fails the stage; the report is
//! then kept in the stage's partial directory, whose path the error names.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use vaepipe_engine::stage::{ParamIssue, Role, Stage, StageCx};
use vaepipe_facedata::align_check::{self, Expectation, FileSet, OnBad};
use vaepipe_facedata::DecodeLimits;

pub struct AlignCheck;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlignCheckParams {
    /// Exact `[width, height]` every image must have (CelebA's aligned set is `[178, 218]`,
    /// facenet's aligned CASIA `[182, 182]`); absent accepts any size at least the crop.
    pub expected_size: Option<[u32; 2]>,
    /// The centre crop training takes; smaller images would be zero-padded.
    pub crop: u32,
    /// `fail`: any unusable image fails the stage. `skip`: unusable images are listed in
    /// `excluded.txt` and left out downstream.
    pub on_bad: OnBad,
    /// Longest side a file's header may claim; larger files are excluded without decoding.
    pub max_image_side: u32,
    /// Most pixels a file's header may claim (width × height).
    pub max_image_pixels: u64,
}

impl Default for AlignCheckParams {
    fn default() -> Self {
        AlignCheckParams {
            expected_size: None,
            crop: 160,
            on_bad: OnBad::Fail,
            max_image_side: DecodeLimits::DEFAULT.max_side,
            max_image_pixels: DecodeLimits::DEFAULT.max_pixels,
        }
    }
}

impl Stage for AlignCheck {
    const KIND: &'static str = "align-check";
    // 2: 16-bit PNGs are accepted (scaled to 8 bits), header size limits (issue 15).
    const VERSION: u32 = 2;
    const ABOUT: &'static str =
        "checks that a face set decodes and is aligned; lists files to skip";
    type Params = AlignCheckParams;

    fn roles() -> &'static [Role] {
        &[Role {
            name: "dataset",
            required: true,
            doc: "identity folders (CASIA layout) or a CelebA root",
        }]
    }

    fn validate(p: &Self::Params) -> Vec<ParamIssue> {
        let mut issues = Vec::new();
        if p.crop == 0 {
            issues.push(ParamIssue {
                path: "crop".into(),
                message: "`crop` must be at least 1".into(),
                help: None,
            });
        }
        if p.max_image_side == 0 || p.max_image_pixels == 0 {
            issues.push(ParamIssue {
                path: "max_image_side".into(),
                message: "`max_image_side` and `max_image_pixels` must be at least 1".into(),
                help: None,
            });
        }
        if p.expected_size.is_some_and(|[w, h]| w == 0 || h == 0) {
            issues.push(ParamIssue {
                path: "expected_size".into(),
                message: "sizes must be at least 1".into(),
                help: None,
            });
        }
        let side = crate::limits::IMAGE_SIDE;
        issues.extend(crate::stages::params::at_most(
            "crop",
            p.crop.into(),
            side,
            "pixels a side",
        ));
        if let Some([w, h]) = p.expected_size {
            let largest = u64::from(w.max(h));
            issues.extend(crate::stages::params::at_most(
                "expected_size",
                largest,
                side * 8,
                "pixels a side of an image",
            ));
        }
        issues
    }

    fn run(p: &Self::Params, cx: &mut StageCx<'_>) -> Result<()> {
        let dataset = cx.require_input("dataset")?.to_path_buf();
        let files = if dataset.join(vaepipe_facedata::celeba::ATTR_FILE).is_file() {
            FileSet::from_celeba(&vaepipe_facedata::CelebA::open(&dataset)?)
        } else {
            FileSet::from_identity_folders(&vaepipe_facedata::IdentityFolders::open(&dataset)?)
        };
        let expect = Expectation {
            size: p.expected_size.map(|[w, h]| (w, h)),
            crop: p.crop,
            limits: DecodeLimits {
                max_side: p.max_image_side,
                max_pixels: p.max_image_pixels,
            },
        };
        let report = align_check::check_cancellable(&files, &expect, cx.cancel_flag());
        cx.check_cancelled()?;
        let Some(report) = report else {
            anyhow::bail!("the check stopped without being asked to");
        };
        tracing::info!(
            "stage `{}`: {} images, {} usable, {} excluded, {} warnings",
            cx.stage_name(),
            report.total,
            report.usable,
            report.excluded,
            report.warnings
        );
        if let Err(err) = report.enforce(p.on_bad, &dataset) {
            report.write(cx.partial_dir())?;
            return Err(anyhow::Error::new(err).context(format!(
                "the full report is in {}",
                cx.partial_dir().join("report.txt").display()
            )));
        }
        report.write(cx.out_dir())?;
        Ok(())
    }
}
