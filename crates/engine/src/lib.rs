//! vaepipe's engine: experiment files (TOML) → resolved config → sweep variants → stage graph →
//! content-addressed cache → scheduler → reports, plus the CLI verbs that drive them (`run`,
//! `plan`, `dag`, `gc`, `cache verify`, `kinds`, `lock`, `verify`).
//!
//! The engine knows nothing about torch, images or HDF5: stage kinds plug in through the
//! [`Stage`] trait and a [`Registry`] built by the binary (its other plug-ins are [`Hooks`]). Data flows
//! TOML → [`config::raw`] → [`config::resolve`] (`Experiment`) → [`graph::StageGraph`] →
//! [`scheduler::plan`] (keys, freshness) → [`scheduler::execute`] (lock, run, commit, link).
//! The cache-key rules are documented in one table at the top of [`cache::key`]. Sweeps expand in
//! [`config::sweep`] and run as one deduplicated DAG ([`scheduler::plan_sweep`]); what a run
//! leaves to read (`sweep.json`/`.csv`/`.md`, `report.html`) is in [`report`]; lock files and
//! `verify`, with what is bitwise repeatable, in [`lock`]. Dirty stages run locally (threads in
//! this process) or as Slurm jobs ([`executor`]).

pub mod atomic_file;
pub mod cache;
pub mod cli;
pub mod config;
pub mod executor;
pub mod graph;
pub mod lock;
pub mod panic_hook;
pub mod progress;
pub mod registry;
pub mod report;
pub mod scheduler;
pub mod signal;
pub mod stage;

pub use cli::{execute, exit_code, init_logging, EngineCommand, GlobalArgs, Hooks, SweepHook};
pub use registry::{ErasedKind, Registry, ResolvedParams};
pub use report::{SweepSummary, VariantSummary};
pub use stage::{ParamIssue, Role, RunOptions, Stage, StageCx, StageParams, WarmSource};
