//! The physical floor of process-order exploration: the same orders the
//! explorer plans for a scenario, run with nothing checked, so `bench
//! --explore` can print how much of an exploration's time is the harness.
//!
//! Per order, what any exploration must pay and nothing more: a fresh IPC
//! namespace (`unshare` of the worker thread, inherited by its children)
//! and a fresh dir holding the scenario's key files; each move's program
//! spawned with its stdin fed and closed and its stdout and stderr drained,
//! then waited for; a key-file event applied as the engine applies it. No
//! PID namespace, confinement, supervision, table reads, model or log.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::explore::{Move, Part};
use crate::impls::Implementation;
use crate::scenario::{Exploration, FileOp, Initial, InitialSegment, KeySpec, ScenarioDir, ScenarioFile};

/// Why the floor could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    #[error("{0}: the process-level floor runs process-level explorations only")]
    Syscall(String),
    #[error("order {order}: {run}: {error}")]
    Trace {
        order: String,
        run: String,
        error: crate::engine::trace::TraceError,
    },
    #[error("{scenario}: {message}")]
    Orders { scenario: String, message: String },
    #[error("the floor runs each order in a new IPC namespace, which this process cannot make: {0}")]
    Namespace(nix::Error),
    #[error("the floor's dir for an order: {0}")]
    Dir(std::io::Error),
    #[error("order {order}: {what}: {error}")]
    Move {
        order: String,
        what: String,
        error: std::io::Error,
    },
    #[error("a floor worker panicked")]
    Panicked,
}

/// One timed pass of the floor over a scenario's orders.
#[derive(Debug, Clone, Copy)]
pub struct FloorRun {
    pub orders: usize,
    pub ms: f64,
}

/// Run the orders `shmconf run` would explore for `sf` (the first
/// `max_orders` of the plan), bare, with `jobs` workers, each program
/// started by posix_spawn(3) (`CLONE_VM | CLONE_VFORK`: nothing of this
/// process copied, as shmconf's `spawn::Launch` starts its programs).
pub fn run(sf: &ScenarioFile, imp: &Implementation, jobs: usize, max_orders: usize) -> Result<FloorRun, FloorError> {
    let crate::scenario::Body::Explore(ex) = &sf.scenario.body else {
        return Err(FloorError::Orders {
            scenario: sf.id.clone(),
            message: "not an exploration".into(),
        });
    };
    if ex.granularity == crate::scenario::Granularity::Syscall {
        return Err(FloorError::Syscall(sf.id.clone()));
    }
    let mut orders = crate::explore::planned_orders(ex).map_err(|e| FloorError::Orders {
        scenario: sf.id.clone(),
        message: e.to_string(),
    })?;
    orders.truncate(max_orders);
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs.max(1))
            .map(|_| {
                s.spawn(|| -> Result<(), FloorError> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(order) = orders.get(i) else {
                            return Ok(());
                        };
                        run_order(sf, ex, imp, order)?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| FloorError::Panicked)?)
    })?;
    Ok(FloorRun {
        orders: orders.len(),
        ms: start.elapsed().as_secs_f64() * 1000.0,
    })
}

/// One order in a fresh IPC namespace and dir.
fn run_order(sf: &ScenarioFile, ex: &Exploration, imp: &Implementation, order: &[Move]) -> Result<(), FloorError> {
    let label = crate::explore::label_order(order);
    let (tmp, dir) = fresh_order_dir(sf, ex, &label)?;
    let failed = |what: String| {
        let order = label.clone();
        move |error| FloorError::Move { order, what, error }
    };
    // Paused writers between their attach and their input.
    let mut waiting: HashMap<&str, Child> = HashMap::new();
    for m in order {
        match m {
            Move::File { name } => {
                let Some(e) = ex.events.iter().find(|e| &e.name == name) else {
                    continue;
                };
                // A refused file operation is a result the explorer judges,
                // not an error of the floor.
                let _ = apply(&dir, &e.op);
            }
            Move::Run { run, part } => {
                let Some(r) = ex.runs.iter().find(|r| &r.name == run) else {
                    continue;
                };
                let role = r.role.role();
                let spawn = || -> std::io::Result<Child> {
                    let argv = imp.command(role);
                    let mut cmd = Command::new(&argv[0]);
                    cmd.args(&argv[1..])
                        .args(crate::explore::run_args(r))
                        .current_dir(tmp.path())
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped());
                    if let Some(env) = imp.env(role) {
                        cmd.envs(env);
                    }
                    cmd.spawn()
                };
                let child = match part {
                    Part::Attach => {
                        let child = spawn().map_err(failed(format!("start {run}")))?;
                        waiting.insert(run.as_str(), child);
                        continue;
                    }
                    Part::Whole => spawn().map_err(failed(format!("start {run}")))?,
                    Part::Input => match waiting.remove(run.as_str()) {
                        Some(child) => child,
                        None => continue,
                    },
                };
                finish(child, &r.stdin).map_err(failed(format!("run {run}")))?;
            }
        }
    }
    for (run, child) in waiting {
        finish(child, b"").map_err(failed(format!("run {run}")))?;
    }
    Ok(())
}

/// What every order of a floor starts from: this thread in a new IPC
/// namespace (the previous order's goes with its last process), and a new
/// dir holding the scenario's files and the exploration's initial state
/// (removed when the `TempDir` is dropped; the `ScenarioDir` is its handle).
pub(super) fn fresh_order_dir(
    sf: &ScenarioFile,
    ex: &Exploration,
    label: &str,
) -> Result<(tempfile::TempDir, ScenarioDir), FloorError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC).map_err(FloorError::Namespace)?;
    let tmp = crate::rundir::scenario_dir("floor-").map_err(FloorError::Dir)?;
    let dir = ScenarioDir::open(tmp.path()).map_err(FloorError::Dir)?;
    let failed = |what: String| {
        let order = label.to_string();
        move |error| FloorError::Move { order, what, error }
    };
    for f in &sf.scenario.files {
        dir.create(f).map_err(failed(format!("create {f}")))?;
    }
    for item in &ex.initial {
        match item {
            Initial::File(op) => {
                apply(&dir, op).map_err(failed(format!("initial {}", op.describe().1)))?;
            }
            Initial::Segment(seg) => {
                make_segment(tmp.path(), seg).map_err(failed(format!("initial segment {}", seg.key)))?;
            }
        }
    }
    Ok((tmp, dir))
}

fn apply(dir: &ScenarioDir, op: &FileOp) -> std::io::Result<()> {
    match op {
        FileOp::Create(f) => dir.create(f),
        FileOp::Remove(f) => dir.remove(f),
        FileOp::Recreate(f) => dir.recreate(f),
        FileOp::Link { from, to } => dir.link(from, to),
    }
}

/// An initial segment as the explorer's probes make it (exclusive, 0600,
/// content, then its mode), by this thread's own calls.
fn make_segment(dir: &std::path::Path, seg: &InitialSegment) -> std::io::Result<()> {
    use shmconf::sysv::{Create, Key, ReadWrite, Segment};
    let io = |e: shmconf::sysv::Error| std::io::Error::from_raw_os_error(e.errno as i32);
    let key = match &seg.key {
        KeySpec::Ftok { file, proj_id } => Key::ftok(&dir.join(file.as_str()), *proj_id)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno as i32))?,
        KeySpec::Raw(v) => Key::from_raw(*v),
        KeySpec::Private => return Err(std::io::ErrorKind::InvalidInput.into()),
    };
    let made = Segment::get(key, seg.size, Create::Exclusive, 0o600).map_err(io)?;
    if !seg.content.is_empty() {
        let at = made.attach::<ReadWrite>().map_err(io)?;
        let mut bytes = seg.content.as_bytes().to_vec();
        bytes.push(0);
        at.write_at(0, &bytes)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    }
    if seg.mode != 0o600 {
        made.set(nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw(), seg.mode)
            .map_err(io)?;
    }
    Ok(())
}

/// Feed a program its input, close it, drain its output and wait for it.
fn finish(mut child: Child, stdin: &[u8]) -> std::io::Result<()> {
    if let Some(mut input) = child.stdin.take() {
        // A program that exits without reading its input is not an error.
        let _ = input.write_all(stdin);
    }
    child.wait_with_output().map(|_| ())
}
