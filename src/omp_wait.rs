//! How libtorch's idle OpenMP threads wait for the next parallel region: asleep (`passive`,
//! vaepipe's default) or spinning first, as libgomp does by default.
//!
//! libtorch parallelises each op over its intra-op threads with OpenMP; between ops (and at
//! the end of each region) the threads that finish first wait. libgomp's default makes them
//! spin for ~300,000 iterations before sleeping. On a quiet machine that saves a wake-up per
//! region; on a shared one (this project's 2-core machines run several builds at once) the
//! spinning thread holds a core the thread with work needs: `vaepipe bench train` measured a
//! batch-32 training step at ~3× the speed with `OMP_WAIT_POLICY=PASSIVE` under a load of 6,
//! and most of the default's CPU time in libgomp's spin loop (`perf`).
//!
//! libgomp reads `OMP_WAIT_POLICY` once, when it is loaded, so the policy cannot be set from
//! `main` of a process that already has libtorch. The installed binary has no libtorch until
//! `torch_runtime::ensure_loaded` re-executes it with the libraries preloaded: [`reexec_env`]
//! adds the setting to that re-execution, and [`at_startup`] takes it out of the environment
//! again in the re-executed process, so child processes (python, sbatch) see the user's own.
//! A user's `OMP_WAIT_POLICY` always wins; `VAEPIPE_OMP_WAIT=default` keeps libgomp's.

use std::ffi::OsString;
use std::fmt;
use std::sync::OnceLock;

/// The environment variable that opts out: `VAEPIPE_OMP_WAIT=default`.
pub const ENV: &str = "VAEPIPE_OMP_WAIT";

/// OpenMP's own variable, read by libgomp at load time.
const OMP_ENV: &str = "OMP_WAIT_POLICY";

/// Set on the re-execution when vaepipe (not the user) put `OMP_WAIT_POLICY` there.
const MARKER: &str = "VAEPIPE_OMP_WAIT_SET";

/// What governs the OpenMP threads' waiting in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitPolicy {
    /// `OMP_WAIT_POLICY=PASSIVE`, set by vaepipe: idle threads sleep at once.
    Passive,
    /// libgomp's default (spin, then sleep): asked for, or the process had libtorch from the
    /// start (a test binary, a build linked the ordinary way).
    Default,
    /// The user's own `OMP_WAIT_POLICY`.
    User(String),
}

impl WaitPolicy {
    /// What `VAEPIPE_OMP_WAIT` asks for: unset or `passive` → `Passive`, `default` → `Default`.
    /// Anything else is `Passive` with a warning, as an unknown value should not stop a run.
    fn requested() -> WaitPolicy {
        match std::env::var(ENV).ok().as_deref().map(str::trim) {
            None | Some("") | Some("passive") => WaitPolicy::Passive,
            Some("default") => WaitPolicy::Default,
            Some(other) => {
                eprintln!(
                    "warning: {ENV}={other:?} is not `passive` or `default`; using `passive`"
                );
                WaitPolicy::Passive
            }
        }
    }
}

impl fmt::Display for WaitPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitPolicy::Passive => write!(f, "passive (OMP_WAIT_POLICY=PASSIVE, set by vaepipe)"),
            WaitPolicy::Default => write!(f, "default (libgomp's: spin, then sleep)"),
            WaitPolicy::User(v) => write!(f, "the user's OMP_WAIT_POLICY={v}"),
        }
    }
}

/// The variables to add to the re-execution that loads libtorch: `OMP_WAIT_POLICY=PASSIVE`
/// and the marker, unless the user set `OMP_WAIT_POLICY` or asked for libgomp's default.
pub fn reexec_env() -> Vec<(&'static str, OsString)> {
    if std::env::var_os(OMP_ENV).is_some() || WaitPolicy::requested() != WaitPolicy::Passive {
        return Vec::new();
    }
    vec![(OMP_ENV, "PASSIVE".into()), (MARKER, "1".into())]
}

static IN_EFFECT: OnceLock<WaitPolicy> = OnceLock::new();

/// Call first in `main`: records the policy libgomp was loaded with and removes what
/// [`reexec_env`] added, so child processes inherit the user's environment.
pub fn at_startup() -> WaitPolicy {
    IN_EFFECT.get_or_init(startup_policy).clone()
}

fn startup_policy() -> WaitPolicy {
    if std::env::var_os(MARKER).is_some() {
        std::env::remove_var(MARKER);
        std::env::remove_var(OMP_ENV);
        return WaitPolicy::Passive;
    }
    match std::env::var(OMP_ENV) {
        Ok(v) => WaitPolicy::User(v),
        Err(_) => WaitPolicy::Default,
    }
}

/// The policy this process's OpenMP threads wait by (for `vaepipe bench`).
pub fn in_effect() -> WaitPolicy {
    at_startup()
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test touches the process environment, so the steps cannot race each other.
    #[test]
    fn the_reexecution_gets_passive_unless_the_user_chose_and_startup_takes_it_back() {
        std::env::remove_var(OMP_ENV);
        std::env::remove_var(ENV);
        let env = reexec_env();
        assert_eq!(
            env,
            vec![(OMP_ENV, OsString::from("PASSIVE")), (MARKER, "1".into())]
        );
        // The re-executed process: vaepipe's setting is recognised and removed.
        for (k, v) in &env {
            std::env::set_var(k, v);
        }
        assert_eq!(startup_policy(), WaitPolicy::Passive);
        assert!(std::env::var_os(OMP_ENV).is_none() && std::env::var_os(MARKER).is_none());
        // A user's own value is kept and reported, never overridden.
        std::env::set_var(OMP_ENV, "ACTIVE");
        assert!(reexec_env().is_empty());
        assert_eq!(startup_policy(), WaitPolicy::User("ACTIVE".into()));
        assert_eq!(std::env::var(OMP_ENV).unwrap(), "ACTIVE");
        std::env::remove_var(OMP_ENV);
        // The opt-out.
        std::env::set_var(ENV, "default");
        assert!(reexec_env().is_empty());
        assert_eq!(startup_policy(), WaitPolicy::Default);
        std::env::remove_var(ENV);
    }
}
