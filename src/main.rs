//! The `vaepipe` command line: parses, dispatches, maps errors to exit codes. No logic lives
//! here; the engine's verbs come from `vaepipe_engine::cli`, the model verbs from `vaepipe::cli`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vaepipe_engine::cli::{EngineCommand, GlobalArgs};

#[derive(Parser)]
#[command(
    name = "vaepipe",
    about = "Run DFC-VAE face experiments declared in TOML, with a content-addressed cache"
)]
#[command(version = long_version(), long_version = long_version())]
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

fn long_version() -> &'static str {
    Box::leak(vaepipe::device::version_text().into_boxed_str())
}

fn main() -> ExitCode {
    // First, before libtorch allocates anything: keep freed memory (src/malloc_policy.rs).
    vaepipe::malloc_policy::apply_at_startup();
    vaepipe_engine::panic_hook::install();
    let cli = Cli::parse();
    vaepipe_engine::cli::init_logging(&cli.global);
    match cli.command {
        Command::Engine(cmd) => vaepipe_engine::cli::execute(
            cmd,
            &cli.global,
            &vaepipe::stages::registry(),
            &vaepipe::stages::hooks(),
        ),
        Command::Model(cmd) => vaepipe::cli::execute(cmd),
    }
}
