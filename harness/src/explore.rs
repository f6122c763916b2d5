//! Order exploration: every order (or a sample) of a scenario's runs is
//! turned into engine steps (with an observation of the kernel after each
//! event) and executed by the same engine as any scenario: fresh namespaces
//! from the backend, the same supervision, limits and event log. Each order's
//! log is then judged against the reference model ([`crate::model`]): the
//! segment table (key, size, nattch, SHM_DEST, content) after every event
//! and, at the end, each process's stdout and exit code. A failing order is
//! shrunk (runs and events dropped while it still fails, within the
//! scenario's limit) and reported with a one-line replay command.
//!
//! Both granularities run through one loop ([`driver`]): the orders
//! planned here and the orders DPOR picks ([`syscall`]) are two
//! strategies it drives under the same budget, clock and verdict rules.

use std::collections::BTreeMap;

use crate::engine::Engine;
use crate::events::{escape, escape_short, Ending, EventKind, Log};
use crate::impls::Origin;
use crate::outcome::{Check, Failure, Status};

mod driver;
mod syscall;
use crate::model::{Change, FileId, Model, RunSpec};
use crate::outcome::ScenarioResult;
use crate::scenario::{
    Action, Background, EndingExpect, Expect, Exploration, ExploreRun, FileOp, Granularity, Initial, InitialSegment,
    KeySpec, Orders, PairRole, Program, Role, ScenarioFile, Spawn, Step, WaitFor, MAIN_NS,
};
pub use driver::MAX_FAILING_ORDERS;
use driver::{Driven, End, Exploring, Strategy, Unjudged, Verdictless};
pub use syscall::executed_schedules;

/// One orderable event of an exploration, by label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// `w1` (a whole run), `w1:attach`, `w1:input`.
    Run { run: String, part: Part },
    /// A key-file event, by its name.
    File { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Whole,
    Attach,
    Input,
}

impl Move {
    pub fn label(&self) -> String {
        match self {
            Move::Run { run, part: Part::Whole } => run.clone(),
            Move::Run {
                run,
                part: Part::Attach,
            } => format!("{run}:attach"),
            Move::Run { run, part: Part::Input } => format!("{run}:input"),
            Move::File { name } => name.clone(),
        }
    }

    fn owner(&self) -> &str {
        match self {
            Move::Run { run, .. } => run,
            Move::File { name } => name,
        }
    }
}

pub fn label_order(order: &[Move]) -> String {
    order.iter().map(Move::label).collect::<Vec<_>>().join(",")
}

/// Each run's (or event's) own sequence of steps.
fn queues(ex: &Exploration) -> Vec<Vec<Move>> {
    let mut q: Vec<Vec<Move>> = ex
        .runs
        .iter()
        .map(|r| {
            if r.role == PairRole::Writer && r.pause {
                vec![
                    Move::Run {
                        run: r.name.clone(),
                        part: Part::Attach,
                    },
                    Move::Run {
                        run: r.name.clone(),
                        part: Part::Input,
                    },
                ]
            } else {
                vec![Move::Run {
                    run: r.name.clone(),
                    part: Part::Whole,
                }]
            }
        })
        .collect();
    q.extend(ex.events.iter().map(|e| vec![Move::File { name: e.name.clone() }]));
    q
}

/// Most orders `orders = "all"` may expand to.
pub const MAX_ORDERS: usize = 50_000;

/// Why an exploration's orders cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("more than {MAX_ORDERS} orders: use orders = {{ sample = N, seed = S }}")]
    TooMany,
    #[error("--order: unknown event {label:?}; this scenario's events are {}", .known.join(", "))]
    UnknownEvent { label: String, known: Vec<String> },
    /// A run's or event's moves named in part, or out of their order.
    #[error("--order: {} must all appear, in order", .queue.join(" then "))]
    Incomplete { queue: Vec<String> },
}

/// Every interleaving of the queues that keeps each queue's own order.
pub fn all_orders(queues: &[Vec<Move>]) -> Result<Vec<Vec<Move>>, OrderError> {
    fn go(qs: &mut [std::collections::VecDeque<Move>], cur: &mut Vec<Move>, out: &mut Vec<Vec<Move>>) -> bool {
        if qs.iter().all(|q| q.is_empty()) {
            out.push(cur.clone());
            return out.len() <= MAX_ORDERS;
        }
        for i in 0..qs.len() {
            if let Some(s) = qs[i].pop_front() {
                cur.push(s.clone());
                let ok = go(qs, cur, out);
                cur.pop();
                qs[i].push_front(s);
                if !ok {
                    return false;
                }
            }
        }
        true
    }
    let mut qs: Vec<_> = queues.iter().map(|q| q.iter().cloned().collect()).collect();
    let mut out = Vec::new();
    if !go(&mut qs, &mut Vec::new(), &mut out) {
        return Err(OrderError::TooMany);
    }
    Ok(out)
}

/// The orders an exploration plans, before its budget: every interleaving
/// of its runs' and events' queues, or the seeded sample it asks for.
pub fn planned_orders(ex: &Exploration) -> Result<Vec<Vec<Move>>, OrderError> {
    match &ex.orders {
        Orders::All => all_orders(&queues(ex)),
        Orders::Sample { n, seed } => Ok(sample_orders(&queues(ex), *n, *seed)),
    }
}

/// `n` distinct random interleavings from a seeded generator (deterministic).
pub fn sample_orders(queues: &[Vec<Move>], n: usize, seed: u64) -> Vec<Vec<Move>> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for _ in 0..n.saturating_mul(20) {
        if out.len() == n || crate::interrupt::interrupted() {
            break;
        }
        let mut qs: Vec<std::collections::VecDeque<Move>> =
            queues.iter().map(|q| q.iter().cloned().collect()).collect();
        let mut order = Vec::new();
        while qs.iter().any(|q| !q.is_empty()) {
            let live: Vec<usize> = (0..qs.len()).filter(|&i| !qs[i].is_empty()).collect();
            let pick = live[(next() % live.len() as u64) as usize];
            order.push(qs[pick].pop_front().unwrap());
        }
        if seen.insert(label_order(&order)) {
            out.push(order);
        }
    }
    out
}

/// Parse `--order "w1:attach,r1,w1:input"` against the scenario's steps.
/// Runs and events it does not mention are left out (as shrinking does).
pub fn parse_order(ex: &Exploration, text: &str) -> Result<Vec<Move>, OrderError> {
    let known: Vec<Move> = queues(ex).into_iter().flatten().collect();
    let order: Vec<Move> = text
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            known
                .iter()
                .find(|s| s.label() == l)
                .cloned()
                .ok_or_else(|| OrderError::UnknownEvent {
                    label: l.into(),
                    known: known.iter().map(Move::label).collect(),
                })
        })
        .collect::<Result<_, _>>()?;
    for q in queues(ex) {
        let positions: Vec<usize> = q.iter().filter_map(|s| order.iter().position(|o| o == s)).collect();
        if !positions.is_empty() && (positions.len() != q.len() || positions.windows(2).any(|w| w[0] > w[1])) {
            return Err(OrderError::Incomplete {
                queue: q.iter().map(Move::label).collect(),
            });
        }
    }
    Ok(order)
}

/// What one order did that the model did not predict.
#[derive(Debug, Clone)]
pub struct OrderOutcome {
    pub order: Vec<Move>,
    /// What disagreed, typed (deviations pin these) and in words.
    pub problems: Vec<Failure>,
    /// A setup or harness error, not a disagreement.
    pub broken: Option<String>,
    /// Stopped by a signal to the harness: no verdict.
    pub interrupted: bool,
    /// Cut off by the exploration's overall limit: not finished, no verdict.
    pub cut: bool,
    pub log: Log,
}

impl OrderOutcome {
    fn failed(&self) -> bool {
        !self.problems.is_empty() && self.broken.is_none() && !self.interrupted && !self.cut
    }
}

fn run_spec(r: &ExploreRun) -> RunSpec {
    RunSpec {
        name: r.name.clone(),
        role: r.role,
        key_file: r.key_file.as_str().to_string(),
        proj_id: r.proj_id,
        size: 1024,
        stdin: r.stdin.clone(),
        pause: r.pause,
        keep: r.keep,
    }
}

/// The words a run's program gets after its command: the contract's
/// options, only where the run differs from the defaults.
pub fn run_args(r: &ExploreRun) -> Vec<String> {
    let mut args = Vec::new();
    if r.key_file.as_str() != "shmfile" {
        args.extend(["--key-file".to_string(), r.key_file.as_str().to_string()]);
    }
    if r.proj_id != 65 {
        args.extend(["--proj-id".to_string(), r.proj_id.to_string()]);
    }
    if r.keep {
        args.push("--keep".into());
    }
    args
}

/// A run's process as an engine step.
fn spawn_of(r: &ExploreRun, background: Option<Background>, stdin: Vec<u8>, traced: bool) -> Action {
    Action::Spawn(Spawn {
        keep: crate::scenario::KeptCapabilities::default(),
        traced,
        name: r.name.clone(),
        program: Program::Role(r.role.role()),
        args: run_args(r)
            .into_iter()
            .map(|a| crate::scenario::Arg(vec![crate::scenario::ArgPart::Text(a)]))
            .collect(),
        stdin,
        env: BTreeMap::new(),
        uid: None,
        gid: None,
        background,
        expect: any_end(),
    })
}

/// The probes that make an exploration's initial state are named
/// `initial:ITEM.WHAT` for the log: a `:` keeps them apart from every
/// run's name (the judges find them by step number).
const INITIAL_PREFIX: &str = "initial:";

/// The engine actions that make the initial state, in order, before any
/// run starts: each segment by `shmconf probe` (created exclusive with
/// mode 0600, its content written, then its mode set, so that a mode
/// without write still gets its content), each key-file operation as a
/// file step. Each action comes with the index of its item.
pub fn initial_actions(ex: &Exploration) -> Vec<(usize, Action)> {
    let mut out = Vec::new();
    for (i, item) in ex.initial.iter().enumerate() {
        match item {
            Initial::File(op) => out.push((i, Action::File(op.clone()))),
            Initial::Segment(seg) => {
                let key: Vec<String> = match &seg.key {
                    KeySpec::Ftok { file, proj_id } => vec!["--ftok".into(), format!("{file}:{proj_id}")],
                    KeySpec::Raw(v) => vec!["--key".into(), format!("0x{:08x}", *v as u32)],
                    // Refused at load: no run could find it.
                    KeySpec::Private => continue,
                };
                let probe = |what: &str, words: Vec<String>| {
                    Action::Spawn(Spawn {
                        keep: crate::scenario::KeptCapabilities::default(),
                        traced: false,
                        name: format!("{INITIAL_PREFIX}{}.{what}", i + 1),
                        program: Program::Role(Role::Probe),
                        args: words
                            .into_iter()
                            .chain(key.iter().cloned())
                            .map(|a| crate::scenario::Arg(vec![crate::scenario::ArgPart::Text(a)]))
                            .collect(),
                        stdin: Vec::new(),
                        env: BTreeMap::new(),
                        uid: None,
                        gid: None,
                        background: None,
                        expect: any_end(),
                    })
                };
                let get = [
                    "get",
                    "--create",
                    "--exclusive",
                    "--size",
                    &seg.size.to_string(),
                    "--mode",
                    "600",
                ];
                out.push((i, probe("get", get.map(String::from).to_vec())));
                if !seg.content.is_empty() {
                    out.push((
                        i,
                        probe("write", vec!["attach".into(), "--write".into(), seg.content.clone()]),
                    ));
                }
                if seg.mode != 0o600 {
                    out.push((
                        i,
                        probe("mode", vec!["set".into(), "--mode".into(), format!("{:o}", seg.mode)]),
                    ));
                }
            }
        }
    }
    out
}

/// Why the initial state could not be made in this log, if it could not:
/// a probe of [`initial_actions`] (the only processes of those steps) that
/// did not exit 0, or a file step that failed. That is a BROKEN set-up, never a verdict on the implementation.
pub fn initial_failure(log: &Log, initial_steps: usize) -> Option<String> {
    let initial = log.events.iter().filter(|e| e.step.is_some_and(|n| n <= initial_steps));
    initial
        .clone()
        .find_map(|e| match &e.kind {
            EventKind::File {
                op,
                path,
                error: Some(error),
                ..
            } => Some(format!("the initial state could not be made: {op} {path}: {error}")),
            _ => None,
        })
        .or_else(|| {
            initial.clone().find_map(|e| match &e.kind {
                EventKind::Exit {
                    proc,
                    ending,
                    stdout,
                    stderr,
                    ..
                } if *ending != (Ending::Exited { code: 0 }) => {
                    let said = |t: &crate::events::Text| {
                        String::from_utf8_lossy(&t.bytes)
                            .trim()
                            .chars()
                            .take(300)
                            .collect::<String>()
                    };
                    let words: Vec<String> = [said(stdout), said(stderr)]
                        .into_iter()
                        .filter(|w| !w.is_empty())
                        .collect();
                    Some(format!(
                        "the initial state could not be made: {proc} ended with {ending}: {}",
                        words.join(" / ")
                    ))
                }
                _ => None,
            })
        })
}

/// The initial segment made at engine step `n` (1-based): the item whose
/// first action (its exclusive shmget) that step is. By step number, the
/// order `initial_actions` gave them, not by a process's name.
fn initial_segment_at<'a>(ex: &'a Exploration, actions: &[(usize, Action)], n: usize) -> Option<&'a InitialSegment> {
    let (item, _) = actions.get(n.checked_sub(1)?)?;
    let first_of_item = n == 1 || actions.get(n - 2).map_or(true, |(before, _)| before != item);
    match ex.initial.get(*item)? {
        Initial::Segment(seg) if first_of_item => Some(seg),
        _ => None,
    }
}

/// Exploration processes are judged by the model, not by the step.
fn any_end() -> Expect {
    Expect {
        ending: EndingExpect::Any,
        ..Expect::default()
    }
}

/// The engine steps of one order: each move's actions, then an observation
/// of the kernel. Returns the steps and, per move, (its first step, its
/// observation step).
pub fn order_steps(ex: &Exploration, order: &[Move]) -> (Vec<Step>, Vec<(usize, usize)>) {
    let mut steps = Vec::new();
    let mut spans = Vec::new();
    let push = |steps: &mut Vec<Step>, action: Action| {
        let n = steps.len() + 1;
        steps.push(Step {
            n,
            ns: MAIN_NS.into(),
            timeout: None,
            action,
        });
        n
    };
    for (_, action) in initial_actions(ex) {
        push(&mut steps, action);
    }
    for m in order {
        let first = steps.len() + 1;
        match m {
            Move::File { name } => {
                if let Some(e) = ex.events.iter().find(|e| &e.name == name) {
                    push(&mut steps, Action::File(e.op.clone()));
                }
            }
            Move::Run { run, part } => {
                let Some(r) = ex.runs.iter().find(|r| &r.name == run) else {
                    continue;
                };
                match part {
                    Part::Whole => {
                        push(&mut steps, spawn_of(r, None, r.stdin.clone(), false));
                    }
                    Part::Attach => {
                        push(
                            &mut steps,
                            spawn_of(r, Some(Background { close_stdin: false }), Vec::new(), false),
                        );
                        push(
                            &mut steps,
                            Action::Wait {
                                proc: r.name.clone(),
                                until: WaitFor::ReadingStdin,
                            },
                        );
                    }
                    Part::Input => {
                        push(
                            &mut steps,
                            Action::Feed {
                                proc: r.name.clone(),
                                data: r.stdin.clone(),
                                close: true,
                            },
                        );
                        push(
                            &mut steps,
                            Action::Wait {
                                proc: r.name.clone(),
                                until: WaitFor::Exit(any_end()),
                            },
                        );
                    }
                }
            }
        }
        let observe = push(&mut steps, Action::Observe);
        spans.push((first, observe));
    }
    (steps, spans)
}

/// A segment as compared: what both the model and the kernel can say.
type SegView = (String, u64, u64, bool, String);

fn model_view(m: &Model) -> Vec<SegView> {
    let mut v: Vec<SegView> = m
        .segs
        .iter()
        .map(|s| {
            (
                format!("0x{:08x}", s.key as u32),
                s.size as u64,
                s.nattch as u64,
                s.dest,
                escape(&s.text()),
            )
        })
        .collect();
    v.sort();
    v
}

fn show(v: &[SegView]) -> String {
    if v.is_empty() {
        return "no segments".into();
    }
    v.iter()
        .map(|(k, size, nattch, dest, text)| {
            format!(
                "{{key {k} size {size} nattch {nattch}{} \"{text}\"}}",
                if *dest { " DEST" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Each process's stdout, stderr and ending, by name, as the log gave them.
type Outputs = BTreeMap<String, (Vec<u8>, Vec<u8>, Ending)>;

/// Judge one order's log against the model.
pub fn judge(ex: &Exploration, order: &[Move], spans: &[(usize, usize)], log: Log) -> OrderOutcome {
    let mut out = OrderOutcome {
        order: order.to_vec(),
        problems: vec![],
        broken: None,
        interrupted: false,
        cut: false,
        log: Log::default(),
    };
    note_broken_and_interrupted(&log, &mut out);
    let runs: Vec<RunSpec> = ex
        .runs
        .iter()
        .filter(|r| order.iter().any(|m| m.owner() == r.name))
        .map(run_spec)
        .collect();
    let mut model = Model::new(&runs);
    apply_setup(ex, spans, &log, &mut model, &mut out);
    let outputs = judge_moves(ex, order, spans, &log, &mut model, &mut out);
    // An order cut off by the exploration's limit has no endings to judge.
    if !out.cut {
        judge_endings(&runs, &model, &outputs, &mut out);
    }
    out.log = log;
    out
}

/// A harness error or an interruption anywhere in the log: the order gets
/// no verdict (the first error is the one told).
fn note_broken_and_interrupted(log: &Log, out: &mut OrderOutcome) {
    for e in &log.events {
        match &e.kind {
            EventKind::Broken { message } => {
                out.broken.get_or_insert_with(|| message.clone());
            }
            EventKind::Interrupted { .. } => out.interrupted = true,
            _ => {}
        }
    }
}

/// Bring the model to where the first move starts: the key files made at
/// setup (file events outside a step) and the initial state (the steps
/// before the first move's), in order, with the identities the engine
/// recorded. An initial state that could not be made is BROKEN.
fn apply_setup(ex: &Exploration, spans: &[(usize, usize)], log: &Log, model: &mut Model, out: &mut OrderOutcome) {
    let first_move = spans.first().map_or(usize::MAX, |s| s.0);
    let initial = initial_actions(ex);
    if let Some(why) = initial_failure(log, first_move - 1) {
        out.broken.get_or_insert(why);
    }
    for e in log.events.iter().filter(|e| e.step.map_or(true, |n| n < first_move)) {
        let change = match &e.kind {
            EventKind::File {
                op,
                path,
                identity: Some((dev, ino)),
                ..
            } if op != "remove" => Change::File(path.clone(), FileId { dev: *dev, ino: *ino }),
            EventKind::File { op, path, .. } if op == "remove" => Change::RemoveFile(path.clone()),
            EventKind::Exit { ending, .. } if *ending == (Ending::Exited { code: 0 }) => {
                match e.step.and_then(|n| initial_segment_at(ex, &initial, n)) {
                    Some(seg) => Change::Seed(seg.clone()),
                    None => continue,
                }
            }
            _ => continue,
        };
        if let Err(e) = model.apply(&change) {
            out.broken.get_or_insert_with(|| format!("model: {}", e.0));
        }
    }
}

/// Play the order's moves on the model one by one, holding the kernel's
/// segment table after each against the model's; stop at the first move
/// that goes wrong (later tables follow from it). Returns what each
/// process printed and how it ended, for [`judge_endings`].
fn judge_moves(
    ex: &Exploration,
    order: &[Move],
    spans: &[(usize, usize)],
    log: &Log,
    model: &mut Model,
    out: &mut OrderOutcome,
) -> Outputs {
    let mut outputs = Outputs::new();
    for (i, (m, &(first, observe))) in order.iter().zip(spans).enumerate() {
        let events: Vec<&EventKind> = log
            .events
            .iter()
            .filter(|e| e.step.is_some_and(|n| n >= first && n <= observe))
            .map(|e| &e.kind)
            .collect();
        if events.is_empty() {
            if out.broken.is_none() && !out.interrupted {
                // The order could not be played to its end as the model plays it.
                out.problems.push(Failure::of_exploration(
                    Check::Model,
                    format!("after {}: the order stopped here (see the log)", m.label()),
                ));
            }
            break;
        }
        if note_exits_and_timeouts(&events, &mut outputs, out) {
            break;
        }
        let Some(change) = move_change(ex, m, &events, out) else {
            break;
        };
        if let Err(e) = model.apply(&change) {
            out.broken.get_or_insert_with(|| format!("model: {}", e.0));
            break;
        }
        let Some((rows, contents)) = events.iter().find_map(|e| match e {
            EventKind::Snapshot { rows, contents, .. } => Some((rows, contents)),
            _ => None,
        }) else {
            break;
        };
        let kernel = kernel_view(rows, contents);
        let expected = model_view(model);
        if kernel != expected {
            out.problems.push(Failure::of_exploration(
                Check::Model,
                format!(
                    "after {} (event {} of {}): the model expects {}, the kernel has {}",
                    m.label(),
                    i + 1,
                    order.len(),
                    show(&expected),
                    show(&kernel)
                ),
            ));
            break; // later tables follow from this difference
        }
    }
    outputs
}

/// Take in one move's exits (their output, and a death by a signal as a
/// problem) and timeouts. Returns whether a timeout ended the move.
fn note_exits_and_timeouts(events: &[&EventKind], outputs: &mut Outputs, out: &mut OrderOutcome) -> bool {
    let mut timed_out = false;
    for e in events {
        match e {
            EventKind::Exit {
                proc,
                ending,
                stdout,
                stderr,
                ..
            } => {
                if let Ending::Signaled { signal } = ending {
                    out.problems.push(Failure::of_exploration(
                        Check::Signal,
                        format!("{proc} was killed by {signal}"),
                    ));
                }
                outputs.insert(
                    proc.clone(),
                    (stdout.bytes.clone(), stderr.bytes.clone(), ending.clone()),
                );
            }
            // The exploration's own limit ran out during this order: it
            // is unfinished, which says nothing about the implementation.
            EventKind::Timeout {
                limit: crate::events::WhichLimit::Scenario,
                ..
            } => {
                out.cut = true;
                timed_out = true;
            }
            EventKind::Timeout {
                proc,
                limit_ms,
                cpu_wait_ms,
                waiting_for,
                ..
            } if crate::events::machine_too_busy(*cpu_wait_ms, *limit_ms) => {
                out.broken.get_or_insert_with(|| {
                    format!(
                        "{proc} did not finish within {limit_ms} ms{} waiting for {waiting_for}",
                        crate::events::cpu_wait_text(*cpu_wait_ms, *limit_ms)
                    )
                });
                timed_out = true;
            }
            EventKind::Timeout {
                proc,
                limit_ms,
                cpu_wait_ms,
                waiting_for,
                ..
            } => {
                out.problems.push(Failure::of_exploration(
                    Check::Timeout,
                    format!(
                        "{proc} did not finish within {limit_ms} ms{} waiting for {waiting_for} (killed with \
                         its group)",
                        crate::events::cpu_wait_text(*cpu_wait_ms, *limit_ms)
                    ),
                ));
                timed_out = true;
            }
            _ => {}
        }
    }
    timed_out
}

/// The model's change for one move. A key-file move takes the identity
/// its file got from the move's events; None (the order stops there) when
/// the event is unknown or its file operation failed (BROKEN).
fn move_change(ex: &Exploration, m: &Move, events: &[&EventKind], out: &mut OrderOutcome) -> Option<Change> {
    let change = match m {
        Move::File { name } => {
            let fe = ex.events.iter().find(|e| &e.name == name)?;
            match &fe.op {
                FileOp::Remove(f) => Change::RemoveFile(f.as_str().to_string()),
                FileOp::Create(f) | FileOp::Recreate(f) | FileOp::Link { to: f, .. } => {
                    let id = events.iter().find_map(|e| match e {
                        EventKind::File {
                            identity: Some((dev, ino)),
                            ..
                        } => Some(FileId { dev: *dev, ino: *ino }),
                        _ => None,
                    });
                    match id {
                        Some(id) => Change::File(f.as_str().to_string(), id),
                        None => {
                            out.broken
                                .get_or_insert_with(|| format!("{}: the file operation failed", m.label()));
                            return None;
                        }
                    }
                }
            }
        }
        Move::Run { run, part: Part::Whole } => Change::Run(run.clone()),
        Move::Run {
            run,
            part: Part::Attach,
        } => Change::Attach(run.clone()),
        Move::Run { run, part: Part::Input } => Change::Input(run.clone()),
    };
    Some(change)
}

/// The kernel's segment table as compared with the model's: each segment's
/// content up to its first NUL, escaped.
fn kernel_view(rows: &[crate::events::SegRow], contents: &BTreeMap<i32, crate::events::Text>) -> Vec<SegView> {
    let mut kernel: Vec<SegView> = rows
        .iter()
        .map(|r| {
            let bytes = contents.get(&r.shmid).map(|t| t.bytes.clone()).unwrap_or_default();
            let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
            (
                r.key.clone(),
                r.size,
                r.nattch,
                r.raw_mode & shmconf::sysv::SHM_DEST != 0,
                escape(text),
            )
        })
        .collect();
    kernel.sort();
    kernel
}

/// Hold each run's stdout and ending against what the model says it ends
/// with. Runs the order did not finish (no exit logged) are left out.
fn judge_endings(runs: &[RunSpec], model: &Model, outputs: &Outputs, out: &mut OrderOutcome) {
    for run in runs {
        let (Some(want), Some((stdout, stderr, ending))) = (model.end_of(&run.name), outputs.get(&run.name)) else {
            continue;
        };
        if want.exit != crate::model::exit::OK {
            if let Some(problem) = unclear_error(&run.name, want.exit, stderr, ending) {
                out.problems.push(problem);
            }
            continue;
        }
        if &want.stdout != stdout {
            out.problems.push(Failure::of_exploration(
                Check::Ending,
                format!(
                    "{}: stdout: the model expects {}, it printed {}",
                    run.name,
                    escape_short(&want.stdout, 120),
                    escape_short(stdout, 120)
                ),
            ));
        }
        if *ending != (Ending::Exited { code: want.exit }) {
            out.problems.push(Failure::of_exploration(
                Check::Ending,
                format!(
                    "{}: the model expects exit code {}, it ended with {ending}",
                    run.name, want.exit
                ),
            ));
        }
    }
}

/// Where the model says a run fails, the contract asks for a clear error,
/// in the implementation's own words and exit code: any nonzero exit that
/// says why on stderr (our exit codes and what we print before failing
/// are our implementation's habits). The problem, if the run gave none.
fn unclear_error(name: &str, model_exit: i32, stderr: &[u8], ending: &Ending) -> Option<Failure> {
    let clear = matches!(ending, Ending::Exited { code } if *code != 0) && !stderr.is_empty();
    (!clear).then(|| {
        Failure::of_exploration(
            Check::Ending,
            format!(
                "{name}: the model expects a clear error (a nonzero exit saying why on stderr; ours exits \
                 {model_exit}), it ended with {ending}{}",
                if stderr.is_empty() {
                    " and nothing on stderr"
                } else {
                    ""
                }
            ),
        )
    })
}

/// Execute one order through the engine and judge it.
fn run_order(x: &Exploring, ex: &Exploration, order: &[Move]) -> OrderOutcome {
    let (steps, spans) = order_steps(ex, order);
    let log = x.execute(&steps);
    judge(ex, order, &spans, log)
}

/// Whole-run orders, planned (every order or a sample) or the one
/// replayed, in their order: the strategy of process-level exploration.
struct PlannedOrders<'e, 'x> {
    x: &'e Exploring<'x>,
    ex: &'e Exploration,
    /// Not yet handed to the driver.
    orders: std::vec::IntoIter<Vec<Move>>,
    /// The judged orders that disagree with the model, in order.
    failed: Vec<OrderOutcome>,
}

impl Strategy for PlannedOrders<'_, '_> {
    type Order = Vec<Move>;
    type Judged = OrderOutcome;

    fn has_more(&self) -> bool {
        self.orders.len() > 0
    }

    fn next_orders(&mut self, most: usize) -> Vec<Vec<Move>> {
        self.orders.by_ref().take(most).collect()
    }

    fn execute(&self, order: &Vec<Move>) -> Result<OrderOutcome, Unjudged> {
        let mut o = run_order(self.x, self.ex, order);
        let why = if o.interrupted {
            Verdictless::Interrupted
        } else if let Some(b) = o.broken.take() {
            Verdictless::Broken(b)
        } else if o.cut {
            Verdictless::Cut
        } else {
            return Ok(o);
        };
        Err(Box::new((why, o.log)))
    }

    fn failed(o: &OrderOutcome) -> bool {
        o.failed()
    }

    fn take(&mut self, _: Vec<Move>, o: OrderOutcome) {
        if o.failed() {
            self.failed.push(o);
        }
    }

    fn label(order: &Vec<Move>) -> String {
        label_order(order)
    }
}

/// Run the exploration of one scenario file.
pub fn run(sf: &ScenarioFile, ex: &Exploration, engine: &Engine, jobs: usize, replay: Option<&str>) -> ScenarioResult {
    if ex.granularity == Granularity::Syscall {
        return syscall::run(sf, ex, engine, replay);
    }
    let x = Exploring::new(sf, engine);
    let orders = match replay {
        Some(text) => parse_order(ex, text).map(|o| vec![o]),
        None => planned_orders(ex),
    };
    let orders = match orders {
        Ok(o) => o,
        Err(e) => return x.result(Status::Broken, e.to_string(), vec![], None),
    };
    let planned = orders.len();
    let mut strategy = PlannedOrders {
        x: &x,
        ex,
        orders: orders.into_iter(),
        failed: vec![],
    };
    let driven = match x.drive(&mut strategy, jobs) {
        Ok(d) => d,
        Err(unjudged) => return *unjudged,
    };
    // The budget is a count: the first orders, the same on any machine.
    let to_run = planned.min(engine.limits.max_orders);
    if strategy.failed.is_empty() {
        return agreeing_result(&x, to_run, planned, driven);
    }
    failing_result(&x, ex, to_run, driven.judged, &strategy.failed)
}

/// Every order that ran agrees with the model: a PASS, unless the
/// safety-net clock stopped the orders early (TIMEOUT) or the budget did
/// (see [`Exploring::budget_status`]).
fn agreeing_result(x: &Exploring, to_run: usize, planned: usize, driven: Driven) -> ScenarioResult {
    let finished = driven.judged;
    let rate = x.rate(finished);
    match driven.end {
        // The safety net, not the budget: what ran agreed, but how much ran
        // depended on the machine's speed. Not a verdict either way.
        End::Clock | End::FailingLimit => x.result(
            Status::Timeout,
            format!(
                "explored {finished} of {to_run} orders, all agreeing with the model, when the exploration's \
                 safety-net clock of {} ms ran out: not judged (the exploration is bounded by its orders; this \
                 machine was too slow or loaded to finish them: raise --exploration-timeout or timeout_ms, or \
                 lower --max-orders)",
                x.limit.as_millis(),
            ),
            vec![],
            None,
        ),
        // Stopped at the order budget: the same orders on any machine.
        End::Budget => x.result(
            x.budget_status(),
            format!(
                "the first {to_run} of {planned} orders agree with the model, stopping at the budget of {} orders \
                 (not all; --max-orders raises it, sample = N explores a spread, --strict-budget fails on this)",
                x.engine.limits.max_orders
            ),
            vec![],
            None,
        ),
        End::Exhausted => x.result(
            Status::Pass,
            format!("{to_run} orders agree with the model ({rate:.0} orders/s)"),
            vec![],
            None,
        ),
    }
}

/// The FAIL of an exploration: the shortest failing order, shrunk, with
/// its replay command, and a few other failing orders.
fn failing_result(
    x: &Exploring,
    ex: &Exploration,
    to_run: usize,
    finished: usize,
    failed: &[OrderOutcome],
) -> ScenarioResult {
    let not_run = to_run - finished;
    // Shrink the shortest failing order: drop whole runs/events while it still fails.
    let Some(shortest) = failed.iter().min_by_key(|o| o.order.len()).cloned() else {
        return x.result(Status::Broken, "no failing order to shrink".into(), vec![], None);
    };
    let shrunk = shrink(x, ex, shortest);
    let replay = x.replay_command(&label_order(&shrunk.order));
    let mut problems: Vec<String> = shrunk.problems.iter().map(|f| f.text.clone()).collect();
    problems.push(format!("replay: {replay}"));
    for o in failed.iter().take(5) {
        problems.push(format!(
            "also failing: {} ({})",
            label_order(&o.order),
            o.problems[0].text
        ));
    }
    let failures: Vec<Failure> = std::iter::once(&shrunk)
        .chain(failed)
        .flat_map(|o| o.problems.iter().cloned())
        .collect();
    let message = format!(
        "{} of {} orders disagree with the model{}; shortest failing order: {} ({} events): {}; replay: {replay}",
        failed.len(),
        finished,
        if not_run > 0 {
            format!(" (stopped early; {not_run} of {to_run} orders not run)")
        } else {
            String::new()
        },
        label_order(&shrunk.order),
        shrunk.order.len(),
        shrunk.problems[0].text
    );
    x.failed(message, problems, shrunk.log.clone(), failures)
}

/// Drop whole runs or events while the order still fails, until nothing
/// more can go or the scenario's limit is reached.
fn shrink(x: &Exploring, ex: &Exploration, failing: OrderOutcome) -> OrderOutcome {
    let mut best = failing;
    loop {
        let mut owners: Vec<String> = best.order.iter().map(|s| s.owner().to_string()).collect();
        owners.sort();
        owners.dedup();
        let mut improved = false;
        for owner in owners {
            if x.out_of_time() || crate::interrupt::interrupted() {
                return best;
            }
            let candidate: Vec<Move> = best.order.iter().filter(|s| s.owner() != owner).cloned().collect();
            if candidate.is_empty() {
                continue;
            }
            let outcome = run_order(x, ex, &candidate);
            if outcome.failed() {
                best = outcome;
                improved = true;
                break;
            }
        }
        if !improved {
            return best;
        }
    }
}

/// The one-line command that runs exactly this order again.
pub fn replay_command(sf: &ScenarioFile, engine: &Engine, order: &str) -> String {
    let imp = engine.implementation;
    let impl_args = match &imp.origin {
        Origin::Builtin => format!("--impl {}", imp.name),
        Origin::File(path) => format!(
            "--impl-file {}",
            shlex::try_quote(&path.display().to_string())
                .map(|q| q.into_owned())
                .unwrap_or_default()
        ),
        Origin::Commands => {
            let quote = |argv: &[String]| {
                let joined = shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_default();
                shlex::try_quote(&joined).map(|q| q.into_owned()).unwrap_or(joined)
            };
            // As the user gave them: staged copies are gone after the run.
            format!(
                "--writer {} --reader {}",
                quote(imp.given(crate::scenario::Role::Writer)),
                quote(imp.given(crate::scenario::Role::Reader))
            )
        }
    };
    // The built-in catalogue's files go with the run: name the scenario by id.
    let scenario = if crate::scenario::catalogue::is_unpacked(&sf.path) {
        sf.id.clone()
    } else {
        sf.path.display().to_string()
    };
    format!("shmconf run {scenario} {impl_args} --order '{order}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(spec: &[(&str, bool)]) -> Vec<Vec<Move>> {
        spec.iter()
            .map(|(n, pause)| {
                if *pause {
                    vec![
                        Move::Run {
                            run: n.to_string(),
                            part: Part::Attach,
                        },
                        Move::Run {
                            run: n.to_string(),
                            part: Part::Input,
                        },
                    ]
                } else {
                    vec![Move::Run {
                        run: n.to_string(),
                        part: Part::Whole,
                    }]
                }
            })
            .collect()
    }

    #[test]
    fn counts_are_multinomial() {
        assert_eq!(
            all_orders(&q(&[("a", false), ("b", false), ("c", false)]))
                .unwrap()
                .len(),
            6
        );
        // 3 writers x 2 readers: 5! orders.
        let five = q(&[
            ("w1", false),
            ("w2", false),
            ("w3", false),
            ("r1", false),
            ("r2", false),
        ]);
        assert_eq!(all_orders(&five).unwrap().len(), 120);
        // A paused writer among two readers: 4!/2! = 12.
        assert_eq!(
            all_orders(&q(&[("w", true), ("r1", false), ("r2", false)]))
                .unwrap()
                .len(),
            12
        );
    }

    #[test]
    fn every_order_keeps_each_runs_own_order() {
        for o in all_orders(&q(&[("w", true), ("v", true), ("r", false)])).unwrap() {
            let pos = |l: &str| o.iter().position(|s| s.label() == l).unwrap();
            assert!(pos("w:attach") < pos("w:input"));
            assert!(pos("v:attach") < pos("v:input"));
        }
    }

    #[test]
    fn samples_are_distinct_valid_and_deterministic() {
        let qs = q(&[("w1", true), ("w2", true), ("r1", false), ("r2", false)]);
        let a = sample_orders(&qs, 30, 7);
        assert_eq!(a.len(), 30);
        let labels: std::collections::BTreeSet<String> = a.iter().map(|o| label_order(o)).collect();
        assert_eq!(labels.len(), 30);
        assert_eq!(a, sample_orders(&qs, 30, 7));
        let all = all_orders(&qs).unwrap();
        assert!(a.iter().all(|o| all.contains(o)));
    }
}
