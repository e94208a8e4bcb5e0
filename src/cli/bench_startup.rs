//! `vaepipe bench startup`: what an engine-only invocation costs on a large dataset, as ratios
//! against the floor of walking and stat-ing its files, measured in the same invocation.
//!
//! It builds (once, under `--dir`) a dataset of `--files` hard links to a few tiny PNGs in
//! folders of 1,000, an experiment with one `align-check` stage over it, and runs it once so
//! that every later `run` is a no-op. Then, interleaved `--steps` times: the stat walk (this
//! process, one thread: `read_dir` + `metadata` per file, what `find -printf '%s %T@'` does),
//! and the binary as child processes: the no-op `run`, `plan`, `dag`, `gc --dry-run`, and
//! the no-op `run` again with libtorch preloaded (`LD_PRELOAD`, what every invocation paid
//! before the torch-free start-up). Best-of wall times and user+system CPU (the walk's own, the children's).
//! Issue 17's target: the no-op run within 1.2 × the floor + 0.1 s.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The stat walk: every file's size and mtime, one thread. Returns the file count.
pub fn stat_walk(dir: &Path) -> Result<usize> {
    let mut count = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let entry = entry?;
            let meta = std::fs::metadata(entry.path())?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                std::hint::black_box((meta.len(), meta.modified()?));
                count += 1;
            }
        }
    }
    Ok(count)
}

/// Builds `files` hard links under `dir/data` (folders of 1,000) to a few generated PNGs of
/// `size`² pixels, unless a complete set is already there. Returns the data folder.
pub fn hard_linked_images(
    dir: &Path,
    files: usize,
    per_folder: usize,
    size: u32,
) -> Result<PathBuf> {
    let data = dir.join("data");
    let done = dir.join(format!("data-{files}-{per_folder}-{size}.done"));
    if done.exists() {
        return Ok(data);
    }
    if data.exists() {
        std::fs::remove_dir_all(&data)?;
    }
    let sources = dir.join("sources");
    std::fs::create_dir_all(&sources)?;
    // ext4 allows 65,000 links to one inode: a new source every 60,000 links.
    let source_count = files.div_ceil(60_000).max(4);
    let mut source_paths = Vec::new();
    for s in 0..source_count {
        let path = sources.join(format!("s{s}.png"));
        let shade = (s * 37 % 200) as u8 + 30;
        image::RgbImage::from_fn(size, size, |x, y| {
            image::Rgb([shade, (x * 7) as u8, (y * 5) as u8])
        })
        .save(&path)?;
        source_paths.push(path);
    }
    for i in 0..files {
        let folder = data.join(format!("id{:05}", i / per_folder));
        if i % per_folder == 0 {
            std::fs::create_dir_all(&folder)?;
        }
        let target = folder.join(format!("{:04}.png", i % per_folder));
        std::fs::hard_link(&source_paths[i % source_count], &target)
            .with_context(|| target.display().to_string())?;
    }
    std::fs::write(&done, "")?;
    Ok(data)
}

/// User + system CPU seconds so far from `/proc/self/stat`: this process's own, or (with
/// `children`) that of the children it has waited for.
pub fn proc_cpu_seconds(children: bool) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`: state is the 3rd; utime, stime, cutime, cstime the 14th-17th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let first = if children { 13 } else { 11 };
    (ticks(first) + ticks(first + 1)) / 100.0
}

/// Runs `cmd` to completion, quietly; returns (wall s, children's CPU s).
pub fn time_child(cmd: &mut Command) -> Result<(f64, f64)> {
    let cpu = proc_cpu_seconds(true);
    let start = Instant::now();
    let out = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
    let wall = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((wall, proc_cpu_seconds(true) - cpu))
}

struct Sample {
    name: &'static str,
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Sample {
    fn best_wall(&self) -> f64 {
        self.wall.iter().copied().fold(f64::INFINITY, f64::min)
    }
    fn best_cpu(&self) -> f64 {
        self.cpu.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

pub fn run(dir: Option<PathBuf>, files: usize, repeat: usize) -> Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("vaepipe-bench-startup"));
    std::fs::create_dir_all(&dir)?;
    let data = hard_linked_images(&dir, files, 1000, 8)?;
    let exp = dir.join("noop.toml");
    std::fs::write(
        &exp,
        format!(
            "[experiment]\nname = \"bench-startup\"\nseed = 1\n\n[input.data]\npath = {:?}\n\n\
             [stage.check]\nkind = \"align-check\"\nfrom = {{ dataset = \"data\" }}\n\
             expected_size = [8, 8]\non_bad = \"skip\"\n",
            data.display().to_string()
        ),
    )?;
    let exe = std::env::current_exe()?;
    let cache = dir.join("cache");
    let runs = dir.join("runs");
    let engine = |verb: &[&str]| {
        let mut cmd = Command::new(&exe);
        cmd.args(verb).arg(&exp).env_remove("LD_PRELOAD");
        cmd
    };
    let with_dirs = |mut cmd: Command| {
        cmd.arg("--cache-dir")
            .arg(&cache)
            .arg("--runs-dir")
            .arg(&runs)
            .arg("-q");
        cmd
    };
    // Fill the cache: every later run is a no-op.
    time_child(&mut with_dirs(engine(&["run"])))?;
    let preload = crate::torch_runtime::library_dir().map(|lib| {
        [
            "libc10.so",
            "libtorch_cpu.so",
            "libtorch_cuda.so",
            "libtorch.so",
        ]
        .iter()
        .map(|name| lib.join(name))
        .filter(|path| path.is_file())
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
    });
    let mut samples: Vec<Sample> = [
        "stat walk (floor)",
        "no-op run",
        "no-op run, libtorch loaded at start",
        "plan",
        "dag",
        "gc --dry-run",
    ]
    .into_iter()
    .map(|name| Sample {
        name,
        wall: Vec::new(),
        cpu: Vec::new(),
    })
    .collect();
    for _ in 0..repeat.max(1) {
        let (start, cpu) = (Instant::now(), proc_cpu_seconds(false));
        let counted = stat_walk(&data)?;
        samples[0].wall.push(start.elapsed().as_secs_f64());
        samples[0].cpu.push(proc_cpu_seconds(false) - cpu);
        if counted != files {
            bail!("{} holds {counted} files, not {files}", data.display());
        }
        let mut commands = vec![
            (1, with_dirs(engine(&["run"]))),
            (3, with_dirs(engine(&["plan"]))),
            (4, engine(&["dag"])),
        ];
        let mut gc = Command::new(&exe);
        gc.args(["gc", "--dry-run", "--cache-dir"])
            .arg(&cache)
            .arg("--runs-dir")
            .arg(&runs);
        commands.push((5, gc));
        if let Some(preload) = &preload {
            let mut loaded = with_dirs(engine(&["run"]));
            loaded.env("LD_PRELOAD", preload);
            commands.push((2, loaded));
        }
        for (row, mut cmd) in commands {
            let (wall, cpu) = time_child(&mut cmd)?;
            samples[row].wall.push(wall);
            samples[row].cpu.push(cpu);
        }
    }
    let floor = samples[0].best_wall();
    println!(
        "{files} files in {} (hard links, folders of 1,000); best of {repeat}; load average {}",
        data.display(),
        load_average()
    );
    println!("\n| what | wall s | vs stat walk | user+sys s |");
    println!("|---|---:|---:|---:|");
    for s in samples.iter().filter(|s| !s.wall.is_empty()) {
        println!(
            "| {} | {:.3} | {:.2}× | {:.3} |",
            s.name,
            s.best_wall(),
            s.best_wall() / floor,
            s.best_cpu()
        );
    }
    let noop = samples[1].best_wall();
    let target = 1.2 * floor + 0.1;
    println!(
        "\nno-op run {noop:.3} s against the target 1.2 × {floor:.3} + 0.1 = {target:.3} s: {}",
        if noop <= target { "within" } else { "over" }
    );
    if !samples[2].wall.is_empty() {
        println!(
            "libtorch at start costs the no-op run {:.2}× its torch-free time ({:.3} s more CPU)",
            samples[2].best_wall() / noop,
            samples[2].best_cpu() - samples[1].best_cpu()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The 1-minute load average (`/proc/loadavg`), for reading wall times on a shared machine.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}
