//! Exploration at system-call granularity, with dynamic partial-order
//! reduction.
//!
//! Every run is started traced (`engine::trace`) and held before each
//! shared-memory system call, read of stdin and write of stdout/stderr; an
//! order is the sequence of choices "let run R go to its next point" and
//! "feed run R its next piece of input", played by the engine
//! (`Action::Schedule`): the given prefix, then the first enabled choice
//! until every run has ended. After every step the engine reads the
//! segment table, which is held against the SysV semantics of the calls
//! made so far and what they returned (`model::calls`); orders are also
//! judged by properties (no run is killed by a signal; optionally, no
//! reader prints part of a line).
//!
//! Reduction (Flanagan and Godefroid's DPOR, stateless, by re-execution):
//! after each execution, every pair of events of different runs that touch
//! the same thing (the segment table, one segment's memory while attached,
//! one run's stdin) and are not already ordered through other events is a
//! race; the other order of each race is scheduled as a backtrack point.
//! Events that touch nothing in common commute, so only one order of them
//! runs. `reduction = false` explores every order instead.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::driver::{Driven, End, Exploring, Strategy, Unjudged, Verdictless};
use crate::engine::Engine;
use crate::events::{escape, Access, Choice, Ending, EventKind, Log, SegRow, Text, TracedCall};
use crate::model::calls::CallModel;
use crate::outcome::ScenarioResult;
use crate::outcome::{Check, Failure, Status};
use crate::scenario::{
    Action, Background, Exploration, Initial, PairRole, Property, ScenarioFile, Schedule, Step, MAIN_NS,
};

/// One scheduled event of an execution, as the engine logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceEvent {
    pub choice: Choice,
    pub enabled: Vec<Choice>,
    pub touches: Vec<Access>,
}

impl TraceEvent {
    fn dependent(&self, other: &TraceEvent) -> bool {
        crate::events::conflict(&self.touches, &other.touches)
    }
}

/// The search state at one point of the current path.
#[derive(Debug, Clone)]
struct Node {
    enabled: Vec<Choice>,
    backtrack: BTreeSet<Choice>,
    done: BTreeSet<Choice>,
    /// Sleep set on entry: choices whose orders from here are explored.
    sleep: Vec<(Choice, Vec<Access>)>,
    /// Choices taken from here so far, with what their event touched.
    explored: Vec<(Choice, Vec<Access>)>,
}

/// What to execute next: a prefix, and the sleep set that holds from the
/// state before its last choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    pub prefix: Vec<Choice>,
    pub sleep: Vec<(Choice, Vec<Access>)>,
    pub sleep_from: usize,
}

/// Stateless DPOR with sleep sets over re-executed orders.
#[derive(Debug)]
pub struct Explorer {
    /// Explore every order (no reduction).
    full: bool,
    path: Vec<Node>,
    /// The choices of the last execution.
    last: Vec<Choice>,
}

fn independent(a: &[Access], b: &[Access]) -> bool {
    !crate::events::conflict(a, b)
}

impl Explorer {
    pub fn new(full: bool) -> Explorer {
        Explorer {
            full,
            path: Vec::new(),
            last: Vec::new(),
        }
    }

    /// Take in the execution of a prefix of `prefix_len` choices (its
    /// events, the prefix first; shorter if it stopped as redundant) and
    /// say what to execute next, or None when the search is over.
    pub fn next(&mut self, prefix_len: usize, trace: &[TraceEvent]) -> Option<Next> {
        let prefix_len = prefix_len.min(trace.len());
        self.path.truncate(prefix_len);
        let mut sleep = Vec::new();
        if prefix_len > 0 {
            let d = prefix_len - 1;
            let e = &trace[d];
            let node = &mut self.path[d];
            sleep = node
                .sleep
                .iter()
                .chain(node.explored.iter())
                .filter(|(c, t)| *c != e.choice && independent(t, &e.touches))
                .cloned()
                .collect();
            node.explored.push((e.choice.clone(), e.touches.clone()));
        }
        for e in &trace[prefix_len..] {
            let backtrack = if self.full {
                e.enabled.iter().cloned().collect()
            } else {
                BTreeSet::from([e.choice.clone()])
            };
            let next_sleep: Vec<(Choice, Vec<Access>)> = sleep
                .iter()
                .filter(|(c, t)| *c != e.choice && independent(t, &e.touches))
                .cloned()
                .collect();
            self.path.push(Node {
                enabled: e.enabled.clone(),
                backtrack,
                done: BTreeSet::from([e.choice.clone()]),
                sleep: std::mem::replace(&mut sleep, next_sleep),
                explored: vec![(e.choice.clone(), e.touches.clone())],
            });
        }
        self.last = trace.iter().map(|e| e.choice.clone()).collect();
        if !self.full {
            for (j, choice) in races(trace) {
                let node = &mut self.path[j];
                let asleep = node.sleep.iter().any(|(c, _)| *c == choice);
                if node.enabled.contains(&choice) && !asleep {
                    node.backtrack.insert(choice);
                } else {
                    // Not possible here, or asleep (its orders from here are
                    // covered elsewhere, but the race it stands for may need
                    // another run to go first here): every choice there is.
                    node.backtrack.extend(node.enabled.iter().cloned());
                }
            }
        }
        while !self.path.is_empty() {
            let d = self.path.len() - 1;
            let node = &mut self.path[d];
            let pick = node
                .backtrack
                .iter()
                .find(|c| !node.done.contains(*c) && (self.full || !node.sleep.iter().any(|(s, _)| s == *c)))
                .cloned();
            if let Some(c) = pick {
                node.done.insert(c.clone());
                let sleep = if self.full {
                    Vec::new()
                } else {
                    node.sleep.iter().chain(node.explored.iter()).cloned().collect()
                };
                let mut prefix: Vec<Choice> = self.last[..d].to_vec();
                prefix.push(c);
                return Some(Next {
                    prefix,
                    sleep,
                    sleep_from: d,
                });
            }
            self.path.pop();
        }
        None
    }
}

/// The races of a trace: for each event i, the latest earlier event j of
/// another owner that it depends on and that does not already happen
/// before it through other events; reversing them may change the outcome.
/// Returns (j, the choice that would run i's owner at j).
pub fn races(trace: &[TraceEvent]) -> Vec<(usize, Choice)> {
    let n = trace.len();
    // before[i]: every event that happens before i (program order of one
    // owner, or a chain of dependent events).
    let mut before: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    let mut out = Vec::new();
    for i in 0..n {
        let owner = trace[i].choice.owner();
        let direct: Vec<usize> = (0..i)
            .filter(|&j| trace[j].choice.owner() == owner || trace[j].dependent(&trace[i]))
            .collect();
        let mut all = BTreeSet::new();
        for &j in &direct {
            all.insert(j);
            all.extend(before[j].iter().copied());
        }
        // The latest race: dependent, another owner, and not ordered
        // through any other predecessor of i.
        for &j in direct.iter().rev() {
            if trace[j].choice.owner() == owner || !trace[j].dependent(&trace[i]) {
                continue;
            }
            let through_others = direct
                .iter()
                .filter(|&&k| k != j)
                .any(|&k| k > j && before[k].contains(&j));
            if !through_others {
                out.push((j, trace[i].choice.clone()));
                break;
            }
        }
        before[i] = all;
    }
    out
}

/// How many orders there are without reduction, at most: the interleavings
/// of each owner's events as one execution had them (inputs may make some
/// impossible, so this bounds the count from above).
pub fn interleavings_at_most(trace: &[TraceEvent]) -> f64 {
    let mut per_owner: BTreeMap<String, u64> = BTreeMap::new();
    for e in trace {
        *per_owner.entry(e.choice.owner()).or_default() += 1;
    }
    // n! / prod(k_i!), as a float (it grows fast).
    let ln_fact = |k: u64| (1..=k).map(|x| (x as f64).ln()).sum::<f64>();
    let n: u64 = per_owner.values().sum();
    (ln_fact(n) - per_owner.values().map(|&k| ln_fact(k)).sum::<f64>()).exp()
}

/// The engine steps of one execution: the runs spawned traced (held at
/// their exec), the schedule, and a look at the kernel at the end.
fn steps(ex: &Exploration, next: &Next) -> Vec<Step> {
    // The initial state first: the model starts from the table the
    // schedule reads before its first step, so it takes what they made.
    let mut actions: Vec<Action> = super::initial_actions(ex).into_iter().map(|(_, a)| a).collect();
    let mut pieces = BTreeMap::new();
    for r in &ex.runs {
        // Input in pieces is fed by the schedule; a single piece at once.
        let (stdin, close) = if r.pieces.len() > 1 {
            pieces.insert(r.name.clone(), r.pieces.clone());
            (Vec::new(), false)
        } else {
            (r.stdin.clone(), true)
        };
        actions.push(super::spawn_of(r, Some(Background { close_stdin: close }), stdin, true));
    }
    actions.push(Action::Schedule(Schedule {
        runs: ex.runs.iter().map(|r| r.name.clone()).collect(),
        pieces,
        prefix: next.prefix.clone(),
        sleep: next.sleep.clone(),
        sleep_from: next.sleep_from,
    }));
    actions.push(Action::Observe);
    actions
        .into_iter()
        .enumerate()
        .map(|(i, action)| Step {
            n: i + 1,
            ns: MAIN_NS.into(),
            // The order as a whole is bounded by the scenario's limit; the
            // step limit holds for each traced step (see the engine's
            // schedule), so a loaded machine does not cut an order short.
            timeout: matches!(action, Action::Schedule(_)).then_some(Duration::from_secs(3600)),
            action,
        })
        .collect()
}

/// What one execution showed.
struct Execution {
    choices: Vec<Choice>,
    trace: Vec<TraceEvent>,
    /// Stopped early: the rest was equivalent to an order explored already.
    redundant: bool,
    /// Problems, each with the index of the event after which it showed
    /// and the check that found it.
    problems: Vec<(usize, Check, String)>,
    log: Log,
}

/// Execute one order and judge it as its log goes, or say why it has no
/// verdict.
fn execute(x: &Exploring, ex: &Exploration, next: &Next) -> Result<Execution, Unjudged> {
    let log = x.execute(&steps(ex, next));
    if let Some(why) = super::initial_failure(&log, super::initial_actions(ex).len()) {
        return Err(Box::new((Verdictless::Broken(why), log)));
    }
    let mut reading = Reading::new(ex);
    for e in &log.events {
        reading.read(&e.kind);
    }
    reading.finish(log)
}

/// An execution's log as the judge reads it, event by event: the trace of
/// choices, the problems found so far and what later events are held
/// against.
struct Reading<'a> {
    ex: &'a Exploration,
    trace: Vec<TraceEvent>,
    problems: Vec<(usize, Check, String)>,
    /// Why the execution has no verdict, if it has none.
    stop: Option<Verdictless>,
    redundant: bool,
    /// Where each run ended: the event after which its output is known.
    ended_at: BTreeMap<String, usize>,
    /// Each run's last step, to say after which one it died.
    last_call: BTreeMap<String, String>,
    /// The SysV model of the table, from the first table the engine read,
    /// held against each table read after a step.
    table: Option<CallModel>,
    last_step: String,
    read_by: BTreeMap<String, Memory>,
    /// The addresses each run's successful shmat calls returned.
    attached_at: BTreeMap<String, BTreeSet<u64>>,
    /// The segments each run attached, and those of the initial table (the
    /// first one read): a reader may print an empty line only from a
    /// segment made during the order (zero-filled).
    attached_ids: BTreeMap<String, BTreeSet<i32>>,
    initial_ids: BTreeSet<i32>,
}

impl<'a> Reading<'a> {
    fn new(ex: &'a Exploration) -> Reading<'a> {
        Reading {
            ex,
            trace: Vec::new(),
            problems: Vec::new(),
            stop: None,
            redundant: false,
            ended_at: BTreeMap::new(),
            last_call: BTreeMap::new(),
            table: None,
            last_step: String::from("the start"),
            read_by: BTreeMap::new(),
            attached_at: BTreeMap::new(),
            attached_ids: BTreeMap::new(),
            initial_ids: BTreeSet::new(),
        }
    }

    fn read(&mut self, kind: &EventKind) {
        match kind {
            EventKind::Scheduled {
                choice,
                call,
                enabled,
                touches,
                op,
                result,
                seen,
            } => {
                let returned = op.as_ref().map(|c| c.describe_result(*result)).unwrap_or_default();
                self.remember_memory(choice, op.as_ref(), *result, seen);
                let step = format!("{call}{returned}");
                let run = self.take_step(choice, &step, enabled, touches);
                self.check_call(&run, &step, op.as_ref(), *result);
            }
            EventKind::Snapshot { rows, .. } => self.snapshot(rows),
            EventKind::Redundant { .. } => self.redundant = true,
            EventKind::Skipped { reason } => self.stop_for(Verdictless::Skip(reason.clone())),
            EventKind::Broken { message } => self.stop_for(Verdictless::Broken(message.clone())),
            EventKind::Interrupted { .. } => self.stop = Some(Verdictless::Interrupted),
            EventKind::Timeout { .. } => self.timeout(kind),
            EventKind::Exit { proc, ending, .. } => self.exit(proc, ending),
            _ => {}
        }
    }

    /// The first reason there is no verdict is the one told.
    fn stop_for(&mut self, why: Verdictless) {
        self.stop = self.stop.take().or(Some(why));
    }

    /// What the run of a step could have read: the contents its segments
    /// held, and how many times it attached.
    fn remember_memory(&mut self, choice: &Choice, op: Option<&TracedCall>, result: Option<i64>, seen: &[Text]) {
        let memory = self.read_by.entry(choice.run().to_string()).or_default();
        for text in seen {
            if !memory.seen.contains(text) {
                memory.seen.push(text.clone());
            }
        }
        if matches!(op, Some(TracedCall::ShmAt { .. })) && result.is_some_and(|r| r >= 0) {
            memory.attaches += 1;
        }
    }

    /// Add a step (`step`: the call and what it returned) to the trace.
    /// Returns the run that took it.
    fn take_step(&mut self, choice: &Choice, step: &str, enabled: &[Choice], touches: &[Access]) -> String {
        self.last_call.insert(choice.label(), step.to_string());
        let event = TraceEvent {
            choice: choice.clone(),
            enabled: enabled.to_vec(),
            touches: touches.to_vec(),
        };
        let run = event.choice.run().to_string();
        self.last_step = format!("{run}'s {step}");
        self.trace.push(event);
        run
    }

    /// Hold a run's call against property detach-attached and the SysV model.
    fn check_call(&mut self, run: &str, step: &str, op: Option<&TracedCall>, result: Option<i64>) {
        // detach-attached: a failed shmdt(2) of an address this run's
        // shmat(2) returned is a second detach of that attachment.
        // Other addresses (0, -1: a language runtime's clean-up of
        // a handle whose shmat failed, as PHP's shmop does) detach
        // nothing and are not the program's contract.
        match op {
            Some(TracedCall::ShmAt { id }) => {
                if let Some(addr) = result.filter(|r| *r >= 0) {
                    self.attached_at.entry(run.to_string()).or_default().insert(addr as u64);
                    self.attached_ids.entry(run.to_string()).or_default().insert(*id);
                }
            }
            Some(TracedCall::ShmDt { addr })
                if self.ex.properties.contains(&Property::DetachAttached)
                    && result.is_some_and(|r| r < 0)
                    && self.attached_at.get(run).is_some_and(|a| a.contains(addr)) =>
            {
                self.problems.push((
                    self.trace.len() - 1,
                    Check::DetachAttached,
                    format!(
                        "{run}'s {step}: it detached an attachment it had detached already \
                         (property detach-attached)"
                    ),
                ));
            }
            _ => {}
        }
        if let (Some(model), Some(op)) = (self.table.as_mut(), op) {
            if let Err(why) = model.apply(run, op, result) {
                self.problems.push((
                    self.trace.len() - 1,
                    Check::Model,
                    format!("after {}: {why} (SysV semantics)", self.last_step),
                ));
            }
        }
    }

    /// The first table read starts the model; each later one is held
    /// against it (and, where they differ, the model takes the kernel's).
    fn snapshot(&mut self, rows: &[SegRow]) {
        match self.table.as_mut() {
            None => {
                self.initial_ids = rows.iter().map(|r| r.shmid).collect();
                self.table = Some(CallModel::new(rows));
            }
            Some(model) => {
                let differences = model.differences(rows);
                if !differences.is_empty() {
                    self.problems.push((
                        self.trace.len().saturating_sub(1),
                        Check::Model,
                        format!(
                            "the kernel's segment table after {} is not what the SysV model of the calls so far \
                             says: {} (the kernel, or a call that is not traced, changed it)",
                            self.last_step,
                            differences.join("; ")
                        ),
                    ));
                    model.adopt_after(self.trace.last().map(|e| e.choice.run()), rows);
                }
            }
        }
    }

    /// The exploration's own limit cuts the order (no verdict); a step's
    /// limit on a machine too busy to say is BROKEN; otherwise a run did
    /// not finish in time.
    fn timeout(&mut self, kind: &EventKind) {
        match kind {
            EventKind::Timeout {
                limit: crate::events::WhichLimit::Scenario,
                ..
            } => self.stop_for(Verdictless::Cut),
            EventKind::Timeout {
                proc,
                waiting_for,
                limit_ms,
                cpu_wait_ms,
                ..
            } => {
                let what = format!(
                    "{proc} did not finish within {limit_ms} ms{} waiting for {waiting_for}",
                    crate::events::cpu_wait_text(*cpu_wait_ms, *limit_ms)
                );
                if crate::events::machine_too_busy(*cpu_wait_ms, *limit_ms) {
                    self.stop_for(Verdictless::Broken(what));
                } else {
                    self.problems
                        .push((self.trace.len().saturating_sub(1), Check::Timeout, what));
                }
            }
            _ => {}
        }
    }

    /// A run ended: its output is known from here, and a signal that
    /// killed it is a problem.
    fn exit(&mut self, proc: &str, ending: &Ending) {
        let after = self.trace.len().saturating_sub(1);
        self.ended_at.entry(proc.to_string()).or_insert(after);
        if let Some(model) = self.table.as_mut() {
            model.ended(proc);
        }
        if let Ending::Signaled { signal } = ending {
            let call = self.last_call.get(proc).map_or("", String::as_str);
            self.problems.push((
                after,
                Check::Signal,
                format!("{proc} was killed by {signal} (its last step: {call})"),
            ));
        }
    }

    /// The execution, with the problems of its runs' endings and (with
    /// property whole-lines) of what its readers printed; or why it has
    /// no verdict.
    fn finish(self, log: Log) -> Result<Execution, Unjudged> {
        if let Some(s) = self.stop {
            return Err(Box::new((s, log)));
        }
        let ex = self.ex;
        let mut problems = self.problems;
        problems.extend(endings(ex, &log, &self.ended_at, &self.read_by));
        if ex.properties.contains(&Property::WholeLines) {
            let made_during = |run: &str| {
                self.attached_ids
                    .get(run)
                    .is_some_and(|ids| ids.iter().any(|id| !self.initial_ids.contains(id)))
            };
            problems.extend(partial_lines(ex, &log, &self.ended_at, made_during));
        }
        Ok(Execution {
            choices: self.trace.iter().map(|e| e.choice.clone()).collect(),
            trace: self.trace,
            redundant: self.redundant,
            problems,
            log,
        })
    }
}

/// What one run could have read from shared memory in an order.
#[derive(Default)]
struct Memory {
    /// Each content (up to its first NUL) a segment it had attached held
    /// during one of its steps.
    seen: Vec<crate::events::Text>,
    /// Its successful shmat calls.
    attaches: usize,
}

/// Could a run have printed `printed` as what its segment holds? Judged
/// only where that is certain: one attachment, contents read whole.
fn visible(memory: Option<&Memory>, printed: &[u8]) -> bool {
    let Some(m) = memory else {
        return false;
    };
    let whole = m
        .seen
        .iter()
        .all(|t| t.total == t.bytes.len() as u64 && t.bytes.len() < crate::scenario::CONTENT_CAP);
    m.attaches > 1 || !whole || m.seen.iter().any(|t| t.bytes == printed)
}

/// A problem with every number (decimal or hex) replaced: what stays the
/// same from one order to another.
fn problem_kind(problem: &str) -> String {
    let mut out = String::with_capacity(problem.len());
    let mut chars = problem.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            if c == '0' && chars.peek() == Some(&'x') {
                chars.next();
            }
            while chars.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
                chars.next();
            }
            out.push('#');
        } else {
            out.push(c);
        }
    }
    out
}

/// What the contract allows a run to end with, in any order: success
/// (exit 0) printing its role's one line, or a clear error (another exit
/// code, saying why on stderr); a signal is judged above. A writer that
/// is the only one writes the segment alone, so when it succeeds it
/// printed its own line (up to a NUL), whatever the order.
fn endings(
    ex: &Exploration,
    log: &Log,
    ended_at: &BTreeMap<String, usize>,
    read_by: &BTreeMap<String, Memory>,
) -> Vec<(usize, Check, String)> {
    const WRITER: &[u8] = b"Write Data: Data written in memory: ";
    const READER: &[u8] = b"Data read from memory: ";
    let writers = ex.runs.iter().filter(|r| r.role == PairRole::Writer).count();
    let mut out = Vec::new();
    for e in &log.events {
        let EventKind::Exit {
            proc,
            ending,
            stdout,
            stderr,
            ..
        } = &e.kind
        else {
            continue;
        };
        let Some(run) = ex.runs.iter().find(|r| &r.name == proc) else {
            continue;
        };
        let at = ended_at.get(proc).copied().unwrap_or(0);
        match ending {
            Ending::Exited { code: 0 } => {
                let (prefix, role) = match run.role {
                    PairRole::Writer => (WRITER, "writer"),
                    PairRole::Reader => (READER, "reader"),
                };
                let whole = stdout.total == stdout.bytes.len() as u64;
                let line = stdout
                    .bytes
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_suffix(b"\n".as_slice()))
                    .filter(|line| !line.contains(&b'\n'));
                match line {
                    None if whole => out.push((
                        at,
                        Check::Ending,
                        format!(
                            "{proc} exited 0 printing \"{}\", not a {role}'s \"{}<line>\\n\"",
                            escape(&stdout.bytes),
                            escape(prefix)
                        ),
                    )),
                    Some(printed) if whole && !visible(read_by.get(proc), printed) => {
                        let held = read_by.get(proc).map(|m| m.seen.as_slice()).unwrap_or_default();
                        let what = if held.is_empty() {
                            "it never had a segment attached".to_string()
                        } else {
                            let list: Vec<String> = held.iter().map(|t| format!("\"{}\"", escape(&t.bytes))).collect();
                            format!("while it was attached its segment held {}", list.join(" or "))
                        };
                        out.push((
                            at,
                            Check::Ending,
                            format!(
                                "{proc} exited 0 printing \"{}\" as what is in memory, but {what} (content visibility)",
                                escape(printed)
                            ),
                        ));
                    }
                    Some(printed) if run.role == PairRole::Writer && writers == 1 && !run.stdin.is_empty() => {
                        let first = run.stdin.split(|&b| b == b'\n').next().unwrap_or_default();
                        let own = first.split(|&b| b == 0).next().unwrap_or_default();
                        if printed != own {
                            out.push((
                                at,
                                Check::Ending,
                                format!(
                                    "{proc} exited 0 saying it wrote \"{}\", but its line is \"{}\" and no other run writes",
                                    escape(printed),
                                    escape(own)
                                ),
                            ));
                        }
                    }
                    _ => {}
                }
            }
            Ending::Exited { code } if stderr.bytes.is_empty() => out.push((
                at,
                Check::Ending,
                format!("{proc} exited with code {code} and nothing on stderr: an error exit must say why"),
            )),
            _ => {}
        }
    }
    out
}

/// "whole-lines": what each reader printed after "Data read from memory: "
/// is something a segment may hold between two system calls: a whole line
/// some writer wrote (up to its first NUL), the content of a segment of the
/// initial state, or nothing, from a segment made during the order (new
/// segments are zero-filled). A part of a line, or a new line over the
/// tail of an older, longer one, is none of these.
fn partial_lines(
    ex: &Exploration,
    log: &Log,
    ended_at: &BTreeMap<String, usize>,
    made_during: impl Fn(&str) -> bool,
) -> Vec<(usize, Check, String)> {
    let first_line = |input: &[u8]| -> Vec<u8> {
        let line = input.split(|&b| b == b'\n').next().unwrap_or_default();
        line.split(|&b| b == 0).next().unwrap_or_default().to_vec()
    };
    let lines: Vec<(&str, Vec<u8>)> = ex
        .runs
        .iter()
        .filter(|r| r.role == PairRole::Writer)
        .map(|r| (r.name.as_str(), first_line(&r.stdin)))
        .collect();
    let initial: Vec<&[u8]> = ex
        .initial
        .iter()
        .filter_map(|i| match i {
            Initial::Segment(seg) => Some(seg.text()),
            Initial::File(_) => None,
        })
        .collect();
    let mut out = Vec::new();
    for e in &log.events {
        let EventKind::Exit { proc, stdout, .. } = &e.kind else {
            continue;
        };
        if !ex.runs.iter().any(|r| &r.name == proc && r.role == PairRole::Reader) {
            continue;
        }
        // A reader that printed no content (an error exit) is judged by its ending.
        let Some(rest) = stdout.bytes.strip_prefix(b"Data read from memory: ".as_slice()) else {
            continue;
        };
        let printed = rest.strip_suffix(b"\n".as_slice()).unwrap_or(rest);
        let whole = lines.iter().any(|(_, line)| line.as_slice() == printed)
            || initial.contains(&printed)
            || (printed.is_empty() && made_during(proc));
        if whole {
            continue;
        }
        let problem = match lines
            .iter()
            .find(|(_, line)| printed.len() < line.len() && line.starts_with(printed))
        {
            Some((writer, line)) if !printed.is_empty() => format!(
                "{proc} printed part of {writer}'s line: \"{}\" of \"{}\" (property whole-lines)",
                escape(printed),
                escape(line)
            ),
            _ if printed.is_empty() => format!(
                "{proc} printed an empty line, but every segment it attached held content from the start and no \
                 writer's line is empty (property whole-lines)"
            ),
            _ => {
                let mut known: Vec<String> = lines.iter().map(|(w, l)| format!("{w}'s \"{}\"", escape(l))).collect();
                known.extend(initial.iter().map(|t| format!("the initial \"{}\"", escape(t))));
                format!(
                    "{proc} printed \"{}\", which is no whole line: not {} (property whole-lines)",
                    escape(printed),
                    known.join(", nor ")
                )
            }
        };
        out.push((ended_at.get(proc).copied().unwrap_or(0), Check::WholeLines, problem));
    }
    out
}

/// Run a system-call exploration (or, with `replay`, one order of it).
pub fn run(sf: &ScenarioFile, ex: &Exploration, engine: &Engine, replay: Option<&str>) -> ScenarioResult {
    let x = Exploring::new(sf, engine);
    if !cfg!(target_arch = "x86_64") {
        return x.result(
            Status::Skip,
            "system-call exploration traces x86_64 system calls only".into(),
            vec![],
            None,
        );
    }
    let mut search = Search::new(&x, ex, replay);
    // One execution at a time: each order the explorer picks depends on
    // the trace of the one before.
    let driven = match x.drive(&mut search, 1) {
        Ok(d) => d,
        Err(unjudged) => return *unjudged,
    };
    let how = search.how(ex.reduction, driven.judged);
    if search.failing.is_empty() {
        return agreeing_result(&x, search, driven, &how);
    }
    failing_result(&x, &search.failing, &how)
}

/// Every order `run` executes for `ex`, as the choices it played (one
/// stopped early as equivalent to an order explored already ends where it
/// stopped): what the benchmark's floor plays again with nothing judged
/// (`bench::syscall_floor`). The exploration's result where it had no
/// verdict for every order (a SKIP, BROKEN, an interruption).
pub fn executed_schedules(
    sf: &ScenarioFile,
    ex: &Exploration,
    engine: &Engine,
) -> Result<Vec<Vec<Choice>>, Box<ScenarioResult>> {
    let x = Exploring::new(sf, engine);
    let mut search = Search::new(&x, ex, None);
    search.schedules = Some(Vec::new());
    x.drive(&mut search, 1)?;
    Ok(search.schedules.unwrap_or_default())
}

/// The strategy of system-call exploration: the explorer picks each next
/// order from the trace of the last (or only the replayed one runs); what
/// the search came to.
struct Search<'e, 'x> {
    x: &'e Exploring<'x>,
    ex: &'e Exploration,
    explorer: Explorer,
    /// The order to execute next.
    pending: Option<Next>,
    /// Only the replayed order runs, and its log is kept whatever its verdict.
    replay: bool,
    /// Orders stopped early as equivalent to one explored already.
    cut_short: usize,
    /// At most this many interleavings (as the first execution had them).
    bound: Option<f64>,
    failing: Vec<Execution>,
    replayed: Option<Log>,
    /// Each executed order's choices, where they are asked for.
    schedules: Option<Vec<Vec<Choice>>>,
}

impl<'e, 'x> Search<'e, 'x> {
    fn new(x: &'e Exploring<'x>, ex: &'e Exploration, replay: Option<&str>) -> Search<'e, 'x> {
        Search {
            x,
            ex,
            explorer: Explorer::new(!ex.reduction),
            pending: Some(first_order(replay)),
            replay: replay.is_some(),
            cut_short: 0,
            bound: None,
            failing: Vec::new(),
            replayed: None,
            schedules: None,
        }
    }
}

impl Strategy for Search<'_, '_> {
    type Order = Next;
    type Judged = Execution;

    fn has_more(&self) -> bool {
        self.pending.is_some()
    }

    fn next_orders(&mut self, _most: usize) -> Vec<Next> {
        self.pending.take().into_iter().collect()
    }

    fn execute(&self, next: &Next) -> Result<Execution, Unjudged> {
        execute(self.x, self.ex, next)
    }

    fn failed(e: &Execution) -> bool {
        !e.problems.is_empty()
    }

    fn take(&mut self, next: Next, execution: Execution) {
        self.cut_short += usize::from(execution.redundant);
        self.bound
            .get_or_insert_with(|| interleavings_at_most(&execution.trace));
        if !self.replay {
            self.pending = self.explorer.next(next.prefix.len(), &execution.trace);
        }
        if let Some(schedules) = &mut self.schedules {
            schedules.push(execution.choices.clone());
        }
        if !execution.problems.is_empty() {
            self.failing.push(execution);
        } else if self.replay {
            self.replayed = Some(execution.log);
        }
    }

    fn label(next: &Next) -> String {
        next.prefix.iter().map(Choice::label).collect::<Vec<_>>().join(",")
    }
}

impl Search<'_, '_> {
    /// How the orders were explored, in words.
    fn how(&self, reduction: bool, explored: usize) -> String {
        let (cut_short, bound) = (self.cut_short, self.bound.unwrap_or(0.0));
        if reduction {
            format!(
                "{explored} orders explored with partial-order reduction ({cut_short} of them stopped early as \
                 equivalent to one explored already), of at most {bound:.0} interleavings"
            )
        } else {
            format!("{explored} orders explored, every interleaving")
        }
    }
}

/// The first order to execute: the replayed one, else whatever the
/// engine's schedule plays first.
fn first_order(replay: Option<&str>) -> Next {
    Next {
        prefix: match replay {
            Some(text) => text
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(Choice::parse)
                .collect(),
            None => Vec::new(),
        },
        sleep: Vec::new(),
        sleep_from: 0,
    }
}

/// Every order explored keeps the properties: a PASS, unless the
/// safety-net clock ran out (TIMEOUT) or the budget stopped the search
/// (see [`Exploring::budget_status`]).
fn agreeing_result(x: &Exploring, search: Search, driven: Driven, how: &str) -> ScenarioResult {
    let rate = x.rate(driven.judged);
    if matches!(driven.end, End::Clock | End::FailingLimit) {
        return x.result(
            Status::Timeout,
            format!(
                "{how}, when the exploration's safety-net clock of {} ms ran out, all keeping the properties: not \
                 judged (the exploration is bounded by --max-orders; this machine was too slow or loaded to finish \
                 it: raise --exploration-timeout or lower --max-orders)",
                x.limit.as_millis()
            ),
            vec![],
            search.replayed,
        );
    }
    let (status, tail) = if driven.end == End::Budget {
        (
            x.budget_status(),
            format!(
                ", stopping at the budget of {} orders (not all; --max-orders raises it, --strict-budget fails on this)",
                x.engine.limits.max_orders
            ),
        )
    } else {
        (Status::Pass, String::new())
    };
    x.result(
        status,
        format!("{how}{tail}: every one keeps the properties ({rate:.0} orders/s)"),
        vec![],
        search.replayed,
    )
}

/// The FAIL of a search: each distinct problem with the shortest order
/// that shows it and its replay command, the shortest of all leading.
fn failing_result(x: &Exploring, failing: &[Execution], how: &str) -> ScenarioResult {
    let found = distinct_problems(failing);
    let Some(&(at, first, best)) = found.first() else {
        return x.result(Status::Broken, "no failing order".into(), vec![], None);
    };
    let order = order_up_to(at, best);
    let replay_line = x.replay_command(&order);
    let mut problems: Vec<String> = vec![format!("{first}; order {order}")];
    for (at, p, e) in found.iter().skip(1).take(5) {
        let other = order_up_to(*at, e);
        problems.push(format!("{p}; order {other}; replay: {}", x.replay_command(&other)));
    }
    let failures: Vec<Failure> = failing
        .iter()
        .flat_map(|e| &e.problems)
        .map(|(_, check, text)| Failure::of_exploration(*check, text.clone()))
        .collect();
    let message = format!(
        "{} of {how} break a property ({} distinct problem(s)); shortest: {order} ({} steps): {first}; replay: {replay_line}",
        failing.len(),
        found.len(),
        at + 1,
    );
    x.failed(message, problems, best.log.clone(), failures)
}

/// Each distinct problem with the shortest order that shows it (the
/// fewest choices up to where it showed), shortest first. Problems that
/// differ between orders only in numbers (segment ids, keys from a fresh
/// key file's inode, addresses) are one problem.
fn distinct_problems(failing: &[Execution]) -> Vec<(usize, &str, &Execution)> {
    let mut shortest: BTreeMap<String, (usize, &str, &Execution)> = BTreeMap::new();
    for e in failing {
        for (at, _, problem) in &e.problems {
            let entry = shortest
                .entry(problem_kind(problem))
                .or_insert((*at, problem.as_str(), e));
            if *at < entry.0 {
                *entry = (*at, problem.as_str(), e);
            }
        }
    }
    let mut found: Vec<(usize, &str, &Execution)> = shortest.values().copied().collect();
    found.sort_by_key(|(at, p, _)| (*at, p.to_string()));
    found
}

/// An execution's choices up to and including event `at`, as `--order` takes them.
fn order_up_to(at: usize, e: &Execution) -> String {
    e.choices[..(at + 1).min(e.choices.len())]
        .iter()
        .map(Choice::label)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::Strategy;

    fn ev(choice: &str, touches: &[Access]) -> TraceEvent {
        TraceEvent {
            choice: Choice::parse(choice),
            enabled: vec![],
            touches: touches.to_vec(),
        }
    }

    /// Things only one run's events touch (its own input).
    fn own(run: &str) -> Access {
        Access::Stdin(run.into())
    }

    /// What whole-lines says of readers that printed `printed` (each
    /// "from a new segment" or not), with writer "new" over the initial
    /// "an older, longer line".
    fn whole_lines(printed: &[(&str, bool)]) -> Vec<String> {
        let text = "description = \"x\"\n[explore]\ngranularity = \"syscall\"\nproperties = [\"whole-lines\"]\n\
                    initial = [{ segment = \"ftok:shmfile:65\", content = \"an older, longer line\" }]\n\
                    runs = [{ name = \"w\", role = \"writer\", stdin = \"new\\nignored\\n\" }, \
                    { name = \"r1\", role = \"reader\", keep = true }, { name = \"r2\", role = \"reader\", keep = true }, \
                    { name = \"r3\", role = \"reader\", keep = true }]\n";
        let scenario = crate::scenario::Scenario::parse(std::path::Path::new("t.toml"), text).unwrap();
        let crate::scenario::Body::Explore(ex) = &scenario.body else {
            panic!()
        };
        let mut log = Log::default();
        let mut fresh = BTreeSet::new();
        for (i, (out, new_segment)) in printed.iter().enumerate() {
            let proc = format!("r{}", i + 1);
            if *new_segment {
                fresh.insert(proc.clone());
            }
            log.events.push(crate::events::Event {
                t_us: 0,
                step: Some(1),
                kind: EventKind::Exit {
                    proc,
                    ending: Ending::Exited { code: 0 },
                    stdout: crate::events::Text::new(out.as_bytes().to_vec()),
                    stderr: crate::events::Text::new(vec![]),
                    stray_processes: false,
                },
            });
        }
        partial_lines(ex, &log, &BTreeMap::new(), |run| fresh.contains(run))
            .into_iter()
            .map(|(_, check, problem)| {
                assert_eq!(check, Check::WholeLines);
                problem
            })
            .collect()
    }

    #[test]
    fn whole_lines_allows_a_writers_line_the_initial_content_or_nothing_from_a_new_segment() {
        let fine = whole_lines(&[
            ("Data read from memory: new\n", false),
            ("Data read from memory: an older, longer line\n", false),
            ("Data read from memory: \n", true),
        ]);
        assert!(fine.is_empty(), "{fine:?}");
        // An error exit printed no content: judged by its ending, not here.
        assert!(whole_lines(&[("", false)]).is_empty());
    }

    #[test]
    fn whole_lines_catches_a_torn_line_a_part_and_an_empty_segment_that_was_never_empty() {
        let problems = whole_lines(&[
            ("Data read from memory: ne older, longer line\n", false),
            ("Data read from memory: ne\n", false),
            ("Data read from memory: \n", false),
        ]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("r1 printed \"ne older, longer line\", which is no whole line: not w's \"new\", nor the initial \"an older, longer line\""), "{}", problems[0]);
        assert!(
            problems[1].starts_with("r2 printed part of w's line: \"ne\" of \"new\""),
            "{}",
            problems[1]
        );
        assert!(problems[2].starts_with("r3 printed an empty line"), "{}", problems[2]);
    }

    #[test]
    fn problems_that_differ_only_in_numbers_are_one() {
        let a = problem_kind("after w's shmat(32768) = 0x7f12ab: segment 32768: nattch 0, the model says 1");
        let b = problem_kind("after w's shmat(0) = 0x7fee00: segment 0: nattch 1, the model says 2");
        assert_eq!(a, b);
        assert_ne!(
            problem_kind("w was killed by SIGSEGV (its last step: read(0))"),
            problem_kind("w was killed by SIGSEGV (its last step: exit(0))")
        );
    }

    #[test]
    fn independent_events_make_no_race() {
        let t = vec![ev("a", &[own("a")]), ev("b", &[own("b")]), ev("a", &[]), ev("b", &[])];
        assert!(races(&t).is_empty());
    }

    #[test]
    fn a_dependent_pair_of_two_runs_is_a_race_to_reverse() {
        let t = vec![
            ev("a", &[Access::WriteTable]),
            ev("b", &[own("b")]),
            ev("b", &[Access::WriteTable]),
        ];
        assert_eq!(races(&t), vec![(0, Choice::parse("b"))]);
    }

    #[test]
    fn an_order_through_a_third_event_is_not_a_race() {
        // a1 -> c (the table), c -> b (segment 0), and a1 -> b (the table)
        // only through c? No: a1 and b both change the table directly, but
        // c orders them already.
        let t = vec![
            ev("a", &[Access::WriteTable]),
            ev("c", &[Access::WriteTable, Access::WriteSegment(0)]),
            ev("b", &[Access::WriteTable, Access::WriteSegment(0)]),
        ];
        let r = races(&t);
        assert!(r.contains(&(0, Choice::parse("c"))), "{r:?}");
        assert!(r.contains(&(1, Choice::parse("b"))), "{r:?}");
        assert!(!r.contains(&(0, Choice::parse("b"))), "{r:?}");
    }

    /// A toy system to check the reduction against: each run is a list of
    /// reads and writes of shared variables (a write stores the run's last
    /// read plus its own tag, so values flow between runs). An order's
    /// outcome is the final variables and every value each run read.
    #[derive(Debug, Clone, Copy)]
    enum Op {
        Read(u8),
        Write(u8),
    }

    type EndState = (Vec<i64>, Vec<Vec<i64>>);

    /// Play `next` with the engine's own scheduler (the prefix, then the
    /// first choice not asleep); stop when every enabled choice sleeps
    /// (redundant). Only the system under it is a toy.
    fn simulate(programs: &[Vec<Op>], next: &Next) -> (Vec<TraceEvent>, Option<EndState>) {
        let runs: Vec<String> = (0..programs.len()).map(|i| format!("p{i}")).collect();
        let mut pc = vec![0usize; programs.len()];
        let mut vars = vec![0i64; 3];
        let mut last = vec![0i64; programs.len()];
        let mut seen: Vec<Vec<i64>> = vec![Vec::new(); programs.len()];
        let mut scheduler = crate::engine::trace::Scheduler::new(&next.prefix, &next.sleep, next.sleep_from);
        let mut trace = Vec::new();
        loop {
            let enabled: Vec<Choice> = (0..programs.len())
                .filter(|&i| pc[i] < programs[i].len())
                .map(|i| Choice::Step(runs[i].clone()))
                .collect();
            if enabled.is_empty() {
                return (trace, Some((vars, seen)));
            }
            let choice = match scheduler.decide(&enabled) {
                crate::engine::trace::Decision::Take(c) => c,
                crate::engine::trace::Decision::Impossible(c) => panic!("the explorer planned {c:?}, not enabled"),
                crate::engine::trace::Decision::AllAsleep => return (trace, None),
            };
            let i = runs.iter().position(|r| Choice::Step(r.clone()) == choice).unwrap();
            let touches = match programs[i][pc[i]] {
                Op::Read(v) => {
                    last[i] = vars[v as usize];
                    seen[i].push(last[i]);
                    vec![Access::ReadSegment(i32::from(v))]
                }
                Op::Write(v) => {
                    vars[v as usize] = last[i] * 10 + i as i64 + 1;
                    vec![Access::ReadSegment(i32::from(v)), Access::WriteSegment(i32::from(v))]
                }
            };
            pc[i] += 1;
            scheduler.happened(&choice, &touches);
            trace.push(TraceEvent {
                choice,
                enabled,
                touches,
            });
        }
    }

    fn outcomes(programs: &[Vec<Op>], full: bool) -> (BTreeSet<EndState>, usize) {
        let mut explorer = Explorer::new(full);
        let mut next = Next {
            prefix: vec![],
            sleep: vec![],
            sleep_from: 0,
        };
        let mut found = BTreeSet::new();
        let mut runs = 0;
        loop {
            let (trace, outcome) = simulate(programs, &next);
            runs += 1;
            found.extend(outcome);
            match explorer.next(next.prefix.len(), &trace) {
                Some(n) => next = n,
                None => return (found, runs),
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// The reduced exploration reaches every outcome the full one does
        /// (so it finds every fault a property of outcomes can see), and
        /// never runs more orders.
        #[test]
        fn reduction_keeps_every_outcome_of_the_full_exploration(
            programs in proptest::collection::vec(
                proptest::collection::vec(
                    (proptest::bool::ANY, 0u8..3).prop_map(|(w, v)| if w { Op::Write(v) } else { Op::Read(v) }),
                    1..4,
                ),
                2..4,
            )
        ) {
            let (full, full_runs) = outcomes(&programs, true);
            let (reduced, reduced_runs) = outcomes(&programs, false);
            proptest::prop_assert_eq!(&reduced, &full, "programs {:?}", programs);
            proptest::prop_assert!(reduced_runs <= full_runs);
        }
    }

    #[test]
    fn reduction_runs_one_order_when_nothing_conflicts() {
        let programs = vec![vec![Op::Write(0), Op::Read(0)], vec![Op::Write(1), Op::Read(1)]];
        let (full, full_runs) = outcomes(&programs, true);
        let (reduced, reduced_runs) = outcomes(&programs, false);
        assert_eq!(full, reduced);
        assert_eq!(full_runs, 6);
        assert_eq!(reduced_runs, 1);
    }

    #[test]
    fn interleavings_bound_is_the_multinomial() {
        let t = vec![ev("a", &[]), ev("a", &[]), ev("b", &[]), ev("b", &[])];
        assert_eq!(interleavings_at_most(&t).round(), 6.0);
    }
}
