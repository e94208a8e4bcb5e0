//! Whether this process has libtorch, and how it gets it: the run-time half of the torch-free
//! start-up (the link-time half is `build/front_end_link.rs`).
//!
//! The installed `vaepipe` binary has no `DT_NEEDED` on libtorch, so `plan`, `dag`, `gc`,
//! `status` and a fully cached `run` never pay libtorch's ~0.5 s of static initialisers. A verb
//! that needs torch calls [`ensure_loaded`] before touching it: the first time, that re-executes
//! the same binary, with the same arguments, with libtorch's libraries in `LD_PRELOAD` (found
//! where the dynamic loader would look: `LD_LIBRARY_PATH`, then the directory baked in at build
//! time), and never returns. In the re-executed process the loader has bound every torch symbol
//! at start-up, CUDA's kernels have registered, and [`at_startup`] takes the preload out of the
//! environment again so that child processes (python, sbatch) do not inherit it.
//!
//! A binary linked the ordinary way (the test binaries, or a build with
//! `VAEPIPE_LINK_TORCH_AT_START=1`) simply finds libtorch already mapped.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Set, in the re-executed process, to the `LD_PRELOAD` the user had (possibly empty).
const REEXEC_MARKER: &str = "VAEPIPE_TORCH_REEXEC";

/// The libraries preloaded, in dependency order; the CUDA ones only when present.
const LIBRARIES: &[(&str, bool)] = &[
    ("libc10.so", true),
    ("libtorch_cpu.so", true),
    ("libc10_cuda.so", false),
    ("libtorch_cuda.so", false),
    ("libtorch.so", false),
];

/// Where build.rs found libtorch (also baked into the rpath).
const BUILT_AGAINST: &str = env!("VAEPIPE_LIBTORCH_LIB");

/// Call first in `main`: restores the user's `LD_PRELOAD` after a re-execution.
pub fn at_startup() {
    if let Some(previous) = std::env::var_os(REEXEC_MARKER) {
        if previous.is_empty() {
            std::env::remove_var("LD_PRELOAD");
        } else {
            std::env::set_var("LD_PRELOAD", previous);
        }
        std::env::remove_var(REEXEC_MARKER);
        // Remembered for `ensure_loaded`: a second re-execution would loop.
        REEXECUTED.get_or_init(|| true);
    }
}

static REEXECUTED: OnceLock<bool> = OnceLock::new();

/// Whether libtorch is mapped into this process (read once from /proc/self/maps).
pub fn loaded() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        std::fs::read_to_string("/proc/self/maps")
            .map(|maps| maps.contains("/libtorch_cpu.so"))
            .unwrap_or(true)
    })
}

/// Makes libtorch available: returns at once when it is loaded, otherwise re-executes this
/// binary with it preloaded (and does not return), or says why it cannot.
pub fn ensure_loaded() -> anyhow::Result<()> {
    if loaded() {
        return Ok(());
    }
    let dir = library_dir().ok_or_else(|| {
        anyhow::anyhow!(
            "libtorch is needed for this, but libtorch_cpu.so is neither in LD_LIBRARY_PATH nor \
             in {BUILT_AGAINST} (where vaepipe was built against it); set LD_LIBRARY_PATH to \
             the lib/ directory of libtorch {}",
            crate::device::LIBTORCH_VERSION
        )
    })?;
    if REEXECUTED.get().is_some() {
        anyhow::bail!(
            "vaepipe re-executed itself with libtorch from {} preloaded, but it is still not \
             loaded; check that LD_PRELOAD is not stripped on this system",
            dir.display()
        );
    }
    let mut preload: Vec<OsString> = LIBRARIES
        .iter()
        .map(|(name, _)| dir.join(name))
        .zip(LIBRARIES)
        .filter(|(path, (_, required))| *required || path.is_file())
        .map(|(path, _)| path.into_os_string())
        .collect();
    let previous = std::env::var_os("LD_PRELOAD").unwrap_or_default();
    if !previous.is_empty() {
        preload.insert(0, previous.clone());
    }
    let exe = std::env::current_exe()?;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    tracing::debug!("re-executing with libtorch from {}", dir.display());
    let err = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env("LD_PRELOAD", join(&preload))
        .env(REEXEC_MARKER, previous)
        // libgomp reads its wait policy when loaded: now (src/omp_wait.rs).
        .envs(crate::omp_wait::reexec_env())
        .exec();
    Err(anyhow::anyhow!(
        "could not re-execute {} with libtorch: {err}",
        exe.display()
    ))
}

/// The `lib/` directory holding libtorch_cpu.so, searched as the dynamic loader would for this
/// binary's RUNPATH: `LD_LIBRARY_PATH` first, then the directory build.rs baked in.
pub fn library_dir() -> Option<PathBuf> {
    let from_env = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    std::env::split_paths(&from_env)
        .filter(|dir| !dir.as_os_str().is_empty())
        .chain(std::iter::once(PathBuf::from(BUILT_AGAINST)))
        .find(|dir| dir.join("libtorch_cpu.so").is_file())
}

fn join(parts: &[OsString]) -> OsString {
    let mut out = OsString::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(":");
        }
        out.push(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_startup_gives_back_the_users_preload_and_drops_the_marker() {
        std::env::set_var(REEXEC_MARKER, "/opt/user-preload.so");
        std::env::set_var(
            "LD_PRELOAD",
            "/opt/user-preload.so:/lib/libc10.so:/lib/libtorch_cpu.so",
        );
        at_startup();
        assert_eq!(
            std::env::var_os("LD_PRELOAD"),
            Some("/opt/user-preload.so".into())
        );
        assert!(std::env::var_os(REEXEC_MARKER).is_none());
        // A second re-execution would loop: `ensure_loaded` now refuses instead.
        assert_eq!(REEXECUTED.get(), Some(&true));
        std::env::remove_var("LD_PRELOAD");
    }

    #[test]
    fn test_binaries_link_libtorch_so_it_is_loaded() {
        // Only the installed `vaepipe` binary starts torch-free; here it is mapped already.
        assert!(loaded());
        assert!(ensure_loaded().is_ok());
    }
}
