//! The verbs that need torch: `modify` (edit attributes of any image), `import-weights`
//! (facenet's checkpoints to safetensors) and `bench` (training throughput). The engine's
//! verbs (`run`, `plan`, `dag`, `gc`, `cache`, `lock`, `verify`) come from
//! `vaepipe_engine::cli`; `main.rs` puts both under one `vaepipe` command.

pub mod bench;
pub mod bench_align;
pub mod bench_baseline;
pub mod bench_decode;
pub mod bench_startup;
pub mod doctor;
pub mod import_mtcnn;
pub mod import_weights;
pub mod modify;
pub mod parity_dump;

use std::process::ExitCode;

/// A usage error of a model verb (a bad flag value, an unknown attribute, an output that would
/// be overwritten): exits 2, like the engine's usage errors, where other failures exit 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `Err(UsageError)` as an `anyhow::Error`, for `return Err(usage(...))`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// Device choices that this machine cannot satisfy are usage errors of the `--device` flag.
pub fn select_device(choice: &str) -> anyhow::Result<tch::Device> {
    crate::device::select(choice, crate::device::Available::probe())
        .map_err(|e| usage(format!("--device {choice}: {e}")))
}

#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Encode images, add or subtract an attribute vector, decode, write PNGs
    Modify(modify::ModifyArgs),
    /// Measure training and data throughput on this machine and print a table
    Bench(bench::BenchArgs),
    /// Check this machine: versions, devices, TF32, HDF5, and that each device computes right
    Doctor(doctor::DoctorArgs),
    /// Convert facenet's TensorFlow checkpoints or facenet-pytorch .pt files to safetensors
    ImportWeights(import_weights::ImportWeightsArgs),
    /// Development hook of the parity harness (tests/parity): run a model piece on .npy inputs
    #[command(hide = true)]
    ParityDump(parity_dump::ParityDumpArgs),
}

pub fn execute(cmd: ModelCommand) -> ExitCode {
    let result = match cmd {
        ModelCommand::Modify(args) => modify::run(args),
        ModelCommand::Bench(args) => bench::run(args),
        ModelCommand::ImportWeights(args) => import_weights::run(args),
        ModelCommand::Doctor(args) => doctor::run(args),
        ModelCommand::ParityDump(args) => parity_dump::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            let usage = err.downcast_ref::<UsageError>().is_some();
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}
