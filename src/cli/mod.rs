//! The verbs that need torch: `modify` (edit attributes of any image), `import-weights`
//! (facenet's checkpoints to safetensors) and `bench` (training throughput). The engine's
//! verbs (`run`, `plan`, `dag`, `gc`, `cache`, `lock`, `verify`) come from
//! `vaepipe_engine::cli`; `main.rs` puts both under one `vaepipe` command.

pub mod bench;
pub mod import_weights;
pub mod modify;
pub mod parity_dump;

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Encode images, add or subtract an attribute vector, decode, write PNGs
    Modify(modify::ModifyArgs),
    /// Measure training and data throughput on this machine and print a table
    Bench(bench::BenchArgs),
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
        ModelCommand::ParityDump(args) => parity_dump::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
