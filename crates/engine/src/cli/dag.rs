//! `vaepipe dag FILE`: the stage graph as Graphviz dot on stdout.

use std::path::PathBuf;

use clap::Args;

use super::CliError;
use crate::graph::StageGraph;
use crate::registry::Registry;

#[derive(Debug, Clone, Args)]
pub struct DagArgs {
    /// The experiment file.
    pub file: PathBuf,
    /// Override a param: `stage.<stage>.<param>=<value>`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

pub fn dag(args: DagArgs, registry: &Registry) -> Result<(), CliError> {
    let exp = super::load(&args.file, registry, &args.set)?;
    print!("{}", StageGraph::new(&exp).to_dot(&exp));
    Ok(())
}
