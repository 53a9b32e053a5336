//! Applies of the host duties, and subordinate-id calls, off the event loop: on a thread of
//! their own, one at a time, so that waiting for a lock (`apply.lock`, shadow's) holds up
//! neither the API nor the watchdog's ping. Jobs run in the order queued; applies that nobody
//! waits for coalesce while they wait for their turn. A job runs with the config in force
//! when it starts. The sockets duty is the socket fixer's: a job that includes it asks the
//! fixer and waits for its report, so that socket reports reach the loop in order.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use nonrootd_core::config::Config;
use nonrootd_core::duty::{Duty, DutySet};
use nonrootd_core::report::{Outcome, Report};
use nonrootd_core::status::Stamped;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use super::now;
use super::socket_fixer::{LOCK_TIMEOUT, SocketFixer};
use super::volume_job::not_walked_at_stop;
use crate::apply::{Request, apply_on_host};
use crate::cli::subids::{Output, SubidsCommand, execute};

/// An apply of host duties (volumes are walked by [`super::volume_job`]; sockets are asked of
/// the socket fixer).
pub struct Apply {
    pub duties: DutySet,
    pub trigger: String,
    pub lock_timeout: Duration,
    /// An `Apply()` caller waiting for this report.
    pub caller: Option<Caller>,
}

/// An `Apply()` caller: answered with the report, after the volumes' walk if it asked for it.
pub struct Caller {
    pub reply: oneshot::Sender<Report>,
    pub volumes: bool,
}

pub enum Job {
    Apply(Apply),
    /// A subids call over D-Bus, answered by the thread.
    Subids(SubidsCommand, oneshot::Sender<Output>),
}

/// What the thread is handed: a job's work with the config it runs with.
enum Work {
    Apply {
        config: Config,
        duties: DutySet,
        lock_timeout: Duration,
        /// The socket fixer's report of the sockets, when asked.
        sockets: Option<oneshot::Receiver<Report>>,
    },
    Subids {
        config: Config,
        command: SubidsCommand,
        reply: oneshot::Sender<Output>,
    },
}

/// An apply that ended, with the config generation it ran with.
pub struct Applied {
    pub apply: Apply,
    pub report: Report,
    pub generation: u64,
}

struct Running {
    /// `None` for a subids call.
    apply: Option<Apply>,
    generation: u64,
    shown: Stamped,
}

/// The event loop's side of the thread: the job running there and those queued after it.
pub struct HostJobs {
    work: std_mpsc::Sender<Work>,
    /// One message per job done: its report, `None` for a subids call.
    done: mpsc::UnboundedReceiver<Option<Report>>,
    running: Option<Running>,
    queue: VecDeque<Job>,
}

impl HostJobs {
    /// Starts the thread; it ends when the `HostJobs` is dropped.
    pub fn spawn(state_dir: PathBuf) -> std::io::Result<HostJobs> {
        let (work, jobs) = std_mpsc::channel();
        let (reports, done) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("nonrootd-apply".into())
            .spawn(move || run(&state_dir, &jobs, &reports))?;
        Ok(HostJobs {
            work,
            done,
            running: None,
            queue: VecDeque::new(),
        })
    }

    /// Runs `job` now with `config`, or after those queued. An apply nobody waits for joins one
    /// that is queued and nobody waits for either (the duties of both, the newer trigger).
    pub fn push(&mut self, job: Job, config: &Config, generation: u64, fixer: &mut SocketFixer) {
        if let Job::Apply(new @ Apply { caller: None, .. }) = &job {
            let queued = self.queue.iter_mut().find_map(|queued| match queued {
                Job::Apply(queued @ Apply { caller: None, .. }) => Some(queued),
                _ => None,
            });
            if let Some(queued) = queued {
                queued.duties = queued.duties.union(new.duties);
                queued.trigger.clone_from(&new.trigger);
                queued.lock_timeout = queued.lock_timeout.max(new.lock_timeout);
                return;
            }
        }
        self.queue.push_back(job);
        self.start_next(config, generation, fixer);
    }

    /// Starts the next queued job unless one runs (after [`HostJobs::finished`]).
    pub fn start_next(&mut self, config: &Config, generation: u64, fixer: &mut SocketFixer) {
        if self.running.is_some() {
            return;
        }
        let Some(job) = self.queue.pop_front() else { return };
        let config = config.clone();
        let (work, apply, text) = match job {
            Job::Apply(apply) => {
                let sockets = apply
                    .duties
                    .contains(Duty::Sockets)
                    .then(|| fixer.apply_and_answer(apply.trigger.clone()));
                let work = Work::Apply {
                    config,
                    duties: apply.duties.without(Duty::Sockets),
                    lock_timeout: apply.lock_timeout,
                    sockets,
                };
                let text = apply.trigger.clone();
                (work, Some(apply), text)
            }
            Job::Subids(command, reply) => {
                let text = format!("{} over D-Bus", command_name(&command));
                (Work::Subids { config, command, reply }, None, text)
            }
        };
        if self.work.send(work).is_err() {
            error!("the apply thread is gone: {text} is not done");
            return;
        }
        self.running = Some(Running {
            apply,
            generation,
            shown: Stamped { at: now(), text },
        });
    }

    /// What runs, and since when.
    pub fn running(&self) -> Option<Stamped> {
        self.running.as_ref().map(|running| running.shown.clone())
    }

    /// Resolves when the running job ends (`None` for a subids call); never while none runs.
    pub async fn finished(&mut self) -> Option<Applied> {
        if self.running.is_none() {
            return std::future::pending().await;
        }
        let report = self.done.recv().await;
        let running = self.running.take().expect("a job was running");
        if report.is_none() {
            error!("the apply thread is gone: {} ended undone", running.shown.text);
        }
        let (Some(apply), Some(report)) = (running.apply, report.flatten()) else {
            return None;
        };
        Some(Applied {
            apply,
            report,
            generation: running.generation,
        })
    }

    /// Drops the queued jobs (their callers are told the daemon is shutting down) and waits
    /// for the running one, whose caller gets its report (volumes it asked for are reported
    /// not walked): nothing is left half-written. Whether it waited for one (whose caller's
    /// reply is yet to be written to the bus).
    pub async fn stop(&mut self) -> bool {
        self.queue.clear();
        if self.running.is_none() {
            return false;
        }
        if let Some(Applied { apply, mut report, .. }) = self.finished().await
            && let Some(caller) = apply.caller
        {
            if caller.volumes {
                report.entries.extend(not_walked_at_stop().entries);
            }
            let _ = caller.reply.send(report);
        }
        true
    }
}

/// The `nonrootctl` command that does `command`.
fn command_name(command: &SubidsCommand) -> &'static str {
    match command {
        SubidsCommand::Allocate { .. } => "subids allocate",
        SubidsCommand::Release { .. } => "subids release",
        SubidsCommand::List { .. } => "subids list",
        SubidsCommand::Check => "subids check",
    }
}

/// The thread: does each job it is handed, in order, until the loop's side is gone.
fn run(state_dir: &std::path::Path, jobs: &std_mpsc::Receiver<Work>, done: &mpsc::UnboundedSender<Option<Report>>) {
    for work in jobs {
        let report = match work {
            Work::Apply {
                config,
                duties,
                lock_timeout,
                sockets,
            } => {
                let request = Request {
                    duties,
                    socket: None,
                    dry_run: false,
                };
                let mut report = apply_on_host(&config, &request, state_dir, lock_timeout);
                if let Some(sockets) = sockets {
                    match sockets.blocking_recv() {
                        Ok(sockets) => report.entries.extend(sockets.entries),
                        Err(_) => report.push(
                            Duty::Sockets,
                            state_dir,
                            "the socket fixer's apply",
                            Outcome::Failed {
                                error: "the socket fixer thread is gone".into(),
                            },
                        ),
                    }
                    // In the duties' order, as an apply of them all reports them.
                    report.entries.sort_by_key(|e| e.duty);
                }
                Some(report)
            }
            Work::Subids { config, command, reply } => {
                let _ = reply.send(execute(command, &config, state_dir, LOCK_TIMEOUT));
                None
            }
        };
        if done.send(report).is_err() {
            return;
        }
    }
}
