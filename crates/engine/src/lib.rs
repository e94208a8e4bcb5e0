//! vaepipe's engine: experiment files (TOML) → resolved config → stage graph → content-addressed
//! cache → scheduler, plus the CLI verbs that drive them (`run`, `plan`, `dag`, `gc`,
//! `cache verify`, `kinds`).
//!
//! The engine knows nothing about torch, images or HDF5: stage kinds plug in through the
//! [`Stage`] trait and a [`Registry`] built by the binary. Data flows
//! TOML → [`config::raw`] → [`config::resolve`] (`Experiment`) → [`graph::StageGraph`] →
//! [`scheduler::plan`] (keys, freshness) → [`scheduler::execute`] (lock, run, commit, link).
//! The cache-key rules are documented in one table at the top of [`cache::key`].

pub mod cache;
pub mod cli;
pub mod config;
pub mod graph;
pub mod registry;
pub mod scheduler;
pub mod stage;

pub use cli::{execute, exit_code, init_logging, EngineCommand, GlobalArgs};
pub use registry::{ErasedKind, Registry, ResolvedParams};
pub use stage::{ParamIssue, Role, RunOptions, Stage, StageCx, StageParams};
