//! libFuzzer target: arbitrary text as an experiment file, resolved against a registry with
//! one kind of typical params (numbers, strings, lists, an upstream role), with and without
//! sweeps. Loading must return (Ok or `ConfigErrors`) without panicking, and the errors must
//! render (spans land on character boundaries).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use vaepipe_engine::config::{load_sweep_str, SourceFile};
use vaepipe_engine::{Registry, Role, Stage, StageCx};

struct Kind;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    steps: u64,
    rate: f64,
    name: String,
    layers: Vec<String>,
    size: Option<[u32; 2]>,
}

impl Stage for Kind {
    const KIND: &'static str = "train";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "a kind for the fuzzer";
    type Params = Params;

    fn roles() -> &'static [Role] {
        &[Role {
            name: "data",
            required: false,
            doc: "anything",
        }]
    }

    fn run(_: &Params, _: &mut StageCx<'_>) -> anyhow::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let registry = Registry::new().with::<Kind>();
    let source = Arc::new(SourceFile {
        display_path: "fuzz.toml".into(),
        text,
    });
    let file = std::path::Path::new("/nonexistent/fuzz.toml");
    if let Err(e) = load_sweep_str(source, file, &registry, &[], &[], None) {
        let _ = e.to_string();
    }
});
