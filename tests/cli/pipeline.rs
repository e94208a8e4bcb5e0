//! The DFC-VAE pipeline end to end on a tiny synthetic experiment: every stage's files, the
//! h5py layout, the grid geometry, cache hits on a rerun, config errors on the real kinds,
//! bitwise resume after kill -9, and a clear stop on a diverging loss. See issues 5 and 6.

use std::time::{Duration, Instant};

use crate::support::{find_named, hash, Project};

/// A few seconds on 2 cores: 96 CelebA-style images, 32 training images, 4 steps.
pub const TINY: &str = r#"
[experiment]
name = "tiny"
seed = 7

[stage.faces]
kind = "synth-faces"
celeba_images = 96
celeba_identities = 12
identities = 4
images_per_identity = 8

[stage.check]
kind = "align-check"
from = { dataset = "faces/casia" }
expected_size = [182, 182]
on_bad = "skip"

[stage.train]
kind = "train-vae"
from = { data = "faces/casia", check = "check" }
loss_features = ["Conv2d_1a_3x3"]
weights = "random"
max_steps = 4
batch_size = 8
latent_size = 8
save_every = 2
initial_learning_rate = 0.001

[stage.encode]
kind = "encode"
from = { model = "train", data = "faces/celeba" }
batch_size = 16

[stage.vectors]
kind = "attribute-vectors"
from = { latents = "encode" }

[stage.render]
kind = "render-attribute"
from = { model = "train", vectors = "vectors" }
faces = { count = 3 }
amounts = [0.0, 1.0, 2.0]
"#;

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

#[test]
fn tiny_pipeline_writes_every_artifact_and_reruns_as_hits() {
    let p = Project::new();
    p.file("tiny.toml", TINY);
    let first = p.ok(&["run", "tiny.toml"]);
    assert!(
        first
            .stdout
            .contains("tiny: 6 ran, 0 fresh, 0 not completed"),
        "{}",
        first.all()
    );

    let runs = p.path("runs/tiny");
    // train-vae: weights, spec, checkpoints (last 3 of steps 2, 4), grids, logs, metrics.
    for f in [
        "vae.safetensors",
        "vae.json",
        "logs.h5",
        "metrics.jsonl",
        "loss_curve.png",
        "reconstructed_000002.png",
        "reconstructed_000004.png",
    ] {
        assert!(runs.join("train").join(f).is_file(), "train lacks {f}");
    }
    assert!(runs
        .join("train/checkpoints/step-000004/model.safetensors")
        .is_file());
    let lines = std::fs::read_to_string(runs.join("train/metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 4, "one metrics line per step");
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v["total_loss"].as_f64().is_some_and(f64::is_finite),
            "{line}"
        );
    }
    let logs =
        vaepipe::formats::logs_h5::LossHistory::read_h5(&runs.join("train/logs.h5")).unwrap();
    assert_eq!(logs.total_loss.len(), 4);

    // Reconstruction grid: the original's full 16×8 canvas (1075×539) for any batch size;
    // the 8 images fill row 0's first half, every other tile stays black.
    let grid = image::open(runs.join("train/reconstructed_000004.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!((grid.width(), grid.height()), (1075, 539));
    let tile_has_colour = |row: u32, col: u32| {
        let (x0, y0) = (col * 67 + 3, row * 67 + 3);
        (0..64).any(|y| (0..64).any(|x| grid.get_pixel(x0 + x, y0 + y).0 != [0, 0, 0]))
    };
    assert!(tile_has_colour(0, 7), "image 8 is drawn");
    assert!(
        !tile_has_colour(0, 8) && !tile_has_colour(7, 15),
        "empty tiles are black"
    );

    // attribute_vectors.h5 in facenet's layout.
    let av = vaepipe::formats::attribute_vectors_h5::AttributeVectors::read(
        &runs.join("vectors/attribute_vectors.h5"),
    )
    .unwrap();
    assert_eq!(av.fields.len(), 40);
    assert_eq!(av.fields[31], "Smiling");
    assert_eq!(av.rows(), 96);
    assert_eq!(av.latent_size, 8);
    assert!(
        av.attribute_vectors.iter().all(|v| v.is_finite()),
        "no NaN vector, even for undefined attributes"
    );
    let smiling = av.vector("Smiling").unwrap();
    assert!(
        smiling.iter().any(|&v| v != 0.0),
        "Smiling has both classes in the synthetic set"
    );

    // add_smile.png: 3 amounts × 2 faces per row = 6 columns, ceil(3/2) = 2 rows.
    let smile = image::open(runs.join("render/add_smile.png")).unwrap();
    assert_eq!((smile.width(), smile.height()), (6 * 67 + 3, 2 * 67 + 3));
    let metrics = json(&runs.join("render/metrics.json"));
    assert_eq!(metrics["mean_probability"].as_array().unwrap().len(), 3);
    let share = metrics["share_rising"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&share));
    let probe = json(&runs.join("vectors/metrics.json"));
    let avg = probe["probe_average_accuracy"].as_f64().unwrap();
    assert!(avg.is_finite() && (0.0..=1.0).contains(&avg), "{probe}");

    let second = p.ok(&["run", "tiny.toml"]);
    assert!(
        second.stdout.contains("tiny: 0 ran, 6 fresh"),
        "{}",
        second.all()
    );
}

#[test]
fn changing_loss_features_dirties_train_and_downstream_only() {
    let p = Project::new();
    p.file("tiny.toml", TINY);
    p.ok(&["run", "tiny.toml", "--only", "check"]);
    p.ok(&["run", "tiny.toml"]);
    let plan = p.ok(&[
        "plan",
        "tiny.toml",
        "--set",
        r#"stage.train.loss_features=["Conv2d_1a_3x3", "Conv2d_2a_3x3"]"#,
    ]);
    let line = |stage: &str| {
        plan.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(stage))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("faces").contains("fresh"), "{}", plan.stdout);
    assert!(line("check").contains("fresh"), "{}", plan.stdout);
    assert!(
        line("train").contains("dirty") && line("train").contains("loss_features"),
        "{}",
        plan.stdout
    );
    for downstream in ["encode", "vectors", "render"] {
        assert!(
            line(downstream).contains("dirty"),
            "{downstream}: {}",
            plan.stdout
        );
    }
    // The original's comma-separated string is the same param: no rerun.
    let same = p.ok(&[
        "plan",
        "tiny.toml",
        "--set",
        r#"stage.train.loss_features="Conv2d_1a_3x3""#,
    ]);
    assert!(!same.stdout.contains("dirty"), "{}", same.stdout);
}

#[test]
fn unknown_loss_feature_is_a_config_error_listing_the_valid_names() {
    let p = Project::new();
    p.file(
        "tiny.toml",
        &TINY.replace(
            r#"loss_features = ["Conv2d_1a_3x3"]"#,
            r#"loss_features = ["Conv2d_1a_3x4"]"#,
        ),
    );
    let r = p.run(&["plan", "tiny.toml"]);
    assert_eq!(r.code, 2, "{}", r.all());
    let line = TINY
        .lines()
        .position(|l| l.starts_with("loss_features"))
        .unwrap()
        + 1;
    assert!(
        r.stderr.contains(&format!("tiny.toml:{line}:")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("`Conv2d_1a_3x4` is not an Inception-ResNet-v1 end point"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("Conv2d_2b_3x3"),
        "the help lists valid names: {}",
        r.stderr
    );
}

#[test]
fn a_diverging_loss_stops_training_naming_the_step_and_keeps_upstream() {
    let p = Project::new();
    p.file(
        "tiny.toml",
        &TINY.replace(
            "initial_learning_rate = 0.001",
            "initial_learning_rate = 1e30",
        ),
    );
    let r = p.run(&["run", "tiny.toml", "--only", "train"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("at step"), "{}", r.stderr);
    assert!(
        p.path("runs/tiny/check/report.json").is_file(),
        "upstream entries stay committed"
    );
    assert!(
        !p.path("runs/tiny/train").exists(),
        "no entry for the failed stage"
    );
}

/// Killed at any point and rerun, training resumes from its last checkpoint and ends with the
/// same bits as an uninterrupted run (CPU, fixed threads). See issue 5.
#[test]
fn killed_training_resumes_to_the_same_bits_as_an_uninterrupted_run() {
    let config = TINY.replace("max_steps = 4", "max_steps = 24");
    let whole = Project::new();
    whole.file("tiny.toml", &config);
    whole.ok(&["run", "tiny.toml", "--only", "train", "--threads", "1"]);
    let expected = hash(&whole.path("runs/tiny/train/vae.safetensors"));

    let killed = Project::new();
    killed.file("tiny.toml", &config);
    killed.ok(&["run", "tiny.toml", "--only", "check"]);
    let mut child = killed.spawn(&["run", "tiny.toml", "--only", "train", "--threads", "1"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut saw_checkpoint = false;
    while Instant::now() < deadline {
        if !find_named(&killed.path("cache"), "step-000004").is_empty() {
            saw_checkpoint = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().ok();
    child.wait().unwrap();
    assert!(
        saw_checkpoint,
        "no checkpoint appeared before training ended"
    );
    assert!(
        !killed.path("runs/tiny/train").exists(),
        "a killed stage has no entry"
    );
    killed.resume_train("tiny.toml");
    assert_eq!(
        hash(&killed.path("runs/tiny/train/vae.safetensors")),
        expected,
        "resumed weights differ"
    );
}

#[test]
fn modify_adds_the_attribute_to_any_image_and_reports_bad_ones() {
    let p = Project::new();
    p.file("tiny.toml", TINY);
    p.ok(&["run", "tiny.toml"]);
    p.file("not_an_image.jpg", "hello");
    let face = p.path("runs/tiny/faces/celeba/img_align_celeba/000001.jpg");
    let r = p.run(&[
        "modify",
        "--run",
        "runs/tiny",
        "--amount",
        "-1,0,2",
        "-o",
        "out",
        face.to_str().unwrap(),
        "not_an_image.jpg",
    ]);
    assert_eq!(
        r.code,
        1,
        "one bad image makes the exit code 1: {}",
        r.all()
    );
    assert!(r.stderr.contains("not_an_image.jpg"), "{}", r.stderr);
    let strip = image::open(p.path("out/000001_smiling.png")).unwrap();
    assert_eq!(
        (strip.width(), strip.height()),
        (3 * 67 + 3, 67 + 3),
        "three amounts in one strip"
    );
    // `--grid-scaling minmax`: facenet's bytescale stretches the strip to the full 0..255.
    let face_arg = face.to_str().unwrap();
    p.ok(&[
        "modify",
        "--run",
        "runs/tiny",
        "--amount",
        "-1,0,2",
        "--grid-scaling",
        "minmax",
        "-o",
        "out-minmax",
        face_arg,
    ]);
    let stretched = image::open(p.path("out-minmax/000001_smiling.png"))
        .unwrap()
        .to_rgb8();
    let clipped = strip.to_rgb8();
    let (lo, hi) = stretched
        .as_raw()
        .iter()
        .fold((255, 0), |(l, h), &b| (l.min(b), h.max(b)));
    assert_eq!((lo, hi), (0, 255), "minmax uses the whole range");
    assert_ne!(
        stretched.as_raw(),
        clipped.as_raw(),
        "minmax differs from clip"
    );
}

/// The published setup names real data; without it, vaepipe stops before running anything,
/// naming each missing path and pointing at the demo. See issue 6.
#[test]
fn smile_toml_without_data_stops_at_once_naming_paths_and_the_demo() {
    let p = Project::new();
    p.file(
        "experiments/smile.toml",
        include_str!("../../experiments/smile.toml"),
    );
    let home = p.path("empty-home");
    std::fs::create_dir_all(&home).unwrap();
    let out = p
        .command(&["run", "experiments/smile.toml"])
        .env("HOME", &home)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for input in ["casia", "celeba", "facenet", "mtcnn"] {
        assert!(
            stderr.contains(&format!("input `{input}` does not exist")),
            "{input}: {stderr}"
        );
    }
    assert!(
        stderr.contains("empty-home/datasets/casia/CASIA-WebFace"),
        "{stderr}"
    );
    assert!(
        stderr.contains("experiments/demo.toml"),
        "points at the demo: {stderr}"
    );
    assert!(!p.path("cache/entries").exists(), "nothing ran");
}

/// A sweep over the real kinds: shared upstream stages run once, each variant gets its own
/// train/encode/vectors/render, and the root crate's hook adds the contact sheet and the
/// all-variant loss plot to the sweep's files. See issue 7.
#[test]
fn a_sweep_over_alfa_runs_shared_stages_once_and_builds_the_contact_sheet() {
    let p = Project::new();
    p.file("tiny.toml", TINY);
    let r = p.ok(&["run", "tiny.toml", "--sweep", "stage.train.alfa=0.5,1"]);
    let started = |stage: &str| {
        r.stderr
            .matches(&format!("stage `{stage}` started"))
            .count()
            + r.stderr.matches(&format!("/{stage}` started")).count()
    };
    assert_eq!(started("faces"), 1, "{}", r.stderr);
    assert_eq!(started("check"), 1, "{}", r.stderr);
    assert_eq!(started("train"), 2, "{}", r.stderr);
    let runs = p.path("runs/tiny");
    let csv = std::fs::read_to_string(runs.join("sweep.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        3,
        "a header and one row per variant: {csv}"
    );
    assert!(
        csv.contains("share_rising") && csv.contains("probe_average_accuracy"),
        "{csv}"
    );
    for image in ["contact_sheet.png", "loss_curves.png"] {
        let img = image::open(runs.join(image)).unwrap_or_else(|e| panic!("{image}: {e}"));
        assert!(
            img.width() >= 400,
            "{image} is {}×{}",
            img.width(),
            img.height()
        );
    }
    let html = std::fs::read_to_string(runs.join("report.html")).unwrap();
    assert!(
        html.contains("data:image/png;base64,"),
        "the report embeds its images"
    );
}

/// A face net trained by `train-facenet` plugs into `train-vae` through `from.perceptual`: the
/// file holds only the net's variables, the VAE's manifest records it, a train-facenet param
/// change dirties train-vae, and a loss layer deeper than the net was trained to is an error
/// naming it. See issue 8.
#[test]
fn a_face_net_trained_by_train_facenet_feeds_train_vae() {
    let config = TINY
        .replace(
            "[stage.train]\nkind = \"train-vae\"\nfrom = { data = \"faces/casia\", check = \"check\" }",
            r#"[stage.facenet]
kind = "train-facenet"
from = { data = "faces/casia", check = "check" }
end_point = "Conv2d_2b_3x3"
max_steps = 3
batch_size = 8
held_out_per_identity = 1
bn_recalibration_batches = 2
save_every = 2

[stage.train]
kind = "train-vae"
from = { data = "faces/casia", check = "check", perceptual = "facenet/face_net.safetensors" }"#,
        )
        .replace("weights = \"random\"\n", "");
    assert!(config.contains("[stage.facenet]"), "the TINY text changed");
    let p = Project::new();
    p.file("tiny.toml", &config);
    p.ok(&["run", "tiny.toml", "--only", "train"]);

    let facenet = p.path("runs/tiny/facenet");
    let spec = json(&facenet.join("face_net.json"));
    assert_eq!(spec["end_point"], "Conv2d_2b_3x3");
    assert_eq!(spec["perceptual_input"], "dataset");
    assert_eq!(spec["identities"], 4);
    let metrics = json(&facenet.join("metrics.json"));
    assert_eq!(metrics["held_out_images"], 4);
    assert_eq!(metrics["train_images"], 28);
    let held_out = metrics["held_out_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&held_out), "{metrics}");
    let lines = std::fs::read_to_string(facenet.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 3, "one metrics line per step");
    assert!(facenet.join("loss_curve.png").is_file());
    assert!(facenet
        .join("checkpoints/step-000003/model.safetensors")
        .is_file());
    let mut names: Vec<String> =
        tch::Tensor::read_safetensors(facenet.join("face_net.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
    names.sort();
    assert_eq!(
        names.len(),
        12,
        "3 conv layers × (weights, beta, 2 moving stats): {names:?}"
    );
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("InceptionResnetV1.Conv2d_")),
        "no head in the file: {names:?}"
    );

    let manifest = json(&p.path("runs/tiny/train/manifest.json"));
    assert_eq!(
        manifest["notes"]["perceptual_weights"], "face_net.safetensors",
        "{manifest}"
    );
    assert_eq!(
        manifest["notes"]["perceptual_net"]["trained_end_point"],
        "Conv2d_2b_3x3"
    );
    assert_eq!(manifest["upstream"]["perceptual"]["stage"], "facenet");

    let plan = p.ok(&["plan", "tiny.toml", "--set", "stage.facenet.max_steps=4"]);
    let line = |stage: &str| {
        plan.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(stage))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("facenet").contains("dirty") && line("facenet").contains("max_steps"),
        "{}",
        plan.stdout
    );
    assert!(line("train").contains("dirty"), "{}", plan.stdout);
    assert!(line("check").contains("fresh"), "{}", plan.stdout);

    let deeper = p.run(&[
        "run",
        "tiny.toml",
        "--only",
        "train",
        "--set",
        r#"stage.train.loss_features=["Conv2d_1a_3x3", "Conv2d_3b_1x1"]"#,
    ]);
    assert_eq!(deeper.code, 1, "{}", deeper.all());
    assert!(
        deeper
            .stderr
            .contains("reads end point `Conv2d_3b_1x1`, but")
            && deeper
                .stderr
                .contains("was trained only up to `Conv2d_2b_3x3`"),
        "{}",
        deeper.stderr
    );
}

#[test]
fn unknown_train_facenet_end_point_is_a_config_error() {
    let p = Project::new();
    p.file(
        "tiny.toml",
        r#"
[experiment]
name = "tiny"

[stage.faces]
kind = "synth-faces"
identities = 2
images_per_identity = 4
celeba_images = 8
celeba_identities = 2

[stage.facenet]
kind = "train-facenet"
from = { data = "faces/casia" }
end_point = "Conv2d_4b"
"#,
    );
    let r = p.run(&["plan", "tiny.toml"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr
            .contains("`Conv2d_4b` is not an Inception-ResNet-v1 end point"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Conv2d_4b_3x3"), "{}", r.stderr);
}
