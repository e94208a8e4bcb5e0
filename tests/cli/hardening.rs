//! Hostile and unusual inputs, signals and logs, driven through the real binary (issue 15):
//! dimension bombs in a dataset (bounded memory), SIGTERM during image decoding and training
//! (143, no manifest, the rerun resumes), plain progress lines when stderr is not a terminal,
//! usage errors of the model verbs (exit 2), and `modify`'s output names.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{find_named, Project};

/// Sends `signal` (`-TERM`, `-INT`) to `child`.
fn send(signal: &str, child: &Child) {
    let sent = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Spawns `vaepipe args` with stderr into `log` (a file: not a terminal).
fn spawn_logged(p: &Project, args: &[&str], log: &str) -> Child {
    let file = std::fs::File::create(p.path(log)).unwrap();
    p.command(args)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The peak resident set (VmHWM, bytes) of a running process, if it is still readable.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 77]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

const CHECK_DATA: &str = r#"
[experiment]
name = "hostile"

[input.data]
path = "data"

[stage.check]
kind = "align-check"
from = { dataset = "data" }
crop = 8
on_bad = "skip"
"#;

/// See: issue 15. Four files whose headers claim 65500×65500 pixels made align-check allocate
/// 12.9 GB each; now they are excluded from their header, naming the claimed size, and the
/// whole check stays far below 1 GB.
#[test]
fn a_dataset_of_dimension_bombs_is_checked_in_bounded_memory() {
    let p = Project::new();
    p.file("exp.toml", CHECK_DATA);
    for i in 0..4 {
        write(&p.path(&format!("data/ok/{i:03}.png")), &png(16, 16));
    }
    for i in 0..2 {
        let jpeg = vaepipe_facedata::fixtures::jpeg_claiming(65500, 65500);
        write(&p.path(&format!("data/bombs/j{i}.jpg")), &jpeg);
        let png = vaepipe_facedata::fixtures::png_claiming(65500, 65500);
        write(&p.path(&format!("data/bombs/p{i}.png")), &png);
    }
    let mut child = spawn_logged(&p, &["run", "exp.toml"], "run.log");
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(rss) = peak_rss(pid) {
            peak = peak.max(rss);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let log = std::fs::read_to_string(p.path("run.log")).unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(peak > 0, "the child's memory was never read");
    assert!(peak < 1 << 30, "peak RSS {} MiB", peak >> 20);
    let report = std::fs::read_to_string(p.path("runs/hostile/check/report.txt")).unwrap();
    assert!(
        report.starts_with("align-check: 8 images, 4 usable, 4 excluded"),
        "{report}"
    );
    assert!(
        report.contains(
            "excluded  bombs/j0.jpg: the header claims 65500x65500 pixels, more than the limit of 16384 px a side and 64 megapixels"
        ),
        "{report}"
    );
    assert!(report.contains("excluded  bombs/p1.png: the header claims 65500x65500"));
}

/// See: issue 15. SIGTERM during a long align-check was ignored until the stage ended (and the
/// verb exited 0). Now the decoding loop stops: exit 143, no entry, and the rerun completes.
#[test]
fn sigterm_stops_align_check_mid_decode_and_the_rerun_completes() {
    let p = Project::new();
    p.file("exp.toml", CHECK_DATA);
    // One 1024×1024 photo-like JPEG copied 400 times: seconds of decoding on 2 cores.
    let img = image::RgbImage::from_fn(1024, 1024, |x, y| {
        image::Rgb([(x ^ y) as u8, (x * 3) as u8, (y * 7) as u8])
    });
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    for i in 0..400 {
        write(
            &p.path(&format!("data/{:02}/{i:04}.jpg", i / 40)),
            jpeg.get_ref(),
        );
    }
    let mut child = spawn_logged(&p, &["run", "exp.toml"], "run.log");
    let log = || std::fs::read_to_string(p.path("run.log")).unwrap_or_default();
    wait_for("the check to start", Duration::from_secs(60), || {
        log().contains("stage `check` started")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the check finished before the signal; make the dataset larger:\n{}",
        log()
    );
    let sent = Instant::now();
    send("-TERM", &child);
    let status = child.wait().unwrap();
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(143), "{}", log());
    // A correctness bound, not a benchmark: a decode takes milliseconds.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(log().contains("interrupted"), "{}", log());
    assert!(
        find_named(&p.path("cache/entries"), "manifest.json").is_empty(),
        "no entry after an interrupt"
    );
    p.ok(&["run", "exp.toml"]);
    let report = std::fs::read_to_string(p.path("runs/hostile/check/report.txt")).unwrap();
    assert!(
        report.starts_with("align-check: 400 images, 400 usable"),
        "{report}"
    );
}

/// See: issue 15. SIGTERM (what `timeout` and Slurm send) during training: exit 143 at the
/// next step, no entry, the checkpoint kept, and the rerun resumes from it.
#[test]
fn sigterm_during_training_exits_143_and_the_rerun_resumes() {
    let config = crate::pipeline::TINY.replace("max_steps = 4", "max_steps = 100");
    let p = Project::new();
    p.file("tiny.toml", &config);
    p.ok(&["run", "tiny.toml", "--only", "check"]);
    let mut child = spawn_logged(
        &p,
        &["run", "tiny.toml", "--only", "train", "--threads", "1"],
        "train.log",
    );
    wait_for("a checkpoint", Duration::from_secs(120), || {
        !find_named(&p.path("cache/partial"), "step-000004").is_empty()
    });
    let sent = Instant::now();
    send("-TERM", &child);
    let status = child.wait().unwrap();
    let took = sent.elapsed();
    let log = std::fs::read_to_string(p.path("train.log")).unwrap();
    assert_eq!(status.code(), Some(143), "{log}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        !p.path("runs/tiny/train").exists(),
        "no entry after an interrupt"
    );
    p.resume_train("tiny.toml");
}

/// See: issue 15. With stderr in a file, training printed nothing for minutes; now a plain line
/// every 10% (or `VAEPIPE_PROGRESS_INTERVAL` seconds) gives step/total, rate, ETA and losses.
#[test]
fn progress_is_plain_lines_when_stderr_is_not_a_terminal() {
    let config = crate::pipeline::TINY.replace("max_steps = 4", "max_steps = 20");
    let p = Project::new();
    p.file("tiny.toml", &config);
    p.ok(&["run", "tiny.toml", "--only", "check"]);
    let out = p
        .command(&["run", "tiny.toml", "--only", "train"])
        // Only the 10% rule prints: the lines are then exactly the tenths.
        .env("VAEPIPE_PROGRESS_INTERVAL", "100000")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("stage `train`: ") && l.contains("/20 ("))
        .collect();
    let steps: Vec<&str> = lines
        .iter()
        .map(|l| {
            l.split("stage `train`: ")
                .nth(1)
                .unwrap()
                .split('/')
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(
        steps,
        ["2", "4", "6", "8", "10", "12", "14", "16", "18", "20"],
        "{stderr}"
    );
    let half = lines[4];
    assert!(half.contains("10/20 (50%), "), "{half}");
    assert!(half.contains("/s, eta "), "{half}");
    assert!(
        half.contains("total "),
        "the losses are on the line: {half}"
    );
    assert!(!stderr.contains('\r'), "no bar redraws in a log file");
}

/// See: issue 15. Usage errors of the model verbs exit 2 as the README promises (they exited 1).
#[test]
fn usage_errors_of_the_model_verbs_exit_2() {
    let p = Project::new();
    write(&p.path("face.png"), &png(8, 8));
    let cases: [(&[&str], &str); 5] = [
        (&["modify", "face.png"], "say which model to use"),
        (
            &["modify", "face.png", "--run", "runs/none"],
            "--run runs/none",
        ),
        (&["bench", "--steps", "0"], "--steps must be at least 1"),
        (&["bench", "--device", "tpu"], "--device tpu"),
        (
            &[
                "import-weights",
                "nowhere/model.ckpt-1",
                "-o",
                "w.safetensors",
            ],
            "no TensorFlow checkpoint at `nowhere/model.ckpt-1`",
        ),
    ];
    for (args, says) in cases {
        let r = p.run(args);
        assert_eq!(r.code, 2, "`vaepipe {}`: {}", args.join(" "), r.all());
        assert!(
            r.stderr.contains(says),
            "`{}`: {}",
            args.join(" "),
            r.stderr
        );
        assert!(!r.stderr.contains("panicked at"), "{}", r.stderr);
    }
}

/// See: issue 15. `modify a/001.jpg b/001.png -o out` wrote both to `out/001_smiling.png`.
/// Now names are unique, existing files are not replaced without `--force`, an unknown
/// attribute gets a did-you-mean, and a dimension bomb is refused naming its claimed size.
#[test]
fn modify_names_outputs_uniquely_and_never_overwrites_silently() {
    let p = Project::new();
    p.file("tiny.toml", crate::pipeline::TINY);
    p.ok(&["run", "tiny.toml", "--only", "vectors"]);
    let face = p.path("runs/tiny/faces/celeba/img_align_celeba/000001.jpg");
    std::fs::create_dir_all(p.path("a")).unwrap();
    std::fs::copy(&face, p.path("a/001.jpg")).unwrap();
    let img = image::open(&face).unwrap();
    std::fs::create_dir_all(p.path("b")).unwrap();
    img.save(p.path("b/001.png")).unwrap();
    let args = [
        "modify",
        "--run",
        "runs/tiny",
        "-o",
        "out",
        "a/001.jpg",
        "b/001.png",
    ];
    let first = p.ok(&args);
    assert!(
        first.stdout.contains("out/a/001_smiling.png"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("out/b/001_smiling.png"),
        "{}",
        first.stdout
    );
    assert!(p.path("out/a/001_smiling.png").is_file());
    assert!(p.path("out/b/001_smiling.png").is_file());
    assert!(!p.path("out/001_smiling.png").exists());

    let again = p.run(&args);
    assert_eq!(again.code, 2, "{}", again.all());
    assert!(
        again
            .stderr
            .contains("refusing to overwrite 2 existing output files"),
        "{}",
        again.stderr
    );
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    let forced: Vec<&str> = args.iter().copied().chain(["--force"]).collect();
    p.ok(&forced);

    let typo = p.run(&[
        "modify",
        "--run",
        "runs/tiny",
        "-o",
        "typo",
        "--attribute",
        "Smilng",
        "a/001.jpg",
    ]);
    assert_eq!(typo.code, 2, "{}", typo.all());
    assert!(
        typo.stderr.contains("has no attribute `Smilng`"),
        "{}",
        typo.stderr
    );
    assert!(
        typo.stderr.contains("did you mean `Smiling`?"),
        "{}",
        typo.stderr
    );

    write(
        &p.path("bomb.jpg"),
        &vaepipe_facedata::fixtures::jpeg_claiming(65500, 65500),
    );
    let bomb = p.run(&["modify", "--run", "runs/tiny", "-o", "bombs", "bomb.jpg"]);
    assert_eq!(bomb.code, 1, "{}", bomb.all());
    assert!(
        bomb.stderr
            .contains("bomb.jpg: the header claims 65500x65500 pixels, more than the limit"),
        "{}",
        bomb.stderr
    );
}
