//! Experiment files: TOML → [`raw`] (spans kept, only layer that sees TOML) → [`resolve`]
//! (typed params, overrides, references) → [`Experiment`] → [`sweep`] (one `Experiment` per
//! variant). Errors are collected in [`error`].

pub mod cycles;
pub mod error;
pub mod executor;
pub mod raw;
pub mod resolve;
pub mod sweep;

pub use error::{ConfigError, ConfigErrors, ErrorSite, SourceFile};
pub use raw::FingerprintMode;
pub use resolve::{
    load, load_str, Experiment, InputSpec, StageSpec, Upstream, UpstreamTarget, VariantInfo,
};
pub use sweep::{
    load_sweep, load_sweep_capped, load_sweep_searching, load_sweep_str, FixedTrial, Looked,
    SearchInfo, SearchResults, Sweep, SweepAxis, SweepMode, TrialInfo, DEFAULT_MAX_VARIANTS,
};
