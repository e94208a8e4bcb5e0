//! The toolchain promises of issue 2: libtorch really trains (forward, backward, Adam) and is
//! bitwise repeatable on the CPU with a fixed seed and thread count; the binary reports its
//! versions without LD_LIBRARY_PATH.

use std::process::Command;

use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// One conv layer, one Adam step on a fixed batch; returns the weights after the step.
fn conv_adam_step(seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let conv = nn::conv2d(vs.root() / "conv", 3, 4, 3, Default::default());
    let before = conv.ws.detach().copy();
    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
    let loss = conv.forward_t(&x, true).square().mean(Kind::Float);
    opt.backward_step(&loss);
    (before, conv.ws.detach().copy())
}

#[test]
fn conv_forward_backward_adam_changes_weights_and_is_bitwise_repeatable() {
    tch::set_num_threads(1);
    let (before, after) = conv_adam_step(666);
    let change = (&after - &before).abs().max().double_value(&[]);
    assert!(
        change > 1e-4,
        "Adam did not move the weights (max change {change})"
    );

    let (_, again) = conv_adam_step(666);
    assert!(
        after.equal(&again),
        "same seed and threads must give bitwise-equal weights"
    );

    let (_, other) = conv_adam_step(667);
    assert!(
        !after.equal(&other),
        "a different seed must give different weights"
    );
}

#[test]
fn version_names_vaepipe_libtorch_and_cuda_without_ld_library_path() {
    let out = Command::new(env!("CARGO_BIN_EXE_vaepipe"))
        .arg("--version")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("the vaepipe binary runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    // The version it was built against, and the file the loader picked, with its version.
    let built = vaepipe::device::LIBTORCH_VERSION;
    assert!(built.starts_with("2."), "{built}");
    assert!(
        text.contains(&format!("libtorch {built} (built against)")),
        "{text}"
    );
    let loaded = text
        .lines()
        .find_map(|l| l.strip_prefix("libtorch loaded "))
        .unwrap_or_else(|| panic!("no `libtorch loaded` line: {text}"));
    let path = loaded.split(" (version ").next().unwrap();
    assert!(
        path.ends_with("libtorch_cpu.so") && std::path::Path::new(path).is_file(),
        "{text}"
    );
    assert!(loaded.ends_with(&format!("(version {built})")), "{text}");
    let cuda_line = if tch::Cuda::is_available() {
        "CUDA available"
    } else {
        "CUDA not available"
    };
    assert!(text.contains(cuda_line), "{text}");
}
