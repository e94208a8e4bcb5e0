//! `vaepipe gc [--dry-run] [--older-than AGE]` and `vaepipe cache verify`: cache maintenance
//! verbs. What `gc` keeps is explained in [`crate::cache::gc`].

use clap::Args;

use super::{CliError, GlobalArgs};
use crate::cache::gc;
use crate::cache::CacheStore;

#[derive(Debug, Clone, Args)]
pub struct GcArgs {
    /// Print what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete unlinked entries only once they are this old: `30m`, `2h`, `7d`, `0s`.
    #[arg(long, value_name = "AGE", default_value = "1d", value_parser = parse_age)]
    pub older_than: std::time::Duration,
}

/// A humane duration (`2h`, `7d`, `1h 30m`, `0s`).
fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{e}; write an age like `30m`, `2h` or `7d`"))
}

pub fn gc(args: GcArgs, global: &GlobalArgs) -> Result<(), CliError> {
    let dir = super::cache_dir(global, None);
    let store = CacheStore::open_existing(&dir)?;
    let options = gc::GcOptions {
        dry_run: args.dry_run,
        older_than: args.older_than,
        runs_dirs: vec![super::runs_dir(global)],
    };
    let report = gc::gc(&store, &options)?;
    for link in &report.unverified_roots {
        println!(
            "kept the entry of `{}`: its directory cannot be read, so the link may still exist",
            link.display()
        );
    }
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for (path, size) in &report.removed {
        let shown = path.strip_prefix(store.root()).unwrap_or(path);
        println!("{verb} {} ({})", shown.display(), human_bytes(*size));
    }
    if report.kept_young > 0 {
        println!(
            "kept {} unlinked entr{} younger than {} (`--older-than`)",
            report.kept_young,
            if report.kept_young == 1 { "y" } else { "ies" },
            humantime::format_duration(args.older_than)
        );
    }
    println!(
        "{} {} item(s), {} freed{}; {} linked entr{} kept",
        if args.dry_run {
            "would delete"
        } else {
            "deleted"
        },
        report.removed.len(),
        human_bytes(report.bytes_freed),
        if args.dry_run { " (dry run)" } else { "" },
        report.kept_entries,
        if report.kept_entries == 1 { "y" } else { "ies" },
    );
    Ok(())
}

pub fn verify(global: &GlobalArgs) -> Result<(), CliError> {
    let dir = super::cache_dir(global, None);
    // A run killed before its first commit (or never started) leaves no cache, or only the
    // empty directory it was creating: nothing is damaged, so that is a clean result.
    if never_written(&dir) {
        println!(
            "no cache at `{}` yet: checked 0 entries, 0 damaged",
            dir.display()
        );
        return Ok(());
    }
    let store = CacheStore::open_existing(&dir)?;
    let report = gc::verify(&store)?;
    for d in &report.damaged {
        let stage = d
            .stage
            .as_ref()
            .map(|s| format!(" (stage `{s}`)"))
            .unwrap_or_default();
        println!("damaged entry {}{stage}:", d.key);
        for p in &d.problems {
            println!("  {p}");
        }
    }
    println!(
        "checked {} entr{}, {} damaged",
        report.checked,
        if report.checked == 1 { "y" } else { "ies" },
        report.damaged.len()
    );
    if report.damaged.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{} damaged cache entr{}; run `vaepipe gc` after removing their `runs/` links, or delete them and rerun",
            report.damaged.len(),
            if report.damaged.len() == 1 { "y" } else { "ies" }
        )))
    }
}

/// True when `dir` does not exist or is an empty directory (what `CacheStore::open` leaves
/// if it is stopped before writing the tag); anything else goes through `open_existing`,
/// which refuses a directory that is not a cache.
fn never_written(dir: &std::path::Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut listing) => listing.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
