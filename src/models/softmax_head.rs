//! train_softmax.py's classifier head over an Inception-ResNet-v1 end point, as
//! `train-facenet` trains it: spatial mean, dropout, the `Bottleneck` embedding and `Logits`.

use tch::{nn, Kind, Tensor};

use crate::models::layers::{BatchNorm, Fc, WeightInit};

/// train_softmax.py's head on the end point: spatial mean, dropout, `Bottleneck` (FC without
/// bias + BN), `Logits`.
#[derive(Debug)]
pub struct Head {
    bottleneck: Tensor,
    bottleneck_bn: BatchNorm,
    logits: Fc,
}

impl Head {
    /// `InceptionResnetV1.Bottleneck.{weights,BatchNorm.*}` (facenet's scope) and
    /// `Logits.{weights,biases}` (train_softmax.py's, outside the model scope).
    pub fn new(root: &nn::Path, features: i64, bottleneck: i64, classes: i64) -> Head {
        let b = root / "InceptionResnetV1" / "Bottleneck";
        Head {
            bottleneck: b.add(
                "weights",
                WeightInit::XavierUniform.draw(&[bottleneck, features], b.device()),
                true,
            ),
            bottleneck_bn: BatchNorm::new(&b, bottleneck),
            logits: Fc::new(
                &(root / "Logits"),
                bottleneck,
                classes,
                WeightInit::XavierUniform,
            ),
        }
    }

    /// End-point map `[B, C, H, W]` (or `[B, C]`) → logits `[B, classes]`.
    pub fn forward_t(&self, features: &Tensor, train: bool, keep_probability: f64) -> Tensor {
        let pooled = if features.dim() == 4 {
            features.mean_dim(&[2i64, 3][..], false, Kind::Float) // [B, C]
        } else {
            features.shallow_clone()
        };
        let dropped = pooled.dropout(1.0 - keep_probability, train && keep_probability < 1.0);
        let embedding = dropped
            .linear(&self.bottleneck, None::<&Tensor>) // [B, bottleneck]
            .apply_t(&self.bottleneck_bn, train);
        embedding.apply(&self.logits) // [B, classes]
    }
}
