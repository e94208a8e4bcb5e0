//! What people look at after (and during) a run, on the tiny pipeline: TensorBoard event files
//! read back by TensorBoard's own reader (also across a kill and resume), `report.html` parsed
//! with every embedded image decoded and every chart a valid SVG, the report rewritten while
//! training runs, and `vaepipe diff`. See issue 18.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use vaepipe::formats::tensorboard::{read_with_tensorboard, reader_python, EVENTS_FILE};

use crate::pipeline::TINY;
use crate::support::{find_named, Project};

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// (step, value) pairs of one scalar tag as TensorBoard read them.
fn scalar(read: &serde_json::Value, tag: &str) -> Vec<(u64, f64)> {
    read["scalars"][tag]
        .as_array()
        .unwrap_or_else(|| panic!("no scalar `{tag}` in {read}"))
        .iter()
        .map(|e| (e[0].as_u64().unwrap(), e[1].as_f64().unwrap()))
        .collect()
}

fn image_steps(read: &serde_json::Value, tag: &str) -> Vec<u64> {
    read["images"][tag]
        .as_array()
        .unwrap_or_else(|| panic!("no image `{tag}` in {read}"))
        .iter()
        .map(|e| e[0].as_u64().unwrap())
        .collect()
}

/// Killed after a checkpoint, with that checkpoint then lost (so events past the one it resumes
/// from exist), training resumes and the event file has every step exactly once, with the
/// values of metrics.jsonl; while it ran, report.html was rewritten at the saves.
#[test]
fn tensorboard_events_survive_a_kill_and_resume_without_duplicate_steps() {
    let python = reader_python();
    let config = TINY.replace("max_steps = 4", "max_steps = 16");
    let p = Project::new();
    p.file("tiny.toml", &config);
    p.ok(&["run", "tiny.toml", "--only", "check"]);
    let mut child = p.spawn(&["run", "tiny.toml", "--only", "train", "--threads", "1"]);
    let report = p.path("runs/tiny/report.html");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut live_page = None;
    while Instant::now() < deadline {
        let page = std::fs::read_to_string(&report).unwrap_or_default();
        if !find_named(&p.path("cache"), "step-000006").is_empty()
            && page.contains("<h2>Training</h2>")
        {
            live_page = Some(page);
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().ok();
    child.wait().unwrap();
    let live_page = live_page.expect("no save with a rewritten report before training ended");
    assert!(live_page.contains("This run is still going"), "{live_page}");
    assert!(
        live_page.contains("class=\"running\""),
        "the running stage is marked"
    );

    // Lose the newest checkpoint: the resume starts further back than the events reach.
    let mut checkpoints = find_named(&p.path("cache"), "checkpoints");
    checkpoints.retain(|c| c.is_dir());
    let dir = &checkpoints[0];
    let mut steps: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    steps.sort();
    let newest = steps.pop().unwrap();
    std::fs::remove_dir_all(&newest).unwrap();
    let events = find_named(&p.path("cache"), EVENTS_FILE);
    assert_eq!(events.len(), 1, "{events:?}");

    p.resume_train("tiny.toml");
    let train = p.path("runs/tiny/train");
    assert!(train.join(EVENTS_FILE).is_file());
    let manifest = json(&train.join("manifest.json"));
    assert!(
        manifest["outputs"].to_string().contains(EVENTS_FILE),
        "the event file is an output of the entry: {}",
        manifest["outputs"]
    );

    let Some(python) = python else { return };
    let read = read_with_tensorboard(&python, &train).unwrap();
    let metrics: Vec<serde_json::Value> = std::fs::read_to_string(train.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metrics.len(), 16);
    for tag in [
        "total_loss",
        "reconstruction_loss",
        "kl_loss",
        "learning_rate",
    ] {
        let got = scalar(&read, tag);
        let steps: Vec<u64> = got.iter().map(|e| e.0).collect();
        assert_eq!(
            steps,
            (1..=16).collect::<Vec<u64>>(),
            "{tag}: every step once"
        );
        for ((step, value), line) in got.iter().zip(&metrics) {
            assert_eq!(line["step"].as_u64(), Some(*step));
            let want = line[tag].as_f64().unwrap() as f32;
            assert_eq!(*value as f32, want, "{tag} at step {step}");
        }
    }
    let saves: Vec<u64> = (1..=8).map(|i| i * 2).collect();
    assert_eq!(image_steps(&read, "reconstructed"), saves);
    assert_eq!(image_steps(&read, "original"), saves);
}

/// The src attributes of every `<img>` in an HTML page, decoded to PNGs and checked to decode;
/// every `<svg>` parsed as XML. Returns (images, svgs).
fn check_page(html: &str) -> (usize, usize) {
    let dom = tl::parse(html, tl::ParserOptions::default()).expect("the page parses");
    let parser = dom.parser();
    let mut images = 0;
    for handle in dom.query_selector("img").unwrap() {
        let tag = handle.get(parser).unwrap().as_tag().unwrap();
        let src = tag.attributes().get("src").flatten().unwrap().as_utf8_str();
        let data = src
            .strip_prefix("data:image/png;base64,")
            .unwrap_or_else(|| {
                panic!(
                    "an image that is not embedded: {}",
                    &src[..40.min(src.len())]
                )
            });
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        let img = image::load_from_memory(&bytes).expect("an embedded PNG decodes");
        assert!(img.width() > 0 && img.height() > 0);
        images += 1;
    }
    let mut svgs = 0;
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        let end = rest[start..].find("</svg>").expect("a closed svg") + start + 6;
        roxmltree::Document::parse(&rest[start..end])
            .unwrap_or_else(|e| panic!("an inline SVG is not valid XML: {e}"));
        svgs += 1;
        rest = &rest[end..];
    }
    (images, svgs)
}

/// The hrefs of every `<a>`.
fn links(html: &str) -> Vec<String> {
    let dom = tl::parse(html, tl::ParserOptions::default()).unwrap();
    let parser = dom.parser();
    dom.query_selector("a")
        .unwrap()
        .filter_map(|h| {
            let tag = h.get(parser)?.as_tag()?;
            Some(
                tag.attributes()
                    .get("href")
                    .flatten()?
                    .as_utf8_str()
                    .into_owned(),
            )
        })
        .collect()
}

/// A sweep's variants are separate TensorBoard runs; its reports answer "did it work?" with
/// charts and decodable images, rows link to entries and manifests; `diff` of two variants
/// names the swept param, the keys it changed and why, and the metrics' difference.
#[test]
fn a_sweep_shows_as_tensorboard_runs_reports_and_a_diff() {
    let p = Project::new();
    p.file("tiny.toml", TINY);
    let r = p.ok(&["run", "tiny.toml", "--sweep", "stage.train.alfa=0.5,1"]);
    let report_at = r
        .stderr
        .find("report: ")
        .expect("run says where the report is");
    let first_start = r.stderr.find("started").unwrap();
    assert!(
        report_at < first_start,
        "the report path comes before the first stage: {}",
        r.stderr
    );

    let runs = p.path("runs/tiny");
    if let Some(python) = reader_python() {
        // The plugin multiplexer is what `tensorboard --logdir` serves from.
        const SCRIPT: &str = r#"
import json, sys
from tensorboard.backend.event_processing import plugin_event_multiplexer as pem
m = pem.EventMultiplexer()
m.AddRunsFromDirectory(sys.argv[1])
m.Reload()
scalars = m.PluginRunToTagToContent("scalars")
images = m.PluginRunToTagToContent("images")
print(json.dumps({run: {"scalars": sorted(scalars.get(run, {})), "images": sorted(images.get(run, {}))}
                  for run in m.Runs()}))
"#;
        let out = std::process::Command::new(python)
            .args(["-c", SCRIPT])
            .arg(&runs)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for variant in ["alfa-0.5", "alfa-1"] {
            let train = &found[format!("{variant}/train")];
            let scalars = train["scalars"].to_string();
            for tag in [
                "total_loss",
                "reconstruction_loss",
                "kl_loss",
                "learning_rate",
            ] {
                assert!(scalars.contains(&format!("\"{tag}\"")), "{found}");
            }
            assert_eq!(
                train["images"],
                serde_json::json!(["original", "reconstructed"]),
                "{found}"
            );
            assert_eq!(
                found[format!("{variant}/render")]["images"],
                serde_json::json!(["add_smile"]),
                "{found}"
            );
        }
    }

    for page in ["report.html", "alfa-0.5/report.html"] {
        let path = runs.join(page);
        let html = std::fs::read_to_string(&path).unwrap();
        let (images, svgs) = check_page(&html);
        assert!(
            !html.contains("still going"),
            "the final page has no live banner"
        );
        if page == "report.html" {
            assert!(images >= 2, "contact sheet and loss plot: {images}");
            continue;
        }
        // Originals + reconstructions of the last and first save, add_smile.
        assert!(images >= 5, "{page}: {images} images");
        // DAG, 4 training curves, probe bars, P per face.
        assert!(svgs >= 7, "{page}: {svgs} svgs");
        assert!(html.contains("Did it work?"));
        assert!(html.contains("40 attributes, probe accuracy"), "{page}");
        assert!(
            regex_like(&html, " of 3 faces smile more as the vector grows"),
            "share_rising in words: {page}"
        );
        let dir = path.parent().unwrap();
        let hrefs = links(&html);
        for stage in ["train", "render", "faces"] {
            assert!(
                hrefs.contains(&stage.to_owned()),
                "{stage} row links its entry: {hrefs:?}"
            );
            assert!(dir.join(format!("{stage}/manifest.json")).is_file());
            assert!(
                hrefs.contains(&format!("{stage}/manifest.json")),
                "{hrefs:?}"
            );
        }
        assert!(
            hrefs.iter().any(|h| h.starts_with("#log-")),
            "log tails are linked"
        );
    }

    // diff: a sweep variant by name against a runs/ directory.
    let d = p.ok(&[
        "diff",
        "tiny.toml@alfa-0.5",
        "runs/tiny/alfa-1",
        "--sweep",
        "stage.train.alfa=0.5,1",
        "-o",
        "d.html",
    ]);
    let out = &d.stdout;
    assert!(
        out.contains("stage.train.alfa") && out.contains("0.5 → 1"),
        "{out}"
    );
    let line = |stage: &str| -> String {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{stage} ")))
            .unwrap_or_else(|| panic!("no line for {stage}: {out}"))
            .to_owned()
    };
    assert!(line("faces").contains("same key"), "{out}");
    assert!(
        line("train").contains("param `alfa` changed: 0.5 → 1"),
        "{out}"
    );
    assert!(line("encode").contains("upstream `train` changed"), "{out}");
    let metric = out
        .lines()
        .find(|l| l.contains("train.final_total_loss"))
        .unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<f64> = metric
        .split_whitespace()
        .skip(1)
        .map(|c| c.parse().unwrap())
        .collect();
    assert_eq!(cells.len(), 3, "{metric}");
    assert!(
        (cells[0] + cells[2] - cells[1]).abs() <= 1e-3 * cells[1].abs().max(1.0),
        "B − A: {metric}"
    );
    let html = std::fs::read_to_string(p.path("d.html")).unwrap();
    let (images, _) = check_page(&html);
    assert!(
        images >= 4,
        "both sides' reconstructions and grids: {images}"
    );
}

/// `str::contains` with a digit wildcard at the start: " N of 3 faces …".
fn regex_like(text: &str, tail: &str) -> bool {
    text.match_indices(tail).any(|(i, _)| {
        text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// Two experiment files are planned, not run: the param, its key and the reason show, with no
/// metrics yet; arguments that name nothing are usage errors (exit 2).
#[test]
fn diff_of_two_files_and_its_usage_errors() {
    let p = Project::new();
    p.file("a.toml", TINY);
    p.file(
        "b.toml",
        &TINY.replace("latent_size = 8", "latent_size = 6"),
    );
    let d = p.ok(&["diff", "a.toml", "b.toml", "-o", "x.html"]);
    assert!(
        d.stdout.contains("stage.train.latent_size") && d.stdout.contains("8 → 6"),
        "{}",
        d.stdout
    );
    assert!(
        d.stdout.contains("param `latent_size` changed: 8 → 6"),
        "{}",
        d.stdout
    );
    assert!(
        !d.stdout.contains("stage.train.max_steps"),
        "equal params are not listed"
    );
    assert!(
        d.stdout.contains("metrics (A, B, B − A):\n  none"),
        "{}",
        d.stdout
    );
    assert!(p.path("x.html").is_file());

    for (args, says) in [
        (
            vec!["diff", "a.toml", "nope.toml"],
            "`nope.toml` is not an experiment file",
        ),
        (vec!["diff", "a.toml", "a.toml@alfa-1"], "is not a sweep"),
        (vec!["diff", "a.toml"], "Usage"),
    ] {
        let r = p.run(&args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.all());
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
    }
    std::fs::create_dir_all(p.path("runs/empty")).unwrap();
    let r = p.run(&["diff", "runs/empty", "a.toml"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("holds no stage entries"), "{}", r.stderr);
}
