//! What a user sees when vaepipe has a bug: a short "internal error" paragraph saying what
//! failed, where in the code, and where the work done so far is — never Rust's raw
//! "thread 'main' panicked at" banner (see issue 15).
//!
//! The scheduler still catches a stage's panic (`catch_unwind`) and reports the stage as failed,
//! so upstream entries stay committed; this hook only replaces what the panic prints on its way.
//! `RUST_BACKTRACE=1` adds the backtrace, for the bug report.

use std::panic::PanicHookInfo;

/// Replaces the default panic hook for the whole process. Call once, at start-up.
pub fn install() {
    std::panic::set_hook(Box::new(|info| eprint!("{}", describe(info))));
}

/// The paragraph the hook prints.
fn describe(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    let place = info
        .location()
        .map(|l| format!("{}:{}", l.file(), l.line()))
        .unwrap_or_else(|| "an unknown place".to_owned());
    let thread = std::thread::current()
        .name()
        .map(|n| format!(" (thread `{n}`)"))
        .unwrap_or_default();
    let mut text = format!(
        "error: internal error in vaepipe (a bug): {message}\n  \
         where: {place}{thread}\n  \
         your work: finished stages stay committed in the cache; a stage that was running keeps \
         its checkpoints under <cache>/partial/ and resumes on the next `vaepipe run`\n  \
         help: please report this with the command line you ran\n"
    );
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        text.push_str(&format!(
            "  backtrace:\n{}\n",
            std::backtrace::Backtrace::force_capture()
        ));
    }
    text
}
