//! Ctrl-C and SIGTERM, handled on purpose: one process-wide cancellation flag, the signal that
//! set it, and the exit code it implies (130 for SIGINT, 143 for SIGTERM — what `timeout`,
//! Slurm and Kubernetes send).
//!
//! The first signal only sets the flag. Every long loop of a stage (training steps, image
//! decoding in `align-check`, `encode`'s batches, `synth-faces`' renders) checks it through
//! [`crate::StageCx::check_cancelled`] and returns [`Interrupted`], the scheduler records the stage
//! as cancelled — its partial directory kept for a resume, no manifest written — and the verb
//! exits with [`exit_code`]. A second signal exits at once with the same code, for when
//! something is stuck. Like just's `signal_handler.rs`, the handler is installed once and only
//! records; no work happens inside it (see issue 15).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Once};

use signal_hook::consts::{SIGINT, SIGTERM};

/// Set by the first SIGINT or SIGTERM; read by every stage through `StageCx`.
static CANCEL: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));
/// The signal number that set [`CANCEL`] (0: none yet).
static CAUGHT: LazyLock<Arc<AtomicUsize>> = LazyLock::new(|| Arc::new(AtomicUsize::new(0)));

/// The error a stage returns when it stops because the user asked it to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stage `{stage}` interrupted{}; its partial work is kept for a resume", by(*signal))]
pub struct Interrupted {
    pub stage: String,
    /// The signal number, when a signal (not a test or a caller) set the flag.
    pub signal: Option<i32>,
}

fn by(signal: Option<i32>) -> String {
    match signal {
        Some(s) => format!(" by {}", signal_name(s)),
        None => String::new(),
    }
}

impl Interrupted {
    pub fn new(stage: &str) -> Interrupted {
        Interrupted {
            stage: stage.to_owned(),
            signal: caught(),
        }
    }
}

/// `SIGINT`, `SIGTERM`, or `signal N`.
pub fn signal_name(signal: i32) -> String {
    match signal {
        SIGINT => "SIGINT".into(),
        SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

/// The process-wide cancellation flag, with the handlers installed (once).
pub fn install() -> Arc<AtomicBool> {
    let flag = cancel_flag();
    install_for(&flag);
    flag
}

/// Makes SIGINT/SIGTERM set `flag` as well (a verb with a flag of its own, e.g. Slurm's wait
/// loop). The first registration also records which signal came, and arms the immediate exit on a
/// second signal.
pub fn install_for(flag: &Arc<AtomicBool>) {
    static RECORDER: Once = Once::new();
    RECORDER.call_once(|| {
        for sig in [SIGINT, SIGTERM] {
            // The shutdown must be registered first: it fires only when an earlier signal has
            // already set the flag (signal-hook's documented double Ctrl-C pattern).
            let registered =
                signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, CANCEL.clone())
                    .and_then(|_| {
                        signal_hook::flag::register_usize(sig, CAUGHT.clone(), sig as usize)
                    })
                    .and_then(|_| signal_hook::flag::register(sig, CANCEL.clone()));
            if let Err(e) = registered {
                tracing::warn!(
                    "cannot install the {} handler ({e}); it will stop vaepipe abruptly",
                    signal_name(sig)
                );
            }
        }
    });
    if !Arc::ptr_eq(flag, &CANCEL) {
        for sig in [SIGINT, SIGTERM] {
            if let Err(e) = signal_hook::flag::register(sig, flag.clone()) {
                tracing::warn!("cannot install the {} handler ({e})", signal_name(sig));
            }
        }
    }
}

/// The process-wide flag (whether or not handlers are installed).
pub fn cancel_flag() -> Arc<AtomicBool> {
    CANCEL.clone()
}

/// The signal that asked vaepipe to stop, if one did.
pub fn caught() -> Option<i32> {
    match CAUGHT.load(Ordering::SeqCst) {
        0 => None,
        n => i32::try_from(n).ok(),
    }
}

/// The exit code of an interrupted verb: 128 + the signal (130 SIGINT, 143 SIGTERM); 130 when
/// the flag was set without a signal.
pub fn exit_code() -> u8 {
    caught()
        .and_then(|s| u8::try_from(128 + s).ok())
        .unwrap_or(130)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_stage_and_signal() {
        let e = Interrupted {
            stage: "check".into(),
            signal: Some(SIGTERM),
        };
        assert_eq!(
            e.to_string(),
            "stage `check` interrupted by SIGTERM; its partial work is kept for a resume"
        );
        let e = Interrupted {
            stage: "train".into(),
            signal: None,
        };
        assert_eq!(
            e.to_string(),
            "stage `train` interrupted; its partial work is kept for a resume"
        );
        assert_eq!(signal_name(9), "signal 9");
    }
}
