//! `cargo bench -p vaepipe-engine --bench fingerprint`: fingerprints a generated dataset
//! directory (200,000 tiny files under /tmp by default; `VAEPIPE_BENCH_FILES` changes the count)
//! in stat mode and content mode, and times a no-op `run` of an experiment over it (load, plan
//! with fingerprint, cache hit, relink). Prints a table with ratios against the stat baseline,
//! measured in the same run. Targets (DESIGN.md): stat < 1 s, no-op run < 2 s, on 2 cores.
//! The dataset is generated once and reused across runs (a marker file records its size).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vaepipe_engine::cache::fingerprint::fingerprint;
use vaepipe_engine::cache::CacheStore;
use vaepipe_engine::config::FingerprintMode;
use vaepipe_engine::graph::StageGraph;
use vaepipe_engine::scheduler::{self, ExecuteOptions, PlanOptions};
use vaepipe_engine::{Registry, Role, RunOptions, Stage, StageCx};

struct Touch;
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TouchParams {}
impl Stage for Touch {
    const KIND: &'static str = "touch";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "writes one small file";
    type Params = TouchParams;
    fn roles() -> &'static [Role] {
        &[Role {
            name: "dataset",
            required: true,
            doc: "the dataset",
        }]
    }
    fn run(_: &TouchParams, cx: &mut StageCx<'_>) -> anyhow::Result<()> {
        fs::write(cx.out_dir().join("ok"), "ok")?;
        Ok(())
    }
}

fn generate(root: &Path, files: usize) -> PathBuf {
    let data = root.join("data");
    let marker = root.join(format!("generated-{files}"));
    if marker.exists() {
        return data;
    }
    let _ = fs::remove_dir_all(root);
    let per_dir = 100;
    for d in 0..files.div_ceil(per_dir) {
        let dir = data.join(format!("{:05}", d));
        fs::create_dir_all(&dir).expect("create bench dir");
        for f in 0..per_dir.min(files - d * per_dir) {
            fs::write(dir.join(format!("{f:03}.jpg")), format!("{d}-{f}"))
                .expect("write bench file");
        }
    }
    fs::write(marker, "").expect("write marker");
    data
}

fn best_of(n: usize, mut f: impl FnMut()) -> Duration {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let files: usize = std::env::var("VAEPIPE_BENCH_FILES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let root = std::env::temp_dir().join(format!("vaepipe-bench-{files}"));
    let t = Instant::now();
    let data = generate(&root, files);
    eprintln!(
        "dataset: {} ({files} files, ready in {:.1}s)",
        data.display(),
        t.elapsed().as_secs_f64()
    );

    let stat = best_of(3, || {
        fingerprint(&data, FingerprintMode::Stat).expect("stat fingerprint");
    });
    let content = best_of(2, || {
        fingerprint(&data, FingerprintMode::Content).expect("content fingerprint");
    });

    let project = root.join("project");
    fs::create_dir_all(&project).expect("create project");
    let exp_file = project.join("bench.toml");
    fs::write(
        &exp_file,
        format!(
            "[experiment]\nname = \"bench\"\n[input.data]\npath = \"{}\"\n[stage.touch]\nkind = \"touch\"\nfrom = {{ dataset = \"data\" }}\n",
            data.display()
        ),
    )
    .expect("write experiment");
    let registry = Registry::new().with::<Touch>();
    let run_once = || {
        let exp = vaepipe_engine::config::load(&exp_file, &registry, &[]).expect("load experiment");
        let store = CacheStore::open(&project.join("cache")).expect("open cache");
        let graph = StageGraph::new(&exp);
        let runs = project.join("runs");
        let plan =
            scheduler::plan(&exp, &graph, &store, &runs, &PlanOptions::default()).expect("plan");
        let run = RunOptions {
            device: "cpu".into(),
            threads: None,
            quiet: true,
        };
        let opts = ExecuteOptions {
            run: &run,
            jobs: 2,
            cancel: Arc::new(AtomicBool::new(false)),
            runs_dir: runs,
            tool_version: "bench".into(),
            remote: None,
        };
        let report = scheduler::execute(&exp, &plan, &store, &opts, &|_| {});
        assert!(report.all_succeeded());
    };
    run_once(); // the miss
    let noop = best_of(3, run_once);

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("\nfingerprint of {files} files, {cores} cores (best of several runs)\n");
    println!("| measurement               |    time | vs stat | target |");
    println!("|---------------------------|--------:|--------:|-------:|");
    let row = |name: &str, d: Duration, target: &str| {
        println!(
            "| {name:<25} | {:>6.3}s | {:>6.2}x | {target:>6} |",
            d.as_secs_f64(),
            d.as_secs_f64() / stat.as_secs_f64()
        );
    };
    row("fingerprint, stat mode", stat, "< 1 s");
    row("fingerprint, content mode", content, "-");
    row("no-op run (stat input)", noop, "< 2 s");
}
