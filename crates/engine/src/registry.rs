//! The type-erased side of the `Stage` seam: one [`KindAdapter`] per kind, held by a
//! [`Registry`] the engine looks kinds up in.
//!
//! The adapter does the glue every kind would otherwise repeat: deserialising the stage table
//! into the kind's typed `Params` (unknown keys rejected, defaults filled), turning them into the
//! canonical JSON that goes into the key, re-typing them after a `--set` override, and calling
//! `run`. It deliberately knows nothing about caching or scheduling.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Deserialize;

use crate::stage::{ParamIssue, Role, Stage, StageCx, WarmSource};

/// A kind's params after deserialisation: the typed value (opaque to the engine) and its
/// canonical JSON form (what is hashed into the key and shown in `plan`).
#[derive(Clone)]
pub struct ResolvedParams {
    pub canonical: serde_json::Value,
    pub(crate) typed: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for ResolvedParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.canonical.fmt(f)
    }
}

/// The object-safe face of a `Stage` implementation.
pub trait ErasedKind: Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    fn about(&self) -> &'static str;
    fn roles(&self) -> &'static [Role];
    /// Deserialises a params table (the stage table minus `kind` and `from`).
    fn params_from_toml(
        &self,
        table: toml::de::ValueDeserializer<'_>,
    ) -> Result<ResolvedParams, toml::de::Error>;
    /// Re-types params from JSON (after a `--set` override); the error is serde's message.
    fn params_from_json(&self, value: serde_json::Value) -> Result<ResolvedParams, String>;
    fn validate(&self, params: &ResolvedParams) -> Vec<ParamIssue>;
    fn uses_accelerator(&self, params: &ResolvedParams) -> bool;
    fn run(&self, params: &ResolvedParams, cx: &mut StageCx<'_>) -> anyhow::Result<()>;
    /// [`Stage::extendable_budget`].
    fn extendable_budget(&self, params: &ResolvedParams) -> Option<&'static str>;
    /// [`Stage::warm_start`].
    fn warm_start(
        &self,
        params: &ResolvedParams,
        source: &WarmSource<'_>,
        partial_dir: &std::path::Path,
    ) -> anyhow::Result<()>;
}

/// Adapts one `Stage` implementation to [`ErasedKind`].
pub struct KindAdapter<S>(PhantomData<fn() -> S>);

impl<S: Stage> KindAdapter<S> {
    fn typed(params: &ResolvedParams) -> anyhow::Result<&S::Params> {
        params.typed.downcast_ref::<S::Params>().ok_or_else(|| {
            anyhow::anyhow!(
                "internal error: params of kind `{}` have the wrong type",
                S::KIND
            )
        })
    }

    fn resolved(params: S::Params) -> Result<ResolvedParams, String> {
        let canonical = serde_json::to_value(&params).map_err(|e| {
            format!(
                "params of kind `{}` cannot be encoded for the cache key: {e}",
                S::KIND
            )
        })?;
        Ok(ResolvedParams {
            canonical,
            typed: Arc::new(params),
        })
    }
}

impl<S: Stage> ErasedKind for KindAdapter<S> {
    fn kind(&self) -> &'static str {
        S::KIND
    }
    fn version(&self) -> u32 {
        S::VERSION
    }
    fn about(&self) -> &'static str {
        S::ABOUT
    }
    fn roles(&self) -> &'static [Role] {
        S::roles()
    }
    fn params_from_toml(
        &self,
        table: toml::de::ValueDeserializer<'_>,
    ) -> Result<ResolvedParams, toml::de::Error> {
        let params = S::Params::deserialize(table)?;
        Self::resolved(params).map_err(<toml::de::Error as serde::de::Error>::custom)
    }
    fn params_from_json(&self, value: serde_json::Value) -> Result<ResolvedParams, String> {
        let params: S::Params = serde_json::from_value(value).map_err(|e| e.to_string())?;
        Self::resolved(params)
    }
    fn validate(&self, params: &ResolvedParams) -> Vec<ParamIssue> {
        match Self::typed(params) {
            Ok(p) => S::validate(p),
            Err(e) => vec![ParamIssue {
                path: String::new(),
                message: e.to_string(),
                help: None,
            }],
        }
    }
    fn uses_accelerator(&self, params: &ResolvedParams) -> bool {
        Self::typed(params)
            .map(S::uses_accelerator)
            .unwrap_or(false)
    }
    fn run(&self, params: &ResolvedParams, cx: &mut StageCx<'_>) -> anyhow::Result<()> {
        S::run(Self::typed(params)?, cx)
    }
    fn extendable_budget(&self, params: &ResolvedParams) -> Option<&'static str> {
        Self::typed(params).ok().and_then(S::extendable_budget)
    }
    fn warm_start(
        &self,
        params: &ResolvedParams,
        source: &WarmSource<'_>,
        partial_dir: &std::path::Path,
    ) -> anyhow::Result<()> {
        S::warm_start(Self::typed(params)?, source, partial_dir)
    }
}

/// The stage kinds a binary knows, built once at startup:
/// `Registry::new().with::<SynthFaces>().with::<TrainVae>()`. Kinds only: the binary's other
/// plug-ins (output comparison, sweep images) are [`crate::cli::Hooks`], given to the CLI.
#[derive(Default)]
pub struct Registry {
    kinds: Vec<Arc<dyn ErasedKind>>,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a kind. A second kind with the same `KIND` string replaces the first.
    #[must_use]
    pub fn with<S: Stage>(mut self) -> Self {
        self.kinds.retain(|k| k.kind() != S::KIND);
        self.kinds.push(Arc::new(KindAdapter::<S>(PhantomData)));
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn ErasedKind>> {
        self.kinds.iter().find(|k| k.kind() == kind).cloned()
    }

    pub fn kinds(&self) -> impl Iterator<Item = &dyn ErasedKind> {
        self.kinds.iter().map(|k| k.as_ref())
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.iter().map(|k| k.kind()).collect()
    }

    /// The text of `vaepipe kinds`: one line per kind with its version, roles and about line.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let width = self.kinds.iter().map(|k| k.kind().len()).max().unwrap_or(0);
        for k in &self.kinds {
            let roles: Vec<String> = k
                .roles()
                .iter()
                .map(|r| {
                    if r.required {
                        r.name.to_owned()
                    } else {
                        format!("{}?", r.name)
                    }
                })
                .collect();
            let roles = if roles.is_empty() {
                String::new()
            } else {
                format!(" (from: {})", roles.join(", "))
            };
            out.push_str(&format!(
                "{:width$}  v{}  {}{roles}\n",
                k.kind(),
                k.version(),
                k.about()
            ));
        }
        out
    }
}
