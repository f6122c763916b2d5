//! The physical floor of system-call exploration: the same orders the
//! explorer executed, as the choices each played ("let run R go to its next
//! point", "feed run R its next piece of input"), played again with
//! nothing judged, so `bench --explore` can print how much of a
//! system-call exploration's time is the harness.
//!
//! Per order, what any system-call exploration must pay and nothing more:
//! a fresh IPC namespace and dir (as the process-level floor's,
//! [`super::explore_floor::fresh_order_dir`]), every run started traced
//! (the same seccomp stops, `spawn::Launch::trace_at_ipc_calls`) with its
//! input fed whole or in the pieces the choices say, each choice played by
//! the same tracer (`engine::trace::Tracee::step`), and what an order
//! stopped early leaves running killed. No PID namespace, confinement,
//! table or content reads, model, sleep sets or log.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use shmconf::sysv::spawn::Launch;

use super::explore_floor::{FloorError, FloorRun};
use crate::engine::trace::Tracee;
use crate::events::Choice;
use crate::impls::Implementation;
use crate::scenario::{Exploration, ScenarioFile};

/// A traced step that takes longer is the floor's failure (a program that
/// hangs), not a measurement.
const STEP_LIMIT: Duration = Duration::from_secs(10);

/// Play `schedules` (from `explore::executed_schedules`) one after another
/// in a thread of their own, as the explorer executes them.
pub fn run(
    sf: &ScenarioFile,
    ex: &Exploration,
    imp: &Implementation,
    schedules: &[Vec<Choice>],
) -> Result<FloorRun, FloorError> {
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| schedules.iter().try_for_each(|schedule| play(sf, ex, imp, schedule)))
            .join()
            .map_err(|_| FloorError::Panicked)?
    })?;
    Ok(FloorRun {
        orders: schedules.len(),
        ms: start.elapsed().as_secs_f64() * 1000.0,
    })
}

/// One started run: its tracer, its input's end while pieces are left to
/// feed, and its output's ends (kept open, so it never writes to a pipe
/// without a reader; what it prints fits in the pipe).
struct Traced {
    tracee: Tracee,
    stdin: Option<std::fs::File>,
    fed: usize,
    _output: [OwnedFd; 2],
}

/// One order: every run started traced, then the choices played.
fn play(sf: &ScenarioFile, ex: &Exploration, imp: &Implementation, schedule: &[Choice]) -> Result<(), FloorError> {
    let label = schedule.iter().map(Choice::label).collect::<Vec<_>>().join(",");
    let (tmp, _dir) = super::explore_floor::fresh_order_dir(sf, ex, &label)?;
    let failed = |what: String| {
        let order = label.clone();
        move |error| FloorError::Move { order, what, error }
    };
    let mut runs: BTreeMap<&str, Traced> = BTreeMap::new();
    let played = (|| {
        for r in &ex.runs {
            let role = r.role.role();
            let argv = imp.command(role);
            let mut launch = Launch::new(&argv[0]);
            launch
                .args(&argv[1..])
                .args(crate::explore::run_args(r))
                .current_dir(tmp.path())
                .trace_at_ipc_calls()
                .die_with_parent();
            if let Some(env) = imp.env(role) {
                launch.envs(env);
            }
            let child = launch
                .spawn()
                .map_err(|e| failed(format!("start {}", r.name))(e.into()))?;
            let mut stdin = std::fs::File::from(child.stdin);
            // Input in pieces is fed by the choices; a single piece at once.
            let stdin = if r.pieces.len() > 1 {
                Some(stdin)
            } else {
                // A program that exits without reading its input is no error.
                let _ = stdin.write_all(&r.stdin);
                None
            };
            runs.insert(
                &r.name,
                Traced {
                    tracee: Tracee::new(child.pid),
                    stdin,
                    fed: 0,
                    _output: [child.stdout, child.stderr],
                },
            );
        }
        for choice in schedule {
            match choice {
                Choice::Step(run) => {
                    let Some(t) = runs.get_mut(run.as_str()) else { continue };
                    let deadline = Instant::now() + STEP_LIMIT;
                    t.tracee.step(&|| deadline).map_err(|error| FloorError::Trace {
                        order: label.clone(),
                        run: run.clone(),
                        error,
                    })?;
                }
                Choice::Feed(run) => {
                    let Some(t) = runs.get_mut(run.as_str()) else { continue };
                    let Some(r) = ex.runs.iter().find(|r| &r.name == run) else {
                        continue;
                    };
                    if let (Some(stdin), Some(piece)) = (&mut t.stdin, r.pieces.get(t.fed)) {
                        let _ = stdin.write_all(piece);
                    }
                    t.fed += 1;
                    if t.fed >= r.pieces.len() {
                        t.stdin = None;
                    }
                }
            }
        }
        Ok(())
    })();
    // An order stopped early leaves its runs where they are: killed here
    // (nothing for one that ended), and every task of each run's group
    // reaped, an ended leader's zombie included.
    for t in runs.values() {
        let _ = killpg(t.tracee.leader(), Signal::SIGKILL);
        crate::engine::procs::reap_traced_group(t.tracee.leader().as_raw(), Instant::now() + STEP_LIMIT);
    }
    played
}
