//! Numerics policy: what `precision = "fp32" | "tf32" | "bf16"` means for a stage that runs
//! tensors (train-vae, encode, align).
//!
//! - `fp32` (the default): full IEEE float32 everywhere. On Ampere and newer GPUs cuDNN uses
//!   TF32 for float32 convolutions by default (libtorch's default, as PyTorch's), which changes
//!   every result against facenet's FP32 original; `fp32` switches it off, for cuBLAS too.
//! - `tf32`: TF32 tensor cores for float32 convolutions and matmuls (10-bit mantissa inputs,
//!   float32 accumulation). Faster on a GPU; no effect on a CPU.
//! - `bf16`: autocast to bfloat16 for the forward pass (convolutions and matmuls in bf16,
//!   reductions and losses in float32), master weights and optimizer state in float32, as
//!   `torch.autocast(dtype=torch.bfloat16)` does. Works on the CPU too (slowly).
//!
//! Precision is part of a stage's key (it changes results), encoded so that the default
//! `fp32` is left out of the params and every key from before it existed stays valid.
//! TF32 is a process-wide libtorch switch set at the start of each stage; autocast is
//! thread-local and scoped by [`Precision::autocast`]. The switches tch does not expose live
//! in `shim.cpp`, reached through [`ffi`] (the crate's only unsafe code).

mod ffi;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::Device;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Tf32,
    Bf16,
}

impl Precision {
    /// For `#[serde(skip_serializing_if)]`: the default is left out of a stage's key.
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Sets libtorch's TF32 switches for this precision: on only for `tf32` (`bf16` keeps
    /// the float32 parts of its work in full precision). Call at the start of a stage.
    pub fn apply(self) -> Result<()> {
        let tf32 = self == Precision::Tf32;
        if ffi::set_tf32(tf32, tf32) != 0 {
            bail!(
                "libtorch refused to set TF32 mode for precision `{}`",
                self.name()
            );
        }
        Ok(())
    }

    /// Runs `f` (a forward pass) under bf16 autocast on `device` for `bf16`, plainly
    /// otherwise. Backward passes belong outside: gradients flow back to float32 weights.
    pub fn autocast<T>(self, device: Device, f: impl FnOnce() -> T) -> T {
        if self != Precision::Bf16 {
            return f();
        }
        let _guard = AutocastGuard::enter(device.is_cuda());
        f()
    }
}

/// Leaves autocast when dropped, even on a panic, so a failed stage leaves no state behind.
struct AutocastGuard {
    cuda: bool,
    previous: bool,
}

impl AutocastGuard {
    fn enter(cuda: bool) -> Self {
        let previous = ffi::autocast_bf16_enter(cuda) == 1;
        AutocastGuard { cuda, previous }
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        if ffi::autocast_exit(self.cuda, self.previous) != 0 {
            tracing::warn!("libtorch failed to leave autocast");
        }
    }
}

/// Whether cuBLAS and cuDNN may use TF32 now (for `vaepipe doctor` and manifests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tf32State {
    pub cublas: bool,
    pub cudnn: bool,
}

pub fn tf32_state() -> Option<Tf32State> {
    let bits = ffi::tf32_state();
    (bits >= 0).then_some(Tf32State {
        cublas: bits & 1 != 0,
        cudnn: bits & 2 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    #[test]
    fn apply_sets_and_clears_tf32_for_cublas_and_cudnn() {
        Precision::Tf32.apply().unwrap();
        assert_eq!(
            tf32_state(),
            Some(Tf32State {
                cublas: true,
                cudnn: true
            })
        );
        for off in [Precision::Fp32, Precision::Bf16] {
            off.apply().unwrap();
            assert_eq!(
                tf32_state(),
                Some(Tf32State {
                    cublas: false,
                    cudnn: false
                }),
                "{off:?}"
            );
        }
    }

    #[test]
    fn bf16_autocasts_convolutions_inside_the_scope_only() {
        let x = Tensor::randn([1, 3, 8, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu));
        let conv = || x.conv2d(&w, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        assert_eq!(
            Precision::Bf16.autocast(Device::Cpu, conv).kind(),
            Kind::BFloat16
        );
        assert_eq!(
            Precision::Fp32.autocast(Device::Cpu, conv).kind(),
            Kind::Float
        );
        assert_eq!(
            Precision::Tf32.autocast(Device::Cpu, conv).kind(),
            Kind::Float
        );
        // Left cleanly: the next plain conv is float32 again.
        assert_eq!(conv().kind(), Kind::Float);
    }

    #[test]
    fn the_default_is_fp32_and_names_round_trip() {
        assert_eq!(Precision::default(), Precision::Fp32);
        for p in [Precision::Fp32, Precision::Tf32, Precision::Bf16] {
            let json = serde_json::to_value(p).unwrap();
            assert_eq!(json, p.name());
            assert_eq!(serde_json::from_value::<Precision>(json).unwrap(), p);
        }
    }
}
