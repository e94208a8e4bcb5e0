//! The losses of facenet's train_vae.py (models.md §1.6 items 9-11, §7.1-2), with the
//! original's reductions: reconstruction losses are **summed** over the batch (and pixels or
//! features), KL is **averaged** over the batch. The weighting `alfa·KL + beta·rec` and the
//! resizing of images belong to the caller (`stages::train_vae`).
//!
//! The perceptual loss is facenet's take on DFC-VAE's feature-consistent loss (Hou et al.,
//! arXiv 1610.00291): squared differences of a frozen face net's activations. The originals
//! go through the net under `no_grad`; the reconstructions with autograd, so gradients reach
//! the VAE through the (frozen: `VarStore::freeze`) net.

use tch::{Kind, Tensor};

use super::inception_resnet_v1::InceptionResnetV1;
use super::ModelError;

/// train_vae.py:141-142 + :234-236: mean over the batch of
/// 0.5·Σ_d(exp(log_var) + mean² − 1 − log_var). `mean`, `log_var`: `[B, L]`; returns a scalar.
pub fn kl_loss(mean: &Tensor, log_var: &Tensor) -> Tensor {
    let per_dim = log_var.exp() + mean.square() - 1.0 - log_var; // [B, L]
    let per_sample = per_dim.sum_dim_intlist([1i64].as_slice(), false, None) * 0.5; // [B]
    if super::mutation::is_active(super::mutation::Mutation::KlSum) {
        return per_sample.sum(None);
    }
    per_sample.mean(None) // []
}

/// PLAIN (train_vae.py:111-113): the sum over everything of the squared pixel error; both in
/// the same units (facenet: pixels 0..255 at the VAE's size).
pub fn plain_loss(originals: &Tensor, reconstructions: &Tensor) -> Tensor {
    (originals - reconstructions).square().sum(None) // []
}

/// PERCEPTUAL (train_vae.py:114-136): Σ over `features` of the sum over batch and feature
/// elements of (net(originals) − net(reconstructions))². Both inputs are `[B, 3, H, W]` of
/// the same shape, already prepared for the net (facenet: the 160-px dataset-normalised
/// originals and the reconstructions upsampled 64 → 160 with TF-legacy bilinear).
pub fn perceptual_loss<S: AsRef<str>>(
    net: &InceptionResnetV1,
    originals: &Tensor,
    reconstructions: &Tensor,
    features: &[S],
) -> Result<Tensor, ModelError> {
    if features.is_empty() {
        return Err(ModelError::NoFeatures);
    }
    if originals.size() != reconstructions.size() {
        return Err(ModelError::ShapeMismatch {
            originals: originals.size(),
            reconstructions: reconstructions.size(),
        });
    }
    let targets = tch::no_grad(|| net.forward_features(originals, features))?; // per feature [B, C, h, w]
    let outputs = net.forward_features(reconstructions, features)?;
    let per_feature = targets
        .iter()
        .zip(&outputs)
        .map(|(t, o)| (o - t).square().sum(None)); // []
    Ok(per_feature
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| Tensor::zeros([], (Kind::Float, originals.device()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::inception_resnet_v1::InceptionConfig;
    use crate::models::{reparameterize, resize, Vae, VaeArch};
    use tch::nn::VarStore;
    use tch::Device;

    fn t(values: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(values).view(shape)
    }

    #[test]
    fn kl_is_batch_mean_of_half_sum_over_dims() {
        // sample 1: d1 = e⁰ + 1 − 1 − 0 = 1; d2 = 2 + 0 − 1 − ln 2 = 0.3068528 ⇒ 0.6534264
        // sample 2: all terms 0 ⇒ 0. Mean over 2 samples: 0.3267132.
        let mean = t(&[1.0, 0.0, 0.0, 0.0], &[2, 2]);
        let log_var = t(&[0.0, 2f32.ln(), 0.0, 0.0], &[2, 2]);
        let kl = kl_loss(&mean, &log_var).double_value(&[]);
        assert!((kl - 0.326_713_2).abs() < 1e-6, "{kl}");
    }

    #[test]
    fn plain_is_sum_of_squared_errors() {
        let a = t(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]);
        let b = t(&[0.0, 2.0, 5.0, 4.0], &[1, 1, 2, 2]);
        assert_eq!(plain_loss(&a, &b).double_value(&[]), 5.0);
    }

    #[test]
    fn perceptual_sums_squared_feature_differences_over_batch_and_features() {
        // Conv2d_1a_3x3 (3×3/2 VALID) reads only input channel 0 at the window's top-left, so
        // its channel 0 is relu(x[0, 2i, 2j])/√(1 + 1e-3) and the others are 0. Conv2d_2a_3x3
        // has zero weights: relu(beta) = 0 for both inputs, adding nothing.
        let vs = VarStore::new(Device::Cpu);
        let features = ["Conv2d_1a_3x3", "Conv2d_2a_3x3"];
        let net = InceptionResnetV1::new(&vs.root(), &InceptionConfig::mini(), &features).unwrap();
        tch::no_grad(|| {
            for (name, mut var) in vs.variables() {
                if name.ends_with("weights") {
                    let _ = var.zero_();
                }
            }
            let w = vs.variables()["InceptionResnetV1.Conv2d_1a_3x3.weights"].shallow_clone();
            let _ = w.get(0).get(0).get(0).get(0).fill_(1.0);
        });
        // 7×7 inputs → 3×3 maps sampling rows/columns 0, 2, 4 (and Conv2d_2a → 1×1).
        let originals = Tensor::ones([2, 3, 7, 7], (Kind::Float, Device::Cpu));
        let recon = Tensor::zeros([2, 3, 7, 7], (Kind::Float, Device::Cpu));
        tch::no_grad(|| {
            for (y, x, v) in [(0, 0, 3.0), (0, 2, -1.0), (2, 0, 2.0), (2, 2, 1.0)] {
                let _ = recon
                    .narrow(2, y, 1)
                    .narrow(3, x, 1)
                    .narrow(1, 0, 1)
                    .fill_(v);
            }
        });
        // relu: 3, 0, 2, 1 vs 1 ⇒ 4 + 1 + 1 + 0, plus 5 sampled zeros vs 1 ⇒ 11 per image;
        // 2 images; BN divides by √(1 + ε), so squares by 1 + ε.
        let loss = perceptual_loss(&net, &originals, &recon, &features)
            .unwrap()
            .double_value(&[]);
        assert!((loss - 22.0 / 1.001).abs() < 1e-4, "{loss}");
    }

    #[test]
    fn feature_names_may_be_owned_strings() {
        // The trainer keeps `loss_features` as a Vec<String>.
        let features: Vec<String> = vec!["Conv2d_1a_3x3".into()];
        let vs = VarStore::new(Device::Cpu);
        let net = InceptionResnetV1::new(&vs.root(), &InceptionConfig::mini(), &features).unwrap();
        let x = Tensor::zeros([1, 3, 7, 7], (Kind::Float, Device::Cpu));
        let loss = perceptual_loss(&net, &x, &x, &features).unwrap();
        assert_eq!(loss.double_value(&[]), 0.0);
    }

    #[test]
    fn perceptual_rejects_mismatched_shapes_and_empty_features() {
        let vs = VarStore::new(Device::Cpu);
        let net = InceptionResnetV1::new(&vs.root(), &InceptionConfig::mini(), &["Conv2d_1a_3x3"])
            .unwrap();
        let a = Tensor::zeros([1, 3, 160, 160], (Kind::Float, Device::Cpu));
        let b = Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        let err = perceptual_loss(&net, &a, &b, &["Conv2d_1a_3x3"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "originals and reconstructions differ in shape: [1, 3, 160, 160] vs [1, 3, 64, 64]"
        );
        let none: [&str; 0] = [];
        assert!(matches!(
            perceptual_loss(&net, &a, &a, &none),
            Err(ModelError::NoFeatures)
        ));
    }

    #[test]
    fn gradients_reach_the_vae_but_not_the_frozen_face_net() {
        tch::manual_seed(2);
        let vs = VarStore::new(Device::Cpu);
        let vae = Vae::new(&vs.root(), VaeArch::DfcVae, 4).unwrap();
        let mut face_vs = VarStore::new(Device::Cpu);
        let features = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"];
        let net =
            InceptionResnetV1::new(&face_vs.root(), &InceptionConfig::mini(), &features).unwrap();
        face_vs.freeze();

        let originals = Tensor::randn([2, 3, 160, 160], (Kind::Float, Device::Cpu));
        let images = resize::resize(&originals, 64, 64, resize::Sampling::TfLegacy);
        let (mean, log_var) = vae.encode(&images, true);
        let z = reparameterize(&mean, &log_var);
        let recon = resize::resize(&vae.decode(&z, true), 160, 160, resize::Sampling::TfLegacy);
        let loss = perceptual_loss(&net, &originals, &recon, &features).unwrap() * 0.5
            + kl_loss(&mean, &log_var);
        loss.backward();

        for (name, var) in vs.variables() {
            if var.requires_grad() {
                let g = var.grad();
                assert!(g.defined(), "{name} has no gradient");
                assert!(
                    g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
                    "{name} has a zero gradient"
                );
            }
        }
        for (name, var) in face_vs.variables() {
            assert!(
                !var.requires_grad() && !var.grad().defined(),
                "{name} of the frozen net got a gradient"
            );
        }
    }
}
