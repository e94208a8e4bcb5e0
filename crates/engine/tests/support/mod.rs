//! What the engine's integration tests share: a temp project directory and the real
//! `engine-testbed` binary run in it with a clean environment. Each test file uses a part.

#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_engine-testbed");

pub struct Project {
    /// Keeps the directory alive; a test may build a second project by hand.
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Committed cache entries are read-only; a user who is not root cannot delete files in a
/// read-only directory, so the temp dir is made writable before it is removed.
impl Drop for Project {
    fn drop(&mut self) {
        fn writable(dir: &std::path::Path) {
            use std::os::unix::fs::PermissionsExt;
            let Ok(meta) = fs::symlink_metadata(dir) else {
                return;
            };
            if !meta.is_dir() {
                return;
            }
            let _ = fs::set_permissions(
                dir,
                fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
            );
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                writable(&entry.path());
            }
        }
        writable(self._tmp.path());
    }
}

impl Project {
    pub fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("project");
        fs::create_dir_all(&dir).unwrap();
        Project { _tmp: tmp, dir }
    }

    pub fn file(&self, rel: &str, text: &str) -> &Self {
        let path = self.dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(&self.dir)
            .env_remove("VAEPIPE_CACHE_DIR")
            .env_remove("VAEPIPE_RUNS_DIR")
            .env_remove("RUST_LOG")
            .env_remove("VAEPIPE_REMOTE")
            // Slurm tests poll job states; a short interval keeps them quick.
            .env("VAEPIPE_SLURM_POLL_MS", "200")
            .env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let Output {
            status,
            stdout,
            stderr,
        } = self.command(args).output().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(
            r.code,
            0,
            "`{}` failed:\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            r.stdout,
            r.stderr
        );
        r
    }

    pub fn spawn(&self, args: &[&str], log: &str) -> Child {
        let log = fs::File::create(self.dir.join(log)).unwrap();
        self.command(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// How many times the testbed's `count` kind ran under `name`.
    pub fn count(&self, name: &str) -> usize {
        fs::read_to_string(self.dir.join("counts").join(name))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}
