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

/// The `--version` text, built once: clap asks for `version` and `long_version` separately, and
/// each build probes CUDA and reads /proc/self/maps. (clap builds it on every invocation, not
/// only for `--version`; see issue 17's start-up item.)
fn long_version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(vaepipe::device::version_text)
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
