//! A stage's progress, shown the way its reader can see it: an indicatif bar when stderr is a
//! terminal, and plain log lines at a steady pace when it is not (nohup, Slurm, CI), so a
//! seven-minute training is not seven minutes of silence in a log file (see issue 15).
//!
//! A plain line is written when [`interval`] has passed since the last one (default 30 s,
//! `VAEPIPE_PROGRESS_INTERVAL=<seconds>` changes it) or when another tenth of the work is done,
//! and says `step/total (percent), rate, ETA` and the stage's message (its losses):
//! `stage `train`: 400/1600 (25%), 4.05/s, eta 4m56s, rec 5.8e4  kl 1339  total 3.0e4`.
//! `-q` hides both. The methods mirror indicatif's so call sites read the same either way.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// An indicatif bar (stderr is a terminal).
    Bar,
    /// Plain lines every [`interval`] or 10% (stderr is a file or a pipe).
    Lines,
    /// Nothing (`-q`).
    Hidden,
}

impl ProgressMode {
    /// Hidden when `quiet`, else a bar on a terminal and lines elsewhere.
    pub fn detect(quiet: bool) -> ProgressMode {
        if quiet {
            ProgressMode::Hidden
        } else if std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines
        }
    }
}

/// The pause between plain lines: `VAEPIPE_PROGRESS_INTERVAL` seconds, else 30.
pub fn interval() -> Duration {
    std::env::var("VAEPIPE_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(Duration::from_secs(30), Duration::from_secs_f64)
}

/// A stage's progress handle (cheap to update from a loop).
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: Option<Mutex<Lines>>,
}

struct Lines {
    label: String,
    len: u64,
    position: u64,
    started: Instant,
    start_position: u64,
    last_line: Instant,
    last_tenth: u64,
    interval: Duration,
    message: String,
}

impl Progress {
    /// Progress over `len` units, starting at `position` (a resumed training).
    pub fn new(label: &str, len: u64, position: u64, mode: ProgressMode) -> Progress {
        match mode {
            ProgressMode::Hidden => Progress {
                bar: None,
                lines: None,
            },
            ProgressMode::Bar => {
                let bar = ProgressBar::new(len);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_prefix(label.to_owned());
                bar.set_position(position);
                Progress {
                    bar: Some(bar),
                    lines: None,
                }
            }
            ProgressMode::Lines => {
                let now = Instant::now();
                Progress {
                    bar: None,
                    lines: Some(Mutex::new(Lines {
                        label: label.to_owned(),
                        len,
                        position,
                        started: now,
                        start_position: position,
                        last_line: now,
                        last_tenth: tenth(position, len),
                        interval: interval(),
                        message: String::new(),
                    })),
                }
            }
        }
    }

    pub fn set_position(&self, position: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(position);
        }
        self.update(|l| l.position = position);
    }

    pub fn inc(&self, delta: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(delta);
        }
        self.update(|l| l.position += delta);
    }

    /// The stage's words after the numbers (losses); shown with the next line or bar redraw.
    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        if let Some(bar) = &self.bar {
            bar.set_message(message.clone());
        }
        if let Some(lines) = &self.lines {
            if let Ok(mut l) = lines.lock() {
                l.message = message;
            }
        }
    }

    pub fn finish_and_clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn update(&self, change: impl FnOnce(&mut Lines)) {
        let Some(lines) = &self.lines else { return };
        let Ok(mut l) = lines.lock() else { return };
        change(&mut l);
        let now = Instant::now();
        let tenth = tenth(l.position, l.len);
        if tenth > l.last_tenth || now.duration_since(l.last_line) >= l.interval {
            l.last_tenth = tenth;
            l.last_line = now;
            tracing::info!("{}", l.line(now));
        }
    }
}

/// How many whole tenths of `len` `position` has passed.
fn tenth(position: u64, len: u64) -> u64 {
    (position.min(len) * 10).checked_div(len).unwrap_or(0)
}

impl Lines {
    fn line(&self, now: Instant) -> String {
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let done = self.position.saturating_sub(self.start_position);
        let rate = (elapsed > 0.0).then(|| done as f64 / elapsed);
        let percent = (self.position * 100).checked_div(self.len).unwrap_or(100);
        let mut line = format!(
            "stage `{}`: {}/{} ({percent}%)",
            self.label, self.position, self.len
        );
        match rate {
            Some(r) if r > 0.0 => {
                let left = self.len.saturating_sub(self.position) as f64 / r;
                line.push_str(&format!(", {r:.2}/s, eta {}", human(left)));
            }
            _ => line.push_str(", eta unknown"),
        }
        if !self.message.is_empty() {
            line.push_str(", ");
            line.push_str(&self.message);
        }
        line
    }
}

/// `4m56s`, `1h02m`, `12s`.
fn human(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_position_percent_rate_eta_and_message() {
        let t0 = Instant::now();
        let l = Lines {
            label: "train".into(),
            len: 1600,
            position: 400,
            started: t0,
            start_position: 0,
            last_line: t0,
            last_tenth: 2,
            interval: Duration::from_secs(30),
            message: "total 3.0e4".into(),
        };
        assert_eq!(
            l.line(t0 + Duration::from_secs(100)),
            "stage `train`: 400/1600 (25%), 4.00/s, eta 5m00s, total 3.0e4"
        );
        assert_eq!(
            l.line(t0),
            "stage `train`: 400/1600 (25%), eta unknown, total 3.0e4"
        );
    }

    #[test]
    fn tenths_and_durations() {
        assert_eq!(tenth(0, 20), 0);
        assert_eq!(tenth(2, 20), 1);
        assert_eq!(tenth(19, 20), 9);
        assert_eq!(tenth(25, 20), 10);
        assert_eq!(tenth(3, 0), 0);
        assert_eq!(human(12.4), "12s");
        assert_eq!(human(3725.0), "1h02m");
    }
}
