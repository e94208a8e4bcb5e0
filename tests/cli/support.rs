//! A small `Test` builder in just's style: a temp project directory, experiment files written
//! into it, and the real `vaepipe` binary run there with a clean environment.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_vaepipe");

pub struct Project {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl Project {
    pub fn new() -> Project {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("project");
        std::fs::create_dir_all(&dir).expect("project dir");
        Project { _tmp: tmp, dir }
    }

    pub fn file(&self, rel: &str, text: &str) -> &Self {
        let path = self.dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(&self.dir)
            .env_remove("VAEPIPE_CACHE_DIR")
            .env_remove("VAEPIPE_RUNS_DIR")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("vaepipe runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(
            r.code,
            0,
            "`vaepipe {}` failed:\n{}",
            args.join(" "),
            r.all()
        );
        r
    }

    /// Reruns only `train` of `experiment` (one thread, verbose) after an interruption and
    /// checks that it succeeded by resuming from a checkpoint rather than starting over.
    pub fn resume_train(&self, experiment: &str) -> Run {
        let r = self.ok(&["run", experiment, "--only", "train", "--threads", "1", "-v"]);
        assert!(r.all().contains("resuming from step"), "{}", r.all());
        r
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn vaepipe")
    }
}

/// blake3 of a file, hex.
pub fn hash(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    blake3::hash(&bytes).to_hex().to_string()
}

/// Files under `dir` (recursively) whose name is `name`.
pub fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            if p.file_name().is_some_and(|n| n == name) {
                found.push(p);
            }
        }
    }
    found
}
