//! The report while a run goes on: `run` writes `report.html` before the first stage starts
//! (and says where), then rewrites it at every training save (`Event::Saved`) and as stages
//! start and finish, so a browser refresh shows the curves and grids so far. The final page
//! (`cli::run`) replaces it when the run ends.
//!
//! Rewrites happen on the thread that sent the event, under one lock; start/finish rewrites are
//! at most one a second (a sweep's cache hits arrive in bursts), saves always rewrite.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::html::{self, Known, Page};
use crate::cache::CacheStore;
use crate::config::Sweep;
use crate::scheduler::{Event, Outcome, SweepPlan};

enum Status {
    Waiting,
    Running(Option<PathBuf>),
    Done(Outcome),
}

struct State {
    stages: Vec<Status>,
    last_write: Option<Instant>,
    failed_once: bool,
}

/// Rewrites one `report.html` as a run's events arrive.
pub struct LiveReport<'a> {
    sweep: &'a Sweep,
    plan: &'a SweepPlan,
    store: &'a CacheStore,
    path: PathBuf,
    started: String,
    state: Mutex<State>,
}

impl<'a> LiveReport<'a> {
    /// Writes the first page to `path` (`runs/<experiment>/report.html`).
    pub fn start(
        sweep: &'a Sweep,
        plan: &'a SweepPlan,
        store: &'a CacheStore,
        path: PathBuf,
    ) -> LiveReport<'a> {
        let live = LiveReport {
            sweep,
            plan,
            store,
            path,
            started: crate::cache::manifest::rfc3339(std::time::SystemTime::now()),
            state: Mutex::new(State {
                stages: plan.plan.stages.iter().map(|_| Status::Waiting).collect(),
                last_write: None,
                failed_once: false,
            }),
        };
        if let Ok(mut state) = live.state.lock() {
            live.write(&mut state);
        }
        live
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `event` and rewrites the page when it changes what the page shows.
    pub fn observe(&self, event: &Event) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let index = |stage: &str| self.plan.plan.stages.iter().position(|s| s.name == stage);
        let (i, status, always) = match event {
            Event::Waiting { .. } | Event::WarmStart { .. } => return,
            Event::Started { stage, .. } => (index(stage), Status::Running(None), false),
            Event::Saved { stage, dir, .. } => {
                (index(stage), Status::Running(Some(dir.clone())), true)
            }
            Event::Finished { stage, outcome, .. } => {
                (index(stage), Status::Done(outcome.clone()), false)
            }
        };
        let Some(i) = i else { return };
        state.stages[i] = status;
        let recent = state
            .last_write
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
        if always || !recent {
            self.write(&mut state);
        }
    }

    fn write(&self, state: &mut State) {
        let known = |i: usize| match state.stages.get(i) {
            Some(Status::Done(o)) => Known::Outcome(o),
            Some(Status::Running(dir)) => Known::Running(dir.as_deref()),
            _ => Known::Waiting,
        };
        let page = Page {
            title: self.sweep.base.name.clone(),
            subtitle: format!(
                "{} · started {}",
                self.sweep.base.file.display(),
                self.started
            ),
            nodes: html::nodes_with(self.plan, self.store, None, &known),
            runs_subdir: PathBuf::from(&self.sweep.base.name),
            banner: Some(
                "This run is still going: the page is rewritten at each training save and as stages finish; refresh to see progress.".to_owned(),
            ),
            ..Page::default()
        };
        let result = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| html::write(&page, &self.path));
        match result {
            Ok(()) => state.last_write = Some(Instant::now()),
            Err(e) if !state.failed_once => {
                state.failed_once = true;
                tracing::warn!("cannot update {}: {e}", self.path.display());
            }
            Err(_) => {}
        }
    }
}
