//! [`ProgressBar`]: stages and tasks done out of total (or files written by a data-set
//! generator), on stderr, when stderr is a terminal.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressDrawTarget, ProgressStyle};

use ember_scheduler::{JobEvent, JobListener};

/// A [`JobListener`] that draws an indicatif progress bar.
pub struct ProgressBar {
    bar: indicatif::ProgressBar,
    stages: Mutex<(usize, usize)>,
}

impl ProgressBar {
    /// A progress bar of a job's tasks on stderr, or `None` when stderr is not a terminal.
    pub fn for_terminal() -> Option<Self> {
        Self::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks, {msg}")
    }

    /// A progress bar of files written, for data-set generators, on stderr when it is a
    /// terminal.
    pub fn for_files(what: &str) -> Option<Self> {
        let bar =
            Self::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files, {msg}")?;
        bar.bar.set_message(what.to_string());
        Some(bar)
    }

    fn with_template(template: &str) -> Option<Self> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Some(Self {
            bar,
            stages: Mutex::new((0, 0)),
        })
    }

    /// Shows `done` of `total` files written.
    pub fn files(&self, done: usize, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn set_stage_message(&self, done: usize, total: usize) {
        self.bar.set_message(format!("{done}/{total} stages"));
    }
}

impl JobListener for ProgressBar {
    fn on_event(&self, event: &JobEvent) {
        let Ok(mut stages) = self.stages.lock() else {
            return;
        };
        match event {
            JobEvent::JobStarted {
                stages: n, tasks, ..
            } => {
                *stages = (0, *n);
                self.bar.reset();
                self.bar.set_length(*tasks as u64);
                self.set_stage_message(0, *n);
            }
            JobEvent::TaskFinished { .. } => self.bar.inc(1),
            JobEvent::StageFinished { .. } => {
                stages.0 += 1;
                self.set_stage_message(stages.0, stages.1);
                // The job is done: its rows print next, on a clean line (the shell
                // runs many jobs, each with its own bar).
                if stages.0 == stages.1 {
                    self.bar.finish_and_clear();
                }
            }
            JobEvent::TaskFailed {
                stage_id,
                partition,
                attempt,
                error,
                will_retry: true,
            } => self.bar.println(format!(
                "task {stage_id}.{partition} attempt {attempt} failed, retrying: {error}"
            )),
            JobEvent::StageAdapted {
                planned_tasks,
                tasks,
                ..
            } => {
                let length = self.bar.length().unwrap_or(0);
                self.bar
                    .set_length((length + *tasks as u64).saturating_sub(*planned_tasks as u64));
            }
            JobEvent::TaskFailed { .. }
            | JobEvent::StageStarted { .. }
            | JobEvent::TaskSpeculated { .. } => {}
        }
    }
}
