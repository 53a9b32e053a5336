//! Volume walks off the event loop: one at a time on tokio's blocking pool, so socket events
//! keep their latency during a million-file walk. A trigger during a walk queues one more walk
//! after it (triggers coalesce); stop, and a reload that changes what a walk reads, cancel the
//! running walk at its next directory (at stop, its waiters get what it did).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nonrootd_core::config::Config;
use nonrootd_core::duty::Duty;
use nonrootd_core::report::{Outcome, Report};
use nonrootd_core::status::Stamped;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::error;

use crate::ids::SystemIds;
use crate::volumes::{self, Options};

/// An `Apply()` caller waiting for the volumes: the report of the other duties so far.
pub struct Waiter {
    pub report: Report,
    pub reply: oneshot::Sender<Report>,
}

impl Waiter {
    /// Answers with the other duties' report plus the volumes'.
    pub fn answer(self, volumes: &Report) {
        let mut report = self.report;
        report.entries.extend(volumes.entries.iter().cloned());
        let _ = self.reply.send(report);
    }
}

/// The volumes' report for a caller whose walk never starts: the daemon stops.
pub fn not_walked_at_stop() -> Report {
    let mut report = Report::default();
    let error = "not walked: nonrootd is stopping".to_string();
    report.push(Duty::Volumes, "(every volume)", "walked", Outcome::Failed { error });
    report
}

struct Running {
    handle: JoinHandle<Report>,
    started: std::time::Instant,
    /// `started` for the status: seconds since the epoch.
    started_at: u64,
    cancel: Arc<AtomicBool>,
    trigger: String,
    waiters: Vec<Waiter>,
}

struct Next {
    trigger: String,
    waiters: Vec<Waiter>,
}

/// A walk that ended: its report (empty when cancelled for a newer one), what triggered it and
/// who waits for it.
pub struct Finished {
    pub report: Report,
    pub trigger: String,
    pub waiters: Vec<Waiter>,
    /// Cancelled by a reload: the report is stale and not to be recorded.
    pub superseded: bool,
}

/// The walk in progress and the one queued after it.
#[derive(Default)]
pub struct VolumeJobs {
    running: Option<Running>,
    next: Option<Next>,
}

impl VolumeJobs {
    /// Walks the volumes of `config` now, or after the walk in progress.
    pub fn request(&mut self, config: &Config, trigger: &str, waiter: Option<Waiter>) {
        if self.running.is_some() {
            let next = self.next.get_or_insert_with(|| Next {
                trigger: trigger.to_string(),
                waiters: Vec::new(),
            });
            next.trigger = trigger.to_string();
            next.waiters.extend(waiter);
            return;
        }
        self.spawn(config, trigger.to_string(), waiter.into_iter().collect());
    }

    fn spawn(&mut self, config: &Config, trigger: String, waiters: Vec<Waiter>) {
        if config.volumes.is_empty() {
            for waiter in waiters {
                waiter.answer(&Report::default());
            }
            return;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let (config, flag) = (config.clone(), cancel.clone());
        let handle = tokio::task::spawn_blocking(move || {
            let options = Options {
                check_only: false,
                cancel: &flag,
                progress: false,
                daemon_json: std::path::Path::new(crate::apply::DOCKER_DAEMON_JSON),
            };
            volumes::apply(&config, &SystemIds, &options)
        });
        self.running = Some(Running {
            handle,
            started: std::time::Instant::now(),
            started_at: super::now(),
            cancel,
            trigger,
            waiters,
        });
    }

    /// When the running walk started, if one runs.
    pub fn running_since(&self) -> Option<std::time::Instant> {
        self.running.as_ref().map(|running| running.started)
    }

    /// What the running walk is for, and since when.
    pub fn running(&self) -> Option<Stamped> {
        let running = self.running.as_ref()?;
        Some(Stamped {
            at: running.started_at,
            text: running.trigger.clone(),
        })
    }

    /// Starts the queued walk, if any (after [`VolumeJobs::finished`]).
    pub fn start_next(&mut self, config: &Config) {
        if self.running.is_none()
            && let Some(next) = self.next.take()
        {
            self.spawn(config, next.trigger, next.waiters);
        }
    }

    /// Cancels the walk in progress (its waiters wait for the next walk instead).
    pub fn cancel(&mut self) {
        if let Some(running) = &mut self.running {
            running.cancel.store(true, Ordering::Relaxed);
            let waiters = std::mem::take(&mut running.waiters);
            if let Some(next) = &mut self.next {
                next.waiters.extend(waiters);
            } else {
                self.next = Some(Next {
                    trigger: running.trigger.clone(),
                    waiters,
                });
            }
        }
    }

    /// Resolves when the walk in progress ends; never while none runs.
    pub async fn finished(&mut self) -> Finished {
        let Some(running) = &mut self.running else {
            return std::future::pending().await;
        };
        let report = match (&mut running.handle).await {
            Ok(report) => report,
            Err(e) => {
                error!("the volume walk ended abnormally: {e}");
                Report::default()
            }
        };
        let running = self.running.take().expect("a walk was running");
        Finished {
            report,
            trigger: running.trigger,
            waiters: running.waiters,
            superseded: running.cancel.load(Ordering::Relaxed),
        }
    }

    /// Cancels the walk in progress and waits for it to stop (at its next directory). Its
    /// waiters get what it did (the volumes it did not finish are reported cancelled); those
    /// of the queued walk get "not walked". Whether anybody was answered (the replies are yet
    /// to be written to the bus).
    pub async fn stop(&mut self) -> bool {
        let mut answered = false;
        if let Some(running) = self.running.take() {
            running.cancel.store(true, Ordering::Relaxed);
            let report = running.handle.await.unwrap_or_else(|e| {
                error!("the volume walk ended abnormally: {e}");
                let mut report = Report::default();
                let error = format!("the walk ended abnormally: {e}");
                report.push(Duty::Volumes, "(every volume)", "walked", Outcome::Failed { error });
                report
            });
            for waiter in running.waiters {
                waiter.answer(&report);
                answered = true;
            }
        }
        for waiter in self.next.take().into_iter().flat_map(|next| next.waiters) {
            waiter.answer(&not_walked_at_stop());
            answered = true;
        }
        answered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nonrootd_core::report::Entry;

    /// Answered by `stop`: a waiter of the walk that ran, one of the walk queued after it.
    #[tokio::test]
    async fn stop_answers_every_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("vol");
        std::fs::create_dir(&volume).unwrap();
        let text = format!("[[volume]]\npath = \"{}\"\nuid = 999\ngid = 999\n", volume.display());
        let config = Config::from_sources(&[(dir.path().join("nonrootd.toml"), text)]).unwrap();
        let mut jobs = VolumeJobs::default();
        let (running, queued) = (oneshot::channel(), oneshot::channel());
        let waiter = |reply| Waiter {
            report: Report::default(),
            reply,
        };
        jobs.request(&config, "first", Some(waiter(running.0)));
        jobs.request(&config, "second", Some(waiter(queued.0)));
        assert!(jobs.stop().await);
        // The walk ran to its end or was cancelled: either way its report is the answer.
        let ran = running.1.await.unwrap();
        assert!(
            matches!(&ran.entries[..], [Entry { path, .. }] if *path == volume),
            "{ran}"
        );
        assert_eq!(queued.1.await.unwrap(), not_walked_at_stop());
        assert!(!jobs.stop().await, "nobody is left to answer");
    }
}
