//! `vaepipe import-weights`: facenet's weights into vaepipe's safetensors, natively (no
//! TensorFlow). Two sources and two targets:
//!
//! - a TensorFlow V2 checkpoint prefix (`model-20170512-110547.ckpt-250000`, or a train_vae
//!   `model.ckpt-50000`), read with `vaepipe-tfckpt`, or a facenet-pytorch `.pt` state dict;
//! - `--what face-net` (default) writes the Inception-ResNet-v1 variables that `train-vae`'s
//!   `from.perceptual` loads; `--what vae` writes a directory with `vae.safetensors` and
//!   `vae.json`, so `render-attribute` and `modify` work with a user's existing VAE.
//!
//! Layouts (formats.md §4): conv kernels HWIO → OIHW, FC weights [in, out] → [out, in]; BN
//! `beta` and moving statistics as they are. vaepipe's VAEs flatten in NHWC order, like TF,
//! so the FC layers at the flatten boundary need no permutation. Every variable the target net
//! has must be found with the right shape; checkpoint tensors the net does not use (logits,
//! the bottleneck, Adam slots, a VAE checkpoint's copy of the face net) are counted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use tch::nn::VarStore;
use tch::{Device, Tensor};
use vaepipe_tfckpt::DType;

use crate::formats::vae_spec::VaeSpec;
use crate::models::preprocess::{Normalization, Resize};
use crate::models::{self, inception_resnet_v1, VaeArch};

#[derive(clap::Args)]
pub struct ImportWeightsArgs {
    /// A TensorFlow checkpoint prefix (the path without `.index`), or a `.pt` state dict
    source: PathBuf,
    /// Output: a `.safetensors` file (face net) or a directory (VAE)
    #[arg(short, long)]
    output: PathBuf,
    /// What the checkpoint holds
    #[arg(long, value_enum, default_value = "face-net")]
    what: ImportTarget,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ImportTarget {
    /// facenet's Inception-ResNet-v1 (for `from.perceptual`)
    FaceNet,
    /// a train_vae.py DFC-VAE (dfc_vae, dfc_vae_resnet or dfc_vae_large)
    Vae,
    /// MTCNN for `align`: a directory with facenet-pytorch's pnet.pt, rnet.pt, onet.pt
    Mtcnn,
}

pub fn run(args: ImportWeightsArgs) -> Result<ExitCode> {
    let source = &args.source;
    if args.what == ImportTarget::Mtcnn {
        return super::import_mtcnn::run(source, &args.output);
    }
    check_source_exists(source)?;
    let tensors = if source.extension().is_some_and(|e| e == "pt" || e == "pth") {
        let mut vs = VarStore::new(Device::Cpu);
        inception_resnet_v1::InceptionResnetV1::new(
            &vs.root(),
            &inception_resnet_v1::InceptionConfig::facenet(),
            &["Mixed_8b"],
        )?;
        let report = models::weights::load_face_net(&mut vs, source)?;
        if !report.is_empty() {
            eprintln!("{report}");
        }
        vs.variables()
    } else {
        read_tf_checkpoint(source)?
    };
    match args.what {
        ImportTarget::FaceNet => {
            let mut vs = VarStore::new(Device::Cpu);
            inception_resnet_v1::InceptionResnetV1::new(
                &vs.root(),
                &inception_resnet_v1::InceptionConfig::facenet(),
                &["Mixed_8b"],
            )?;
            let unused = fill(&mut vs, &tensors, source)?;
            vs.save(&args.output)
                .with_context(|| format!("failed to write {}", args.output.display()))?;
            println!(
                "wrote {} ({} tensors; {} checkpoint tensors not part of the face net)",
                args.output.display(),
                vs.variables().len(),
                unused
            );
        }
        ImportTarget::Vae => {
            let (arch, latent) = detect_vae(&tensors)?;
            let mut vs = VarStore::new(Device::Cpu);
            models::Vae::new(&vs.root(), arch, latent)?;
            let unused = fill(&mut vs, &tensors, source)?;
            std::fs::create_dir_all(&args.output)?;
            vs.save(args.output.join(VaeSpec::WEIGHTS))?;
            let spec = VaeSpec {
                model: arch,
                latent_size: latent as usize,
                input_image_size: 160,
                resize: Resize::TfLegacy,
                normalization: Normalization::default(),
            };
            std::fs::write(
                args.output.join(VaeSpec::SPEC),
                serde_json::to_vec_pretty(&spec)?,
            )?;
            println!("wrote {} ({arch}, latent size {latent}; {unused} checkpoint tensors not part of the VAE)", args.output.display());
        }
        ImportTarget::Mtcnn => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Every float tensor of a TF checkpoint under vaepipe's name and layout.
/// A missing source is a usage error (exit 2): a `.pt` file, or a TF prefix whose `.index`
/// file is absent (the usual mistake is passing `….index` or `….data-00000-of-00001`).
fn check_source_exists(source: &Path) -> Result<()> {
    let pt = source.extension().is_some_and(|e| e == "pt" || e == "pth");
    let index = PathBuf::from(format!("{}.index", source.display()));
    if (pt && source.is_file()) || (!pt && index.is_file()) {
        return Ok(());
    }
    let what = if pt {
        format!("no such file `{}`", source.display())
    } else {
        format!(
            "no TensorFlow checkpoint at `{}` (`{}` does not exist); give the prefix, without `.index` or `.data-…`",
            source.display(),
            index.display()
        )
    };
    Err(super::usage(what))
}

pub fn read_tf_checkpoint(prefix: &Path) -> Result<HashMap<String, Tensor>> {
    let ckpt = vaepipe_tfckpt::Checkpoint::open(prefix)?;
    let mut out = HashMap::new();
    for name in ckpt.names() {
        let info = ckpt.info(name)?;
        let is_float = matches!(
            info.dtype,
            DType::Float | DType::Double | DType::Half | DType::BFloat16
        );
        if name.contains("Adam") || name == "global_step" || !is_float {
            continue;
        }
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        let values = ckpt.read_f32(name)?;
        let (tch_name, tensor) =
            tf_to_tch(name, Tensor::from_slice(&values).view(shape.as_slice()));
        out.insert(tch_name, tensor);
    }
    Ok(out)
}

/// One TF variable under vaepipe's name (`/` → `.`) and layout (HWIO → OIHW, [in,out] → [out,in]).
pub fn tf_to_tch(name: &str, tensor: Tensor) -> (String, Tensor) {
    let tch_name = name.replace('/', ".");
    let tensor = match (name.ends_with("/weights"), tensor.dim()) {
        (true, 4) => tensor.permute([3, 2, 0, 1]).contiguous(),
        (true, 2) => tensor.transpose(0, 1).contiguous(),
        _ => tensor,
    };
    (tch_name, tensor)
}

/// Copies every variable of `vs` from `tensors` (all present, right shapes); returns how many
/// tensors were left unused.
fn fill(vs: &mut VarStore, tensors: &HashMap<String, Tensor>, source: &Path) -> Result<usize> {
    models::weights::copy_into(vs, tensors, source)?;
    let used = vs.variables().len();
    Ok(tensors.len().saturating_sub(used))
}

/// Which of facenet's VAEs a checkpoint holds, and its latent size.
fn detect_vae(tensors: &HashMap<String, Tensor>) -> Result<(VaeArch, i64)> {
    let Some(fc) = tensors.get("encoder.Fc_1.weights") else {
        bail!("the checkpoint has no `encoder/Fc_1/weights`: is it a train_vae.py checkpoint?");
    };
    let latent = fc.size()[0];
    let arch = if tensors.contains_key("encoder.Conv2d_5.weights") {
        VaeArch::DfcVaeLarge
    } else if tensors.keys().any(|k| k.starts_with("encoder.Conv2d_1a")) {
        VaeArch::DfcVaeResnet
    } else {
        VaeArch::DfcVae
    };
    Ok((arch, latent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("crates/tfckpt/tests/fixtures/basic/model.ckpt")
    }

    #[test]
    fn tf_conv_kernels_become_oihw_and_fc_weights_out_by_in() {
        let tensors = read_tf_checkpoint(&fixture()).unwrap();
        let ckpt = vaepipe_tfckpt::Checkpoint::open(&fixture()).unwrap();
        // HWIO [3,3,3,4] → OIHW [4,3,3,3]; element (o,i,h,w) = tf (h,w,i,o).
        let tf = ckpt
            .read_f32("InceptionResnetV1/Conv2d_1a_3x3/weights")
            .unwrap();
        let conv = &tensors["InceptionResnetV1.Conv2d_1a_3x3.weights"];
        assert_eq!(conv.size(), vec![4, 3, 3, 3]);
        let (o, i, h, w) = (3i64, 1i64, 2i64, 0i64);
        let expected = tf[(((h * 3 + w) * 3 + i) * 4 + o) as usize];
        assert_eq!(conv.double_value(&[o, i, h, w]) as f32, expected);
        // FC [in, out] → [out, in].
        let info = ckpt.info("encoder/Fc_1/weights").unwrap().shape.clone();
        let fc = &tensors["encoder.Fc_1.weights"];
        assert_eq!(fc.size(), vec![info[1] as i64, info[0] as i64]);
        let tf_fc = ckpt.read_f32("encoder/Fc_1/weights").unwrap();
        assert_eq!(fc.double_value(&[1, 0]) as f32, tf_fc[1]);
        assert!(!tensors.contains_key("global_step"));
    }

    #[test]
    fn a_checkpoint_missing_face_net_variables_is_an_error_naming_one() {
        let tensors = read_tf_checkpoint(&fixture()).unwrap();
        let mut vs = VarStore::new(Device::Cpu);
        inception_resnet_v1::InceptionResnetV1::new(
            &vs.root(),
            &inception_resnet_v1::InceptionConfig::facenet(),
            &["Conv2d_1a_3x3"],
        )
        .unwrap();
        let err = fill(&mut vs, &tensors, &fixture()).unwrap_err();
        assert!(
            format!("{err:#}").contains("InceptionResnetV1.Conv2d_1a_3x3"),
            "{err:#}"
        );
    }
}
