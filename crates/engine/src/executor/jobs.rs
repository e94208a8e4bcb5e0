//! The record of Slurm submissions, so `status` and `cancel` work after the submitter exits:
//! `<cache>/jobs/<experiment>.json` maps each submitted key to its job (id, stage, log, script,
//! dependencies). Job scripts live in `<cache>/jobs/scripts/<key>.sh`, logs in
//! `<cache>/jobs/logs/<key>-<jobid>.log`, and each job's exit status in
//! `<cache>/jobs/logs/<key>-<jobid>.rc` (written by the script, read when Slurm has forgotten the
//! job). A record is updated under an `flock` on `<cache>/jobs/<experiment>.lock` and replaced by
//! an atomic rename, so two submitters sharing the cache never lose each other's entries.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The format of `<cache>/jobs/<experiment>.json`.
pub const JOBS_FORMAT: u32 = 1;

/// One submitted job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The plan node's name (`b`, `alfa-0.5/b`).
    pub stage: String,
    pub job_id: String,
    /// The job's log (stdout and stderr).
    pub log: PathBuf,
    pub script: PathBuf,
    /// Job ids it waits for (`afterok`).
    pub after: Vec<String>,
    pub submitted_at: String,
    /// The experiment file, as the job re-resolves it.
    pub file: PathBuf,
}

impl JobRecord {
    /// Where the job script writes its exit status.
    pub fn rc_path(&self) -> PathBuf {
        self.log.with_extension("rc")
    }

    /// The job's exit status from its `.rc` file, when it finished its command.
    pub fn exit_status(&self) -> Option<i32> {
        fs::read_to_string(self.rc_path()).ok()?.trim().parse().ok()
    }
}

/// `<cache>/jobs/<experiment>.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsFile {
    pub format: u32,
    pub experiment: String,
    /// Key → its latest job.
    pub jobs: BTreeMap<String, JobRecord>,
}

/// `<cache>/jobs`.
pub fn jobs_dir(cache_root: &Path) -> PathBuf {
    cache_root.join("jobs")
}

/// The experiment's record file.
pub fn jobs_path(cache_root: &Path, experiment: &str) -> PathBuf {
    jobs_dir(cache_root).join(format!("{experiment}.json"))
}

/// Reads the experiment's record; an absent file is an empty record.
pub fn read(cache_root: &Path, experiment: &str) -> io::Result<JobsFile> {
    let path = jobs_path(cache_root, experiment);
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("`{}` is damaged: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(JobsFile {
            format: JOBS_FORMAT,
            experiment: experiment.to_owned(),
            jobs: BTreeMap::new(),
        }),
        Err(e) => Err(e),
    }
}

/// Read-modify-write of the experiment's record under its lock; the new file replaces the old
/// one by rename.
pub fn update<T>(
    cache_root: &Path,
    experiment: &str,
    change: impl FnOnce(&mut JobsFile) -> T,
) -> io::Result<T> {
    let dir = jobs_dir(cache_root);
    fs::create_dir_all(&dir)?;
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{experiment}.lock")))?;
    lock.lock()?;
    let mut file = read(cache_root, experiment)?;
    let out = change(&mut file);
    file.format = JOBS_FORMAT;
    file.experiment = experiment.to_owned();
    let text = serde_json::to_string_pretty(&file).map_err(io::Error::other)?;
    crate::atomic_file::write_atomic(&jobs_path(cache_root, experiment), text.as_bytes())?;
    Ok(out)
}

/// The last `n` lines of a log (lossy UTF-8), or `None` when it cannot be read.
pub fn log_tail(path: &Path, n: usize) -> Option<Vec<String>> {
    let bytes = fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    Some(lines[start..].iter().map(|l| (*l).to_owned()).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn update_keeps_other_keys_and_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let rec = |id: &str| JobRecord {
            stage: "a".into(),
            job_id: id.into(),
            log: tmp.path().join(format!("k-{id}.log")),
            script: tmp.path().join("k.sh"),
            after: vec![],
            submitted_at: "now".into(),
            file: "exp.toml".into(),
        };
        update(tmp.path(), "exp", |f| f.jobs.insert("k1".into(), rec("1"))).unwrap();
        update(tmp.path(), "exp", |f| f.jobs.insert("k2".into(), rec("2"))).unwrap();
        let f = read(tmp.path(), "exp").unwrap();
        assert_eq!(f.jobs.len(), 2);
        assert_eq!(f.jobs["k1"].job_id, "1");
        assert_eq!(f.jobs["k1"].rc_path(), tmp.path().join("k-1.rc"));
        assert_eq!(f.jobs["k1"].exit_status(), None);
        fs::write(tmp.path().join("k-1.rc"), "3\n").unwrap();
        assert_eq!(f.jobs["k1"].exit_status(), Some(3));
        assert!(read(tmp.path(), "other").unwrap().jobs.is_empty());
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("log");
        fs::write(&p, "1\n2\n3\n4\n").unwrap();
        assert_eq!(log_tail(&p, 2).unwrap(), vec!["3", "4"]);
        assert_eq!(log_tail(&p, 10).unwrap().len(), 4);
        assert!(log_tail(&tmp.path().join("none"), 2).is_none());
    }
}
