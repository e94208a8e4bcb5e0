//! The `vaepipe` command line: parses, dispatches, maps errors to exit codes. No logic lives
//! here; the engine's verbs come from `vaepipe_engine::cli`, the model verbs from `vaepipe::cli`.
//!
//! The binary starts without libtorch (`src/torch_runtime.rs`): engine-only verbs never load
//! it; the model verbs, `--version`, `verify`, `run-stage`, and a `run` with a stage to execute
//! load it first (by re-executing with it preloaded).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vaepipe_engine::cli::{EngineCommand, GlobalArgs};

#[derive(Parser)]
#[command(
    name = "vaepipe",
    about = "Run DFC-VAE face experiments declared in TOML, with a content-addressed cache"
)]
// Only the short text here: clap builds it on every invocation. `--version`'s long text (which
// needs libtorch: CUDA probe, the library file loaded) is printed by `print_version` instead.
#[command(version = env!("CARGO_PKG_VERSION"))]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Engine(EngineCommand),
    #[command(flatten)]
    Model(vaepipe::cli::ModelCommand),
}

/// `vaepipe --version` / `-V` (before any subcommand): vaepipe, libtorch and CUDA.
fn asks_for_version() -> bool {
    std::env::args()
        .skip(1)
        .take_while(|arg| arg.starts_with('-'))
        .any(|arg| arg == "--version" || arg == "-V")
}

fn print_version() -> ExitCode {
    match vaepipe::torch_runtime::ensure_loaded() {
        Ok(()) => {
            println!("vaepipe {}", vaepipe::device::version_text());
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    vaepipe::torch_runtime::at_startup();
    // Takes back the OpenMP wait policy the re-execution was given (src/omp_wait.rs).
    vaepipe::omp_wait::at_startup();
    // First, before libtorch allocates anything: keep freed memory (src/malloc_policy.rs).
    vaepipe::malloc_policy::apply_at_startup();
    vaepipe_engine::panic_hook::install();
    if asks_for_version() {
        return print_version();
    }
    let cli = Cli::parse();
    vaepipe_engine::cli::init_logging(&cli.global);
    let needs_torch = match &cli.command {
        Command::Model(_) => true,
        Command::Engine(cmd) => {
            matches!(cmd, EngineCommand::Verify(_) | EngineCommand::RunStage(_))
        }
    };
    if needs_torch {
        if let Err(err) = vaepipe::torch_runtime::ensure_loaded() {
            return fail(&err);
        }
    }
    match cli.command {
        Command::Engine(cmd) => vaepipe_engine::cli::execute(
            cmd,
            &cli.global,
            &vaepipe::stages::registry(),
            &vaepipe::stages::hooks().before_execute(vaepipe::torch_runtime::ensure_loaded),
        ),
        Command::Model(cmd) => vaepipe::cli::execute(cmd),
    }
}
