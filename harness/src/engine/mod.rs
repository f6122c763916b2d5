//! The engine: run typed steps for real, on one backend, and record what
//! happened. It judges nothing: checks read the log afterwards.
//!
//! Each run of steps gets a thread of its own (namespaces are per thread,
//! and every child inherits the thread's), a scenario dir inside the run's
//! dir, and a [`World`] from the backend. Whatever ends the steps (their
//! end, a timeout, a signal to the harness, a panic), the thread kills every
//! process it started with its group, the world removes what does not go
//! away by itself, and the dir is removed. The same engine runs scripted
//! scenarios and every order of an exploration.

pub mod backend;
pub mod confine;
pub mod oracle;
pub mod procs;
pub mod tasks;
pub mod tmpfs;
pub mod trace;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use backend::{Backend, SetUpError, SpawnRequest, World};
use nix::sys::signal::Signal;
use oracle::{Known, Oracle, OracleError};
use procs::{Proc, WaitOutcome};
use trace::{Stop, TraceError};

use crate::events::{Choice, Ending, Event, EventKind, Log, Text, TracedCall, WhichLimit};
use crate::impls::Implementation;
use crate::scenario::files::FileIdentity;
use crate::scenario::{
    Action, FileName, FileOp, IpcSysctl, KeySpec, Program, Scenario, ScenarioDir, Schedule, SegmentsCheck, Spawn, Step,
    WaitFor, CONTENT_CAP,
};

/// Default limits, overridden by a scenario's or step's own.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub step: Duration,
    pub scenario: Duration,
    /// The most orders one exploration runs: its budget, a count, so a
    /// fast and a slow machine explore the same orders.
    pub max_orders: usize,
    /// An exploration's safety net (unless its scenario sets timeout_ms):
    /// its expiry is a TIMEOUT that says so, never a verdict, so it is set
    /// far above what the order budget takes on a loaded machine.
    pub exploration: Duration,
    /// An exploration that stopped at its order budget with every explored
    /// order agreeing is a TIMEOUT (`--strict-budget`) rather than a PASS
    /// saying how much was explored.
    pub strict_budget: bool,
    /// Processes and memory of each scenario's programs.
    pub bounds: confine::Bounds,
}

/// Default of [`Limits::max_orders`]: above every exploration of the
/// catalogue (the largest, syscall-input-in-pieces, is 737 orders).
pub const DEFAULT_MAX_ORDERS: usize = 5_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            step: Duration::from_secs(5),
            scenario: Duration::from_secs(30),
            max_orders: DEFAULT_MAX_ORDERS,
            exploration: Duration::from_secs(600),
            strict_budget: false,
            bounds: confine::Bounds::default(),
        }
    }
}

/// Everything the engine needs besides the steps.
pub struct Engine<'a> {
    pub backend: &'a dyn Backend,
    pub oracle: &'a dyn Oracle,
    pub implementation: &'a Implementation,
    pub limits: Limits,
}

/// Steps to run beyond a scenario's own: an exploration's order is a list of
/// steps made by the explorer, plus an observation after each event.
pub struct Run<'a> {
    pub id: &'a str,
    pub scenario: &'a Scenario,
    pub steps: &'a [Step],
    /// No step starts, and no wait lasts, past this (an exploration's overall limit).
    pub hard_deadline: Option<Instant>,
}

struct Recorder {
    start: Instant,
    log: Log,
}

impl Recorder {
    fn rec(&mut self, step: Option<usize>, kind: EventKind) {
        let t_us = self.start.elapsed().as_micros() as u64;
        self.log.events.push(Event { t_us, step, kind });
    }
}

impl backend::SetupLog for Recorder {
    fn namespace(&mut self, name: &str, inode: u64) {
        self.log.namespaces.insert(name.to_string(), inode);
    }
    fn event(&mut self, kind: EventKind) {
        self.rec(None, kind);
    }
}

/// When a wait must end, and which limit that is.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    limit: Duration,
    which: WhichLimit,
    /// `procs::suspended()` when it was set: time the harness spends stopped
    /// after that moves it later (see `procs::extended`).
    suspended: Duration,
    /// When it was made, and this thread's wait for a CPU by then.
    made: Instant,
    watcher: procs::CpuWaitMark,
    /// The program it waits for, if one: time it (or this thread, which
    /// watches it) spent ready to run but without a CPU moves it later.
    program: Option<procs::CpuWaitMark>,
}

use crate::events::MOST_CPU_WAIT_IN_LIMITS;

impl Deadline {
    fn new(at: Instant, limit: Duration, which: WhichLimit) -> Deadline {
        Deadline {
            at,
            limit,
            which,
            suspended: procs::suspended(),
            made: Instant::now(),
            watcher: procs::CpuWaitMark::watcher(),
            program: None,
        }
    }

    /// The same deadline, waiting for the program `pid` (from now on): a
    /// verdict must not follow the machine's load, so the time it was ready
    /// to run but had no CPU does not count against it (nor this thread's,
    /// which must run to see it), up to [`MOST_CPU_WAIT_IN_LIMITS`] limits.
    /// Waiting for `proc`: its waits for a CPU, and this thread's, since
    /// the deadline was made (or since `proc` was born) move it later.
    fn for_program(self, proc: &procs::Proc) -> Deadline {
        Deadline {
            program: Some(self.watcher.with_program(proc.pid, proc.started >= self.made)),
            ..self
        }
    }

    /// How far a busy machine has moved it so far.
    fn cpu_wait(&self) -> Duration {
        let most = self.limit * MOST_CPU_WAIT_IN_LIMITS;
        self.program.as_ref().map_or(Duration::ZERO, |m| m.since().min(most))
    }

    /// When it ends, as of now. Before the limit itself has passed, nothing
    /// more is looked at (/proc is read only once it has).
    fn at(&self) -> Instant {
        let at = procs::extended(self.at, self.suspended);
        if Instant::now() < at {
            return at;
        }
        at + self.cpu_wait()
    }

    fn expired(&self) -> bool {
        Instant::now() >= self.at() && procs::expired(self.at + self.cpu_wait(), self.suspended)
    }
}

/// What a caught panic said.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

impl Engine<'_> {
    /// Run the steps on a thread of their own and return the event log. A
    /// panic inside becomes a BROKEN event in the log, never the caller's.
    pub fn execute(&self, run: &Run) -> Log {
        std::thread::scope(|s| {
            let worker = std::thread::Builder::new()
                .name(format!("scenario {}", run.id))
                .spawn_scoped(s, || self.execute_here(run));
            match worker.map(|h| h.join()) {
                Ok(Ok(log)) => log,
                Ok(Err(panic)) => self.broken_log(run, format!("harness panicked: {}", panic_text(&*panic))),
                Err(e) => self.broken_log(run, format!("cannot start the scenario's thread: {e}")),
            }
        })
    }

    /// An empty log naming what runs where.
    fn new_log(&self, run: &Run) -> Log {
        Log {
            scenario: run.id.into(),
            implementation: self.implementation.name.clone(),
            isolation: self.backend.name().into(),
            oracle: self.oracle.name().into(),
            ..Log::default()
        }
    }

    /// The scenario's dir with its key files (each recorded with its
    /// identity, which the world claims), the backend's world, and the
    /// tmpfs under the dir if the scenario asked for one.
    fn prepare(&self, run: &Run, r: &mut Recorder) -> Result<Prepared, SetUpError> {
        let tmp =
            crate::rundir::scenario_dir("scenario-").map_err(|e| format!("cannot make the scenario's dir: {e}"))?;
        r.log.workdir = tmp.path().display().to_string();
        // Before the dir is opened: its files then live on the tmpfs.
        let mount = match run.scenario.filesystem {
            crate::scenario::DirFilesystem::RunDir => None,
            crate::scenario::DirFilesystem::Tmpfs => Some(tmpfs::TmpfsMount::on(tmp.path())?),
        };
        let dir = ScenarioDir::open(tmp.path()).map_err(|e| format!("cannot open the scenario's dir: {e}"))?;
        let mut identities = Vec::new();
        for f in &run.scenario.files {
            dir.create(f).map_err(|e| format!("cannot create key file {f}: {e}"))?;
            let identity = dir.identity(f).ok();
            identities.extend(identity);
            r.rec(
                None,
                EventKind::File {
                    op: "create".into(),
                    path: f.to_string(),
                    error: None,
                    identity: identity.map(|i| (i.dev, i.ino)),
                },
            );
        }
        let mut world = self.backend.set_up(run.scenario, &dir, r)?;
        for id in identities {
            world.claims_file(id);
        }
        Ok((tmp, dir, world, mount))
    }

    fn broken_log(&self, run: &Run, message: String) -> Log {
        let mut log = self.new_log(run);
        log.events.push(Event {
            t_us: 0,
            step: None,
            kind: EventKind::Broken { message },
        });
        log
    }

    fn execute_here(&self, run: &Run) -> Log {
        let mut r = Recorder {
            start: Instant::now(),
            log: self.new_log(run),
        };
        let (tmp, dir, mut world, mount) = match self.prepare(run, &mut r) {
            Ok(ready) => ready,
            // A signal to the harness while the world was being set up (a
            // wait for the shared namespace's lock): not judged.
            Err(SetUpError::Broken(_)) if crate::interrupt::interrupted() => {
                r.rec(None, interrupted_event());
                return r.log;
            }
            Err(SetUpError::Broken(e)) => {
                r.rec(None, EventKind::Broken { message: e.to_string() });
                return r.log;
            }
            Err(SetUpError::Unavailable(e)) => {
                r.rec(None, EventKind::Skipped { reason: e.to_string() });
                return r.log;
            }
        };
        let scenario_limit = run.scenario.timeout.unwrap_or(self.limits.scenario);
        let mut scenario_deadline = Deadline::new(r.start + scenario_limit, scenario_limit, WhichLimit::Scenario);
        if let Some(hard) = run.hard_deadline {
            if hard < scenario_deadline.at {
                scenario_deadline.at = hard;
            }
        }
        let mut state = State {
            dir: &dir,
            oracle: self.oracle,
            known: Known::default(),
            world: world.as_mut(),
            procs: BTreeMap::new(),
            tracees: BTreeMap::new(),
            saved_ids: BTreeMap::new(),
            shmem_marks: BTreeMap::new(),
        };
        for step in run.steps {
            let n = Some(step.n);
            if crate::interrupt::interrupted() {
                r.rec(n, interrupted_event());
                break;
            }
            if scenario_deadline.expired() {
                r.rec(
                    n,
                    EventKind::Timeout {
                        proc: "scenario".into(),
                        waiting_for: "the whole scenario".into(),
                        limit_ms: scenario_deadline.limit.as_millis() as u64,
                        cpu_wait_ms: None,
                        limit: WhichLimit::Scenario,
                        stdout: Text::default(),
                        stderr: Text::default(),
                    },
                );
                r.rec(
                    n,
                    EventKind::Aborted {
                        reason: "scenario time limit".into(),
                    },
                );
                break;
            }
            if let Err(message) = state.world.enter(&step.ns).map_err(|e| e.to_string()) {
                r.rec(n, EventKind::Broken { message });
                break;
            }
            let step_limit = step.timeout.unwrap_or(self.limits.step);
            let step_deadline = Instant::now() + step_limit;
            let deadline = if step_deadline <= scenario_deadline.at() {
                Deadline::new(step_deadline, step_limit, WhichLimit::Step)
            } else {
                scenario_deadline
            };
            if !state.run_step(self, step, deadline, &mut r) {
                break;
            }
        }
        state.tear_down(&mut r);
        drop(state);
        drop(world);
        drop(dir);
        drop(mount);
        if let Err(e) = tmp.close() {
            r.rec(
                None,
                EventKind::Broken {
                    message: format!("cannot remove the scenario's dir: {e}"),
                },
            );
        }
        r.log
    }
}

/// What a scenario runs in: its dir (removed last), the dir opened, the
/// backend's world, and the tmpfs mounted on the dir (unmounted before the
/// dir is removed).
type Prepared = (
    tempfile::TempDir,
    ScenarioDir,
    Box<dyn World>,
    Option<tmpfs::TmpfsMount>,
);

struct State<'w> {
    dir: &'w ScenarioDir,
    oracle: &'w dyn Oracle,
    /// Keys and ids the scenario named, for an oracle that cannot enumerate.
    known: Known,
    world: &'w mut dyn World,
    procs: BTreeMap<String, Proc>,
    /// The traced processes among `procs`, held at their points.
    tracees: BTreeMap<String, trace::Tracee>,
    /// Segment ids saved by `save_id`, for `{NAME}` in args.
    saved_ids: BTreeMap<String, i32>,
    /// `shmem_mark` values (KiB of Shmem) by name.
    shmem_marks: BTreeMap<String, u64>,
}

/// The run was interrupted during this step (a signal to the harness).
fn interrupted_event() -> EventKind {
    EventKind::Interrupted {
        reason: crate::interrupt::interruption(),
    }
}

fn timeout_event(proc: &str, waiting_for: String, d: Deadline, out: (Text, Text)) -> EventKind {
    EventKind::Timeout {
        proc: proc.into(),
        waiting_for,
        limit_ms: d.limit.as_millis() as u64,
        cpu_wait_ms: Some(d.cpu_wait().as_millis() as u64).filter(|ms| *ms > 0),
        limit: d.which,
        stdout: out.0,
        stderr: out.1,
    }
}

/// Why a scenario's key could not be had.
#[derive(Debug, thiserror::Error)]
enum UnresolvedKey {
    /// ftok in the scenario's dir (the key file missing: for the check to say).
    #[error("ftok({file}): {source}")]
    Here {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// ftok where the scenario runs (its own kernel's view).
    #[error("ftok({file}): {source}")]
    There {
        file: String,
        #[source]
        source: oracle::ReadError,
    },
}

impl UnresolvedKey {
    /// The container engine could not run the in-container ftok: that says
    /// nothing about the implementation (BROKEN, not a verdict).
    fn engine_failed(&self) -> bool {
        matches!(
            self,
            UnresolvedKey::There {
                source: oracle::ReadError::InContainer(oracle::KernelViewError::EngineFailed(_)),
                ..
            }
        )
    }
}

impl State<'_> {
    fn resolve_key(&mut self, key: &KeySpec) -> Result<i32, UnresolvedKey> {
        let raw = match key {
            KeySpec::Ftok { file, proj_id } => match self.world.ftok(file.as_str(), *proj_id) {
                Some(key) => key.map_err(|source| UnresolvedKey::There {
                    file: file.to_string(),
                    source,
                })?,
                None => self
                    .dir
                    .ftok(file, *proj_id)
                    .map(|k| k.raw())
                    .map_err(|source| UnresolvedKey::Here {
                        file: file.to_string(),
                        source,
                    })?,
            },
            KeySpec::Raw(v) => *v,
            KeySpec::Private => 0,
        };
        self.world.claims_key(raw);
        self.known.keys.insert(raw);
        Ok(raw)
    }

    /// Run one step; false stops the scenario (timeout, setup error, signal).
    fn run_step(&mut self, engine: &Engine, step: &Step, deadline: Deadline, r: &mut Recorder) -> bool {
        match &step.action {
            Action::Spawn(spawn) => self.spawn(engine, step, spawn, deadline, r),
            Action::Feed { proc, data, close } => self.feed(step, proc, data, *close, r),
            Action::Wait { proc, until } => self.wait(step, proc, until, deadline, r),
            Action::Kill { proc, signal, .. } => self.kill(step, proc, *signal, deadline, r),
            Action::Segments(check) => self.snapshot(step, Some(check), r),
            Action::File(op) => self.file_op(step, op, r),
            Action::CollideFiles { a, b } => self.collide(step, a, b, deadline, r),
            Action::Sysctl { sysctl, value } => self.set_sysctl(step, *sysctl, value, r),
            Action::Stop { ns } => self.stop_namespace(step, ns, r),
            Action::DropNs { ns } => self.drop_namespace(step, ns, r),
            Action::ShmemMark { mark } => self.shmem_mark(step, mark, r),
            Action::ShmemFreed { since, at_least_kib } => self.shmem_freed(step, since, *at_least_kib, deadline, r),
            Action::Observe => self.snapshot(step, None, r),
            Action::Schedule(schedule) => self.schedule(step, schedule, deadline, engine.limits.step, r),
        }
    }

    /// Write `data` to a background program's input (closing it after, if
    /// `close`); a failed write is recorded, and the scenario goes on.
    fn feed(&mut self, step: &Step, proc: &str, data: &[u8], close: bool, r: &mut Recorder) -> bool {
        let Some(p) = self.procs.get_mut(proc) else {
            return self.gone(step, proc, r);
        };
        match p.write_stdin(data, close) {
            Ok(()) => r.rec(
                Some(step.n),
                EventKind::Stdin {
                    proc: proc.into(),
                    data: Text::new(data.to_vec()),
                    closed: close,
                },
            ),
            Err(e) => r.rec(
                Some(step.n),
                EventKind::StdinFailed {
                    proc: proc.into(),
                    error: e.to_string(),
                },
            ),
        }
        true
    }

    /// Signal a background program, then wait for its exit.
    fn kill(&mut self, step: &Step, proc: &str, signal: Signal, deadline: Deadline, r: &mut Recorder) -> bool {
        let n = Some(step.n);
        let Some(p) = self.procs.get_mut(proc) else {
            return self.gone(step, proc, r);
        };
        if let Err(e) = p.signal(signal) {
            r.rec(
                n,
                EventKind::Broken {
                    message: format!("cannot signal {proc}: {e}"),
                },
            );
            return false;
        }
        r.rec(
            n,
            EventKind::Signal {
                proc: proc.into(),
                signal: signal.as_str().into(),
            },
        );
        let Some(mut p) = self.procs.remove(proc) else {
            return self.gone(step, proc, r);
        };
        finish(self.world, step.n, &mut p, deadline, "its exit after the signal", r)
    }

    /// Create, remove, recreate or link a file in the scenario's dir (a file
    /// it leaves is claimed by the world); false if that failed.
    fn file_op(&mut self, step: &Step, op: &FileOp, r: &mut Recorder) -> bool {
        let (name, result) = match op {
            FileOp::Create(f) => (f, self.dir.create(f)),
            FileOp::Remove(f) => (f, self.dir.remove(f)),
            FileOp::Recreate(f) => (f, self.dir.recreate(f)),
            FileOp::Link { from, to } => (to, self.dir.link(from, to)),
        };
        let identity = match op {
            FileOp::Remove(_) => None,
            _ => self.dir.identity(name).ok(),
        };
        if let Some(id) = identity {
            self.world.claims_file(id);
        }
        let (op_name, path) = op.describe();
        let ok = result.is_ok();
        r.rec(
            Some(step.n),
            EventKind::File {
                op: op_name.into(),
                path,
                error: result.err().map(|e| e.to_string()),
                identity: identity.map(|i| (i.dev, i.ino)),
            },
        );
        ok
    }

    /// Make two files `a` and `b` whose ftok keys collide (see
    /// [`collide_files`]); a filesystem that gives no such pair, here or
    /// where the scenario runs, is a SKIP.
    fn collide(&mut self, step: &Step, a: &FileName, b: &FileName, deadline: Deadline, r: &mut Recorder) -> bool {
        let n = Some(step.n);
        match collide_files(self.dir, a, b, deadline.at()) {
            Ok((detail, ids)) => {
                for id in ids {
                    self.world.claims_file(id);
                }
                if let Some(reason) = self.no_collision_in_namespace(a, b, &detail) {
                    r.rec(n, EventKind::Skipped { reason });
                    return false;
                }
                r.rec(
                    n,
                    EventKind::File {
                        op: "collide".into(),
                        path: detail,
                        error: None,
                        identity: None,
                    },
                );
                true
            }
            // Stopped by a signal, the search proves nothing about the filesystem.
            Err(Collide::NotFound(_)) if crate::interrupt::interrupted() => {
                r.rec(n, interrupted_event());
                false
            }
            Err(Collide::NotFound(reason)) => {
                r.rec(n, EventKind::Skipped { reason });
                false
            }
            Err(Collide::Io(e)) => {
                r.rec(
                    n,
                    EventKind::File {
                        op: "collide".into(),
                        path: format!("{a} ~ {b}"),
                        error: Some(e),
                        identity: None,
                    },
                );
                false
            }
        }
    }

    /// Why a pair of files that collide here does not where the scenario
    /// runs, if it does not. Where the namespace computes ftok itself (a
    /// sandbox's kernel numbers inodes its own way), the pair must collide
    /// there too, or the scenario checks nothing.
    fn no_collision_in_namespace(&mut self, a: &FileName, b: &FileName, detail: &str) -> Option<String> {
        let (Some(ka), Some(kb)) = (self.world.ftok(a.as_str(), 65), self.world.ftok(b.as_str(), 65)) else {
            return None;
        };
        // Both failing is for the steps to meet; one failing, or two keys, is not a collision there.
        (ka.as_ref().ok() != kb.as_ref().ok()).then(|| {
            format!(
                "{detail} collide here, but not where the scenario runs (its kernel gives them keys {} and {})",
                ka.map_or_else(|e| e.to_string(), |k| format!("{k:#010x}")),
                kb.map_or_else(|e| e.to_string(), |k| format!("{k:#010x}"))
            )
        })
    }

    fn set_sysctl(&mut self, step: &Step, sysctl: IpcSysctl, value: &str, r: &mut Recorder) -> bool {
        let result = self.world.set_sysctl(&step.ns, sysctl, value);
        let ok = result.is_ok();
        r.rec(
            Some(step.n),
            EventKind::Sysctl {
                ns: step.ns.clone(),
                name: sysctl.name().into(),
                value: value.into(),
                error: result.err().map(|e| e.to_string()),
            },
        );
        ok
    }

    fn stop_namespace(&mut self, step: &Step, ns: &str, r: &mut Recorder) -> bool {
        let result = self.world.stop(ns);
        let ok = result.is_ok();
        r.rec(
            Some(step.n),
            EventKind::Stopped {
                ns: ns.into(),
                error: result.err().map(|e| e.to_string()),
            },
        );
        ok
    }

    fn drop_namespace(&mut self, step: &Step, ns: &str, r: &mut Recorder) -> bool {
        match self.world.drop_namespace(ns).map_err(|e| e.to_string()) {
            Ok(()) => {
                r.rec(Some(step.n), EventKind::NamespaceDropped { ns: ns.into() });
                true
            }
            Err(message) => {
                r.rec(Some(step.n), EventKind::Broken { message });
                false
            }
        }
    }

    /// Note the machine's Shmem now, under `mark`, for a later `shmem_freed`.
    fn shmem_mark(&mut self, step: &Step, mark: &str, r: &mut Recorder) -> bool {
        match shmem_kib() {
            Ok(kib) => {
                self.shmem_marks.insert(mark.into(), kib);
                r.rec(
                    Some(step.n),
                    EventKind::Shmem {
                        mark: mark.into(),
                        shmem_kib: kib,
                        freed_kib: None,
                    },
                );
                true
            }
            Err(e) => {
                r.rec(
                    Some(step.n),
                    EventKind::Broken {
                        message: format!("reading /proc/meminfo: {e}"),
                    },
                );
                false
            }
        }
    }

    /// Wait for Shmem to fall at least `at_least_kib` below mark `since`.
    fn shmem_freed(
        &mut self,
        step: &Step,
        since: &str,
        at_least_kib: u64,
        deadline: Deadline,
        r: &mut Recorder,
    ) -> bool {
        let n = Some(step.n);
        let Some(&base) = self.shmem_marks.get(since) else {
            r.rec(
                n,
                EventKind::Broken {
                    message: format!("mark {since:?} was not recorded"),
                },
            );
            return false;
        };
        // The kernel frees a dead namespace's segments from a work
        // queue, a little after the last process is gone: poll.
        loop {
            let now = shmem_kib().unwrap_or(base);
            let freed = base as i64 - now as i64;
            if freed >= at_least_kib as i64 {
                r.rec(
                    n,
                    EventKind::Shmem {
                        mark: since.into(),
                        shmem_kib: now,
                        freed_kib: Some(freed),
                    },
                );
                return true;
            }
            if crate::interrupt::interrupted() {
                r.rec(n, interrupted_event());
                return false;
            }
            if deadline.expired() {
                let what = format!("Shmem to fall {at_least_kib} KiB below mark {since:?} (it fell {freed} KiB)");
                r.rec(n, timeout_event("kernel", what, deadline, Default::default()));
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A step names a process that is no longer there: it was waited for or
    /// killed by an earlier step that the load-time check could not see end
    /// (an exploration's generated steps); a harness error, said so.
    fn gone(&self, step: &Step, proc: &str, r: &mut Recorder) -> bool {
        r.rec(
            Some(step.n),
            EventKind::Broken {
                message: format!("no running process named {proc:?}"),
            },
        );
        false
    }

    fn spawn(&mut self, engine: &Engine, step: &Step, spawn: &Spawn, deadline: Deadline, r: &mut Recorder) -> bool {
        let n = Some(step.n);
        let (mut argv, mut env): (Vec<String>, _) = match &spawn.program {
            Program::Role(role) => (
                engine.implementation.command_as(*role, spawn.uid).to_vec(),
                engine.implementation.env(*role).cloned().unwrap_or_default(),
            ),
            Program::Exec(argv) => (argv.clone(), Default::default()),
        };
        // The scenario's own variables win over the implementation's.
        env.extend(spawn.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        for arg in &spawn.args {
            match arg.render(&self.saved_ids).map_err(|e| e.to_string()) {
                Ok(a) => argv.push(a),
                Err(message) => {
                    r.rec(n, EventKind::Broken { message });
                    return false;
                }
            }
        }
        let req = SpawnRequest {
            ns: &step.ns,
            argv: argv.clone(),
            env: &env,
            uid: spawn.uid,
            gid: spawn.gid,
            keep: spawn.keep,
        };
        let cmd = match self.world.command(&req, self.dir).map_err(|e| e.to_string()) {
            Ok(c) => c,
            Err(message) => {
                r.rec(n, EventKind::Broken { message });
                return false;
            }
        };
        let spawned = if spawn.traced {
            Proc::spawn_traced(&spawn.name, cmd, self.world.pid_namespace())
        } else {
            Proc::spawn(&spawn.name, cmd, self.world.pid_namespace())
        };
        let mut proc = match spawned {
            Ok(p) => p,
            Err(e) => {
                if crate::interrupt::interrupted() {
                    r.rec(n, interrupted_event());
                    return false;
                }
                r.rec(
                    n,
                    EventKind::SpawnFailed {
                        proc: spawn.name.clone(),
                        argv,
                        error: e.to_string(),
                    },
                );
                return true;
            }
        };
        self.world.spawned(proc.pid);
        r.rec(
            n,
            EventKind::Spawn {
                proc: spawn.name.clone(),
                argv,
                ns: step.ns.clone(),
                pid: proc.pid,
                uid: spawn.uid,
            },
        );
        let close = spawn.background.map_or(true, |b| b.close_stdin);
        if !spawn.stdin.is_empty() || close {
            match proc.write_stdin(&spawn.stdin, close) {
                Ok(()) => r.rec(
                    n,
                    EventKind::Stdin {
                        proc: spawn.name.clone(),
                        data: Text::new(spawn.stdin.clone()),
                        closed: close,
                    },
                ),
                Err(e) => r.rec(
                    n,
                    EventKind::StdinFailed {
                        proc: spawn.name.clone(),
                        error: e.to_string(),
                    },
                ),
            }
        }
        if spawn.background.is_some() {
            if spawn.traced {
                self.tracees.insert(spawn.name.clone(), trace::Tracee::new(proc.pid));
            }
            self.procs.insert(spawn.name.clone(), proc);
            true
        } else {
            finish(self.world, step.n, &mut proc, deadline, "its exit", r)
        }
    }

    /// Play one order of a system-call exploration (see [`Schedule`]).
    /// False stops the scenario: a replay that is not possible, a run that
    /// does what the tracer cannot follow (a SKIP), a timeout.
    ///
    /// The step limit holds for each traced step (one call to the next),
    /// not for the whole order: how long an order of many steps takes
    /// depends on the machine's load, and the order as a whole is bounded
    /// by the scenario's limit (the Schedule step's own `deadline`).
    fn schedule(
        &mut self,
        step: &Step,
        sched: &Schedule,
        deadline: Deadline,
        per_call: Duration,
        r: &mut Recorder,
    ) -> bool {
        let n = Some(step.n);
        let mut order = Order {
            step,
            sched,
            deadline,
            per_call,
            fed: BTreeMap::new(),
            attached: BTreeMap::new(),
            scheduler: trace::Scheduler::new(&sched.prefix, &sched.sleep, sched.sleep_from),
        };
        // The table before the first step: where the model starts.
        if !self.record_table(step, r) {
            return false;
        }
        loop {
            if crate::interrupt::interrupted() {
                r.rec(n, interrupted_event());
                return false;
            }
            let enabled = self.enabled_choices(&order);
            if enabled.is_empty() {
                return self.all_runs_ended(&order, r);
            }
            let choice = match order.next_choice(&enabled, r) {
                ControlFlow::Continue(choice) => choice,
                ControlFlow::Break(go_on) => return go_on,
            };
            match &choice {
                Choice::Feed(run) => self.feed_piece(&mut order, &choice, run, enabled, r),
                Choice::Step(run) => {
                    if !self.take_step(&mut order, &choice, run, enabled, r) {
                        return false;
                    }
                }
            }
        }
    }

    /// The choices the order can make now: a step of each traced run that
    /// has not ended and would not block, and a piece of input for each run
    /// with pieces left.
    fn enabled_choices(&self, order: &Order) -> Vec<Choice> {
        let mut enabled = Vec::new();
        for run in &order.sched.runs {
            let (Some(t), Some(p)) = (self.tracees.get(run), self.procs.get(run)) else {
                continue;
            };
            // A read with nothing to read would block: not until fed.
            let blocked = *t.stop() == Stop::At(TracedCall::ReadStdin) && p.stdin_unread() == Some(0);
            if t.ended().is_none() && !blocked {
                enabled.push(Choice::Step(run.clone()));
            }
            let pieces = order.sched.pieces.get(run).map_or(0, Vec::len);
            if t.ended().is_none() && order.fed.get(run).copied().unwrap_or(0) < pieces {
                enabled.push(Choice::Feed(run.clone()));
            }
        }
        enabled
    }

    /// No choice is left: the order is done if every run has ended, else
    /// the runs that have not are stuck (a harness error).
    fn all_runs_ended(&self, order: &Order, r: &mut Recorder) -> bool {
        let stuck: Vec<&String> = order
            .sched
            .runs
            .iter()
            .filter(|run| self.procs.contains_key(*run))
            .collect();
        if !stuck.is_empty() {
            r.rec(
                Some(order.step.n),
                EventKind::Broken {
                    message: format!("no run can go on, and {stuck:?} have not ended"),
                },
            );
            return false;
        }
        true
    }

    /// Feed `run` its next piece of input (the last one closes it).
    fn feed_piece(&mut self, order: &mut Order, choice: &Choice, run: &str, enabled: Vec<Choice>, r: &mut Recorder) {
        let n = Some(order.step.n);
        let k = order.fed.entry(run.into()).or_insert(0);
        let all = &order.sched.pieces[run];
        let piece = &all[*k];
        *k += 1;
        let last = *k == all.len();
        let written = self.procs.get_mut(run).map(|p| p.write_stdin(piece, last));
        r.rec(
            n,
            EventKind::Scheduled {
                choice: choice.clone(),
                call: format!(
                    "input piece {} of {}: {}{}",
                    *k,
                    all.len(),
                    crate::events::quote_cut(piece, piece.len() as u64, 48),
                    if last { ", then closed" } else { "" }
                ),
                enabled,
                touches: vec![crate::events::Access::Stdin(run.to_string())],
                op: None,
                result: None,
                seen: Vec::new(),
            },
        );
        order
            .scheduler
            .happened(choice, &[crate::events::Access::Stdin(run.to_string())]);
        if let Some(Err(e)) = written {
            r.rec(
                n,
                EventKind::StdinFailed {
                    proc: run.into(),
                    error: e.to_string(),
                },
            );
        }
    }

    /// Let the traced `run` make the call it is stopped at and stop at its
    /// next (or end), and record the step with what it touched: the sleep
    /// set of the order follows it. False stops the order.
    fn take_step(
        &mut self,
        order: &mut Order,
        choice: &Choice,
        run: &str,
        enabled: Vec<Choice>,
        r: &mut Recorder,
    ) -> bool {
        let step = order.step;
        let call = match self.tracees.get(run).map(trace::Tracee::stop) {
            Some(Stop::At(call)) => call.clone(),
            _ => return self.gone(step, run, r),
        };
        let before = order.attached.get(run).copied().flatten();
        let after = match &call {
            TracedCall::ShmAt { id } => Some(*id),
            TracedCall::ShmDt { .. } => None,
            _ => before,
        };
        // The segments it can reach in this step, and their
        // content around it: a change is a write (everyone else
        // is held, so the change is this step's).
        let mut ids: Vec<i32> = [before, after].into_iter().flatten().collect();
        ids.dedup();
        let oracle = self.world.oracle().unwrap_or(self.oracle);
        let read = |id: i32| oracle.content(id, CONTENT_CAP).ok();
        let contents_before: Vec<Option<Vec<u8>>> = ids.iter().map(|&id| read(id)).collect();
        let Some(tracee) = self.tracees.get_mut(run) else {
            return self.gone(step, run, r);
        };
        let call_deadline = per_call_deadline(order.deadline, order.per_call, self.procs.get(run));
        let result = tracee.step(&|| call_deadline.at()).cloned();
        let returned = tracee.last_result();
        // A failed shmat attached nothing.
        let after = match (&call, returned) {
            (TracedCall::ShmAt { .. }, Some(r)) if r < 0 => before,
            _ => after,
        };
        order.attached.insert(run.into(), after);
        let contents_after: Vec<Option<Vec<u8>>> = ids.iter().map(|&id| read(id)).collect();
        let reached: Vec<(i32, bool)> = ids
            .iter()
            .zip(contents_before.iter().zip(&contents_after))
            .map(|(&id, (was, now))| (id, was.is_some() && now != was))
            .collect();
        let seen = readable_texts(&contents_before, &contents_after);
        let touches = trace::touches(run, &call, before, &reached);
        order.scheduler.happened(choice, &touches);
        r.rec(
            Some(step.n),
            EventKind::Scheduled {
                choice: choice.clone(),
                call: call.describe(),
                enabled,
                touches,
                op: Some(call.clone()),
                result: returned,
                seen,
            },
        );
        match result {
            Ok(stop) => self.after_step(step, run, stop, order.deadline, r),
            Err(error) => {
                let event = self.trace_error_event(run, &call, error, call_deadline);
                r.rec(Some(step.n), event);
                false
            }
        }
    }

    /// What a step that the tracer could not take says: a SKIP (the run did
    /// what it cannot follow), a timeout, or BROKEN (the tracing failed).
    fn trace_error_event(&self, run: &str, call: &TracedCall, error: TraceError, call_deadline: Deadline) -> EventKind {
        match error {
            TraceError::Unsupported(why) => EventKind::Skipped {
                reason: format!("{run}: {why}"),
            },
            TraceError::TimedOut => {
                let out = self.procs.get(run).map(|p| p.output()).unwrap_or_default();
                timeout_event(
                    run,
                    format!("it to reach its next system call after {}", call.describe()),
                    call_deadline,
                    out,
                )
            }
            TraceError::Failed(why) => EventKind::Broken {
                message: format!("tracing {run}: {why}"),
            },
        }
    }

    /// After a traced step: a run that ended has its exit collected (and
    /// recorded), then the table is recorded (after every step, its end
    /// included). False stops the order.
    fn after_step(&mut self, step: &Step, run: &str, stop: Stop, deadline: Deadline, r: &mut Recorder) -> bool {
        if let Stop::Ended(ending) = stop {
            self.tracees.remove(run);
            let Some(mut p) = self.procs.remove(run) else {
                return self.gone(step, run, r);
            };
            p.record_ending(ending);
            if !finish(self.world, step.n, &mut p, deadline, "its exit", r) {
                return false;
            }
        }
        self.record_table(step, r)
    }

    /// Wait for program `name`: for its exit (recorded), or for a barrier.
    fn wait(&mut self, step: &Step, name: &str, until: &WaitFor, deadline: Deadline, r: &mut Recorder) -> bool {
        let (barrier, waiting_for) = match until {
            WaitFor::Exit(_) => {
                let Some(mut p) = self.procs.remove(name) else {
                    return self.gone(step, name, r);
                };
                return finish(self.world, step.n, &mut p, deadline, "its exit", r);
            }
            WaitFor::Stdout(text) => (
                Barrier::Stdout(text),
                format!("stdout to contain {}", crate::events::escape_short(text, 80)),
            ),
            WaitFor::Attached(spec) => (
                Barrier::Attached(self.resolve_key(spec).ok()),
                format!("a segment with key {spec} to be attached"),
            ),
            WaitFor::ReadingStdin => (Barrier::ReadingStdin, "it to block reading its input".to_string()),
        };
        self.wait_for_barrier(step, name, barrier, waiting_for, deadline, r)
    }

    /// Poll until program `name` meets `barrier` (true), or it ends before,
    /// or the deadline or a signal to the harness comes first (false).
    fn wait_for_barrier(
        &mut self,
        step: &Step,
        name: &str,
        barrier: Barrier,
        waiting_for: String,
        deadline: Deadline,
        r: &mut Recorder,
    ) -> bool {
        let n = Some(step.n);
        let Some(proc) = self.procs.get_mut(name) else {
            return self.gone(step, name, r);
        };
        let deadline = deadline.for_program(proc);
        let mut unsettled = 0;
        let mut pause = PollPause::default();
        loop {
            let reached = match barrier {
                Barrier::Stdout(text) => matches!(
                    proc.wait_stdout(text, (Instant::now() + Duration::from_millis(20)).min(deadline.at())),
                    WaitOutcome::Done(())
                ),
                Barrier::Attached(key) => key.is_some_and(|k| {
                    own_segment_attached(&mut *self.world, self.oracle, &self.known, k, &mut unsettled)
                }),
                Barrier::ReadingStdin => proc.is_reading_stdin(),
            };
            if reached {
                r.rec(n, output_seen(name, waiting_for));
                return true;
            }
            if crate::interrupt::interrupted() {
                r.rec(n, interrupted_event());
                return false;
            }
            if let Some(ending) = proc.ending() {
                let (met, event) = ended_at_barrier(&*self.world, proc, name, barrier, waiting_for, ending);
                r.rec(n, event);
                if !met {
                    if let Some(mut p) = self.procs.remove(name) {
                        p.kill_group();
                    }
                }
                return met;
            }
            if deadline.expired() {
                // Output read only now (its pump had not run) was printed in
                // time: looked at once more before a timeout is judged.
                if let Barrier::Stdout(text) = barrier {
                    if has_printed(proc, text) {
                        r.rec(n, output_seen(name, waiting_for));
                        return true;
                    }
                }
                // Judged before the kill: a dead program's waits for a CPU
                // can no longer be read.
                let event = timeout_event(name, waiting_for, deadline, proc.output());
                proc.kill_group();
                r.rec(n, event);
                return false;
            }
            if !matches!(barrier, Barrier::Stdout(_)) {
                pause.sleep();
            }
        }
    }

    /// Record the segment table of the step's namespace: the scenario's own
    /// rows, with the keys the check names resolved and the contents it
    /// needs (all contents for an exploration's observation).
    /// False where the table cannot be judged (the scenario stops).
    fn snapshot(&mut self, step: &Step, check: Option<&SegmentsCheck>, r: &mut Recorder) -> bool {
        let n = Some(step.n);
        // Keys first (ftok only stats files), so an oracle that cannot
        // enumerate the table can look them up; then the table, before any
        // content: reading contents attaches, which changes lpid and atime
        // (and, with shm_rmid_forced, detaching could destroy).
        let mut keys = BTreeMap::new();
        let mut resolved_keys = Vec::new();
        for exp in check.map(|c| c.expect.as_slice()).unwrap_or_default() {
            let resolved = self.resolve_key(&exp.key);
            if let Err(e) = &resolved {
                if e.engine_failed() {
                    r.rec(n, EventKind::Broken { message: e.to_string() });
                    return false;
                }
            }
            resolved_keys.push(resolved.as_ref().ok().copied());
            // The log keeps what the check will say of a key it could not have.
            keys.insert(exp.key.to_string(), resolved.map_err(|e| e.to_string()));
        }
        let table = match self.kernel_table() {
            Ok(t) => t,
            Err(kind) => {
                r.rec(n, *kind);
                return false;
            }
        };
        let (rows, foreign) = self.own_rows(table);
        let mut content_keys = Vec::new();
        let expects = check.map(|c| c.expect.as_slice()).unwrap_or_default();
        for (exp, k) in expects.iter().zip(resolved_keys) {
            let Some(k) = k else { continue };
            // Another program's segment under a key the check names (the
            // namespace is shared): whatever the scenario's programs did
            // under that key, they met that segment, so the check proves
            // nothing either way; it is not judged, and not touched.
            if k != 0 {
                if let Some(theirs) = foreign.iter().find(|row| row.raw_key == k) {
                    r.rec(
                        n,
                        EventKind::Skipped {
                            reason: format!(
                                "another program's segment (id {}, creator pid {}) holds key {} in the shared namespace: the check of {} cannot be judged here",
                                theirs.shmid,
                                theirs.cpid.map_or("unknown".into(), |p| p.to_string()),
                                theirs.key,
                                exp.key
                            ),
                        },
                    );
                    return false;
                }
            }
            if exp.content.is_some() || exp.prefix.is_some() {
                content_keys.push(k);
            }
            // Only an id of the scenario's own segment is claimed by name.
            if let Some(name) = &exp.save_id {
                if let Some(row) = rows.iter().find(|row| row.raw_key == k) {
                    self.saved_ids.insert(name.clone(), row.shmid);
                    self.world.claims_id(row.shmid);
                    self.known.ids.insert(row.shmid);
                }
            }
        }
        let mut contents = BTreeMap::new();
        for row in &rows {
            if check.is_none() || content_keys.contains(&row.raw_key) {
                let bytes = self
                    .world
                    .oracle()
                    .unwrap_or(self.oracle)
                    .content(row.shmid, CONTENT_CAP)
                    .map(|mut v| {
                        // Keep logs readable: trailing NULs are implied up to the size.
                        let end = v.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                        v.truncate(end);
                        v
                    })
                    .unwrap_or_default();
                contents.insert(row.shmid, Text::new(bytes));
            }
        }
        r.rec(
            n,
            EventKind::Snapshot {
                ns: step.ns.clone(),
                rows,
                foreign_ignored: foreign.len(),
                keys,
                contents,
            },
        );
        true
    }

    /// The whole table as the oracle reads it, or the event that says why
    /// it cannot (the engine failed: BROKEN; rows missing: SKIP, since a
    /// table with rows missing proves nothing either way).
    fn kernel_table(&mut self) -> Result<Vec<crate::events::SegRow>, Box<EventKind>> {
        let table = match self.world.oracle().unwrap_or(self.oracle).table(&self.known) {
            Ok(t) => t,
            Err(OracleError::Failed(e)) => return Err(Box::new(EventKind::Broken { message: e.to_string() })),
            Err(OracleError::Unreadable { why, .. }) => {
                return Err(Box::new(EventKind::Skipped {
                    reason: format!("the kernel's view is incomplete here: {why}"),
                }))
            }
        };
        // Every id seen stays known: after IPC_RMID its key is gone.
        self.known.ids.extend(table.iter().map(|r| r.shmid));
        Ok(table)
    }

    /// The rows of the scenario's own segments, and how many others there were.
    fn own_rows(
        &mut self,
        table: Vec<crate::events::SegRow>,
    ) -> (Vec<crate::events::SegRow>, Vec<crate::events::SegRow>) {
        table.into_iter().partition(|row| self.world.is_own(row))
    }

    /// Record the table (own rows, no content) as it is now: system-call
    /// exploration holds it against the SysV model after every step.
    fn record_table(&mut self, step: &Step, r: &mut Recorder) -> bool {
        let table = match self.kernel_table() {
            Ok(t) => t,
            Err(kind) => {
                r.rec(Some(step.n), *kind);
                return false;
            }
        };
        let (rows, foreign) = self.own_rows(table);
        r.rec(
            Some(step.n),
            EventKind::Snapshot {
                ns: step.ns.clone(),
                rows,
                foreign_ignored: foreign.len(),
                keys: BTreeMap::new(),
                contents: BTreeMap::new(),
            },
        );
        true
    }

    fn tear_down(&mut self, r: &mut Recorder) {
        for (name, proc) in self.procs.iter_mut() {
            if !proc.has_exited() {
                r.rec(None, EventKind::Reaped { proc: name.clone() });
            }
            proc.kill_group();
        }
        self.procs.clear();
        for done in self.world.tear_down() {
            match done {
                Ok(what) => r.rec(None, EventKind::Removed { what }),
                // Something of the scenario's stays behind: never a quiet pass.
                Err(e) => r.rec(None, EventKind::Broken { message: e.to_string() }),
            }
        }
    }
}

/// One order of a system-call exploration as [`State::schedule`] plays it:
/// the step and its limits, and what the order has done so far.
struct Order<'s> {
    step: &'s Step,
    sched: &'s Schedule,
    /// The whole order's limit (the scenario's).
    deadline: Deadline,
    /// The limit of each traced step, from one call to the next.
    per_call: Duration,
    /// How many pieces of its input each run was fed.
    fed: BTreeMap<String, usize>,
    /// The segment each run has attached, as its calls so far say.
    attached: BTreeMap<String, Option<i32>>,
    /// Which choice comes next (the prefix, then the first not asleep).
    scheduler: trace::Scheduler,
}

impl Order<'_> {
    /// The next choice among `enabled`: the prefix's while it lasts (one it
    /// cannot make here is BROKEN), then the first one not asleep. Break:
    /// the order ends there, with false if it stops the scenario (every
    /// choice asleep: the rest of the order is redundant, not an error).
    fn next_choice(&mut self, enabled: &[Choice], r: &mut Recorder) -> ControlFlow<bool, Choice> {
        let n = Some(self.step.n);
        match self.scheduler.decide(enabled) {
            trace::Decision::Take(c) => ControlFlow::Continue(c),
            trace::Decision::Impossible(c) => {
                r.rec(
                    n,
                    EventKind::Broken {
                        message: format!(
                            "this order cannot be replayed: {} is not possible here (possible: {})",
                            c.label(),
                            enabled.iter().map(Choice::label).collect::<Vec<_>>().join(", ")
                        ),
                    },
                );
                ControlFlow::Break(false)
            }
            trace::Decision::AllAsleep => {
                r.rec(
                    n,
                    EventKind::Redundant {
                        asleep: enabled.to_vec(),
                    },
                );
                ControlFlow::Break(true)
            }
        }
    }
}

/// The limit of one traced step of a run: the step limit from now, unless
/// the order's own ends first; the run's waits for a CPU move it later.
fn per_call_deadline(deadline: Deadline, per_call: Duration, proc: Option<&Proc>) -> Deadline {
    let call_deadline = if Instant::now() + per_call <= deadline.at() {
        Deadline::new(Instant::now() + per_call, per_call, WhichLimit::Step)
    } else {
        deadline
    };
    match proc {
        Some(p) => call_deadline.for_program(p),
        None => call_deadline,
    }
}

/// What a run could have read in the segments it had attached, before and
/// after its step: each one's content up to its first NUL (as the programs
/// print it), each text once.
fn readable_texts(before: &[Option<Vec<u8>>], after: &[Option<Vec<u8>>]) -> Vec<Text> {
    let mut seen: Vec<Text> = Vec::new();
    for bytes in before.iter().chain(after).flatten() {
        let text = Text::new(bytes.split(|&b| b == 0).next().unwrap_or_default().to_vec());
        if !seen.contains(&text) {
            seen.push(text);
        }
    }
    seen
}

/// What a wait for a program polls for, once its exit (a plain wait) is set aside.
#[derive(Clone, Copy)]
enum Barrier<'a> {
    Stdout(&'a [u8]),
    /// The key, if its file exists (else nothing can attach under it).
    Attached(Option<i32>),
    ReadingStdin,
}

/// Whether `text` is in what the program printed so far (no wait).
fn has_printed(proc: &Proc, text: &[u8]) -> bool {
    matches!(proc.wait_stdout(text, Instant::now()), WaitOutcome::Done(()))
}

/// The event that says a wait's barrier was met.
fn output_seen(proc: &str, text: String) -> EventKind {
    EventKind::OutputSeen {
        proc: proc.into(),
        text,
    }
}

/// Whether the scenario's own segment under `key` is attached. Only its own
/// counts: in a shared namespace another program may hold the key, attached.
fn own_segment_attached(
    world: &mut dyn World,
    oracle: &dyn Oracle,
    known: &Known,
    key: i32,
    unsettled: &mut u32,
) -> bool {
    let attached = |world: &mut dyn World| {
        let rows = world.oracle().unwrap_or(oracle).table(known).ok()?;
        rows.iter()
            .find(|row| row.raw_key == key && row.nattch >= 1 && world.is_own(row))
            .map(|row| (row.shmid, row.nattch))
    };
    let Some((shmid, _)) = attached(&mut *world) else {
        return false;
    };
    // The mappings first, the count after: a shmat still under way shows
    // in the count before its mapping exists, or beside it.
    let Ok(mapped) = world.oracle().unwrap_or(oracle).mappings(shmid) else {
        // Not countable here (a process that cannot be read): the
        // kernel's count alone, as before.
        return true;
    };
    let nattch = attached(&mut *world).filter(|&(id, _)| id == shmid).map(|(_, n)| n);
    if nattch.is_some_and(|n| attach_settled(n, mapped)) {
        return true;
    }
    // Attachers this observer cannot see (a pod's other containers) keep
    // the two apart for good: after so many polls, the count alone.
    *unsettled += 1;
    *unsettled >= UNSETTLED_POLLS
}

/// Has every attach of a segment that the kernel counts (`nattch`) come
/// to its end? Linux's shmat raises the count before it maps the segment,
/// and lowers it again after, so `nattch` reads 1 before the first
/// mapping exists and 2 beside it: only a count that equals the mappings
/// the processes hold is an attach done (`mapped` counted first).
fn attach_settled(nattch: u64, mapped: u64) -> bool {
    mapped >= 1 && mapped == nattch
}

/// The pause between two polls of a barrier that no event announces (an
/// attachment, a read that blocks): short at first, since most are met
/// within a fraction of a millisecond of the program's start, then longer
/// up to [`PollPause::LONGEST`], so a program that takes its time costs
/// the machine no more than a poll a millisecond. A fixed 1 ms pause made
/// every such barrier cost half a millisecond more on average than the
/// program needed (explore-paused-writer waits at one per order).
#[derive(Debug, Clone, Copy)]
struct PollPause {
    next: Duration,
}

impl PollPause {
    const FIRST: Duration = Duration::from_micros(50);
    const LONGEST: Duration = Duration::from_millis(1);

    /// The next pause's length; the one after is twice as long, at most LONGEST.
    fn take(&mut self) -> Duration {
        let this = self.next;
        self.next = (this * 2).min(Self::LONGEST);
        this
    }

    fn sleep(&mut self) {
        std::thread::sleep(self.take());
    }
}

impl Default for PollPause {
    fn default() -> Self {
        PollPause { next: Self::FIRST }
    }
}

/// Polls of an `until_attached` barrier whose count and mappings differ
/// before the count alone is taken: an attach in flight ends within a few
/// polls, unless an attacher is out of this observer's sight.
/// (Its first few polls come quickly, see [`PollPause`]: the rest, a
/// millisecond apart, still span about 200 ms.)
const UNSETTLED_POLLS: u32 = 200;

/// A program waited for at `barrier` ended (`ending`) first: whether the
/// barrier was met all the same, and the event that says so, or that says
/// it will not be (now, not at the deadline).
fn ended_at_barrier(
    world: &dyn World,
    proc: &mut Proc,
    name: &str,
    barrier: Barrier,
    waiting_for: String,
    ending: Ending,
) -> (bool, EventKind) {
    // What it printed before it ended may still be in the pipe:
    // read to the end, then look once more.
    if let Barrier::Stdout(text) = barrier {
        proc.drain_output(Duration::from_millis(500));
        if has_printed(proc, text) {
            return (true, output_seen(name, waiting_for));
        }
    }
    if matches!(barrier, Barrier::ReadingStdin) {
        // An exploration's writer that ended early (e.g. no key
        // file): its exit is collected, and judged, at its input.
        return (
            true,
            output_seen(name, format!("it ended ({ending}) before reading input")),
        );
    }
    // It will not happen any more: say so now, not at the deadline.
    let ending = world.ending(ending);
    let (stdout, stderr) = proc.output();
    let ended = EventKind::WaitEnded {
        proc: name.into(),
        waiting_for,
        ending,
        stdout,
        stderr,
    };
    (false, ended)
}

/// Wait for a process's exit and record it (or the timeout).
fn finish(world: &mut dyn World, n: usize, proc: &mut Proc, deadline: Deadline, what: &str, r: &mut Recorder) -> bool {
    let deadline = deadline.for_program(proc);
    // The limit may move while it is waited for (a busy machine): wait again
    // until it has passed as of now.
    let outcome = loop {
        match proc.wait_exit(deadline.at()) {
            WaitOutcome::TimedOut if !deadline.expired() => continue,
            outcome => break outcome,
        }
    };
    match outcome {
        WaitOutcome::Done((ending, stray)) => {
            let ending = world.ending(ending);
            let (stdout, stderr) = proc.output();
            r.rec(
                Some(n),
                EventKind::Exit {
                    proc: proc.name.clone(),
                    ending,
                    stdout,
                    stderr,
                    stray_processes: stray,
                },
            );
            true
        }
        WaitOutcome::TimedOut => {
            // Judged before the kill: a dead program's waits for a CPU can
            // no longer be read (the event said only the watcher's).
            let event = timeout_event(&proc.name, what.to_string(), deadline, proc.output());
            proc.kill_group();
            r.rec(Some(n), event);
            false
        }
        WaitOutcome::Interrupted => {
            r.rec(Some(n), interrupted_event());
            false
        }
    }
}

/// Why no colliding pair of files was made.
enum Collide {
    Io(String),
    /// The filesystem gave no colliding pair in time: the scenario cannot run here.
    NotFound(String),
}

/// Create files until two have inodes equal modulo 65536 (same device, so
/// the same ftok key for one proj_id); name them `a` and `b`, remove the rest.
fn collide_files(
    dir: &ScenarioDir,
    a: &FileName,
    b: &FileName,
    deadline: Instant,
) -> Result<(String, Vec<FileIdentity>), Collide> {
    let io = |e: std::io::Error| Collide::Io(e.to_string());
    let mut seen: BTreeMap<u64, FileName> = BTreeMap::new();
    let mut made: Vec<FileName> = Vec::new();
    let mut found = None;
    for i in 0..400_000u32 {
        if Instant::now() >= deadline || crate::interrupt::interrupted() {
            break;
        }
        let name = FileName::parse(&format!(".collide-{i}")).map_err(|e| Collide::Io(e.to_string()))?;
        dir.create(&name).map_err(io)?;
        made.push(name.clone());
        let ino = dir.identity(&name).map_err(io)?.ino;
        if let Some(first) = seen.insert(ino & 0xffff, name.clone()) {
            found = Some((first, name));
            break;
        }
    }
    let result = match found {
        Some((first, second)) => {
            let renamed = dir.rename(&first, a).and_then(|()| dir.rename(&second, b)).map_err(io);
            made.retain(|m| *m != first && *m != second);
            renamed.and_then(|()| {
                let (ia, ib) = (dir.identity(a).map_err(io)?, dir.identity(b).map_err(io)?);
                Ok((
                    format!(
                        "{a} (inode {}) ~ {b} (inode {}) after {} files",
                        ia.ino,
                        ib.ino,
                        seen.len() + 1
                    ),
                    vec![ia, ib],
                ))
            })
        }
        None => Err(Collide::NotFound(format!(
            "no two of {} files got inodes equal modulo 65536 within the step's time limit on this filesystem",
            seen.len()
        ))),
    };
    for m in made {
        let _ = dir.remove(&m);
    }
    result
}

/// `Shmem:` of /proc/meminfo in KiB: memory of shared segments and tmpfs.
fn shmem_kib() -> std::io::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("Shmem:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| std::io::Error::other("no Shmem line"))
}

#[cfg(test)]
mod tests {
    use super::{attach_settled, PollPause};
    use std::time::{Duration, Instant};

    /// The states of one shmat as `/proc/sysvipc/shm` and `/proc/PID/maps`
    /// show them (mappings counted before nattch), and of attaches done.
    #[rstest::rstest]
    #[case::count_raised_before_the_mapping_exists(1, 0, false)]
    #[case::mapping_made_count_not_yet_lowered(2, 1, false)]
    #[case::one_attach_done(1, 1, true)]
    #[case::a_second_attach_under_way_beside_a_first(2, 1, false)]
    #[case::two_attaches_done(2, 2, true)]
    #[case::a_detach_between_the_two_reads(0, 1, false)]
    #[case::nothing_attached(0, 0, false)]
    fn an_attach_is_done_when_the_count_equals_the_mappings(
        #[case] nattch: u64,
        #[case] mapped: u64,
        #[case] done: bool,
    ) {
        assert_eq!(attach_settled(nattch, mapped), done);
    }

    /// A barrier's polls start 50 us apart and double to 1 ms, no further:
    /// the first millisecond holds five polls, and a long wait costs no more
    /// than one a millisecond.
    #[test]
    fn a_barriers_polls_start_close_and_settle_at_a_millisecond() {
        let mut pause = PollPause::default();
        let pauses: Vec<u128> = (0..8).map(|_| pause.take().as_micros()).collect();
        assert_eq!(pauses, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
        let started = Instant::now();
        let mut slept = PollPause::default();
        slept.sleep();
        assert!(
            started.elapsed() >= PollPause::FIRST,
            "a pause sleeps at least its length"
        );
        assert_eq!(
            slept.take(),
            Duration::from_micros(100),
            "and the next is twice as long"
        );
    }
}
