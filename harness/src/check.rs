//! Checks: read a scenario's event log and decide its verdict. Nothing here
//! runs anything; every message says what was expected and what the kernel
//! or the process actually did.

use crate::events::{escape_short, Ending, EventKind, Log, SegRow, Text};
use crate::outcome::{Check, Failure, Status, Verdict};
use crate::scenario::{
    Action, EndingExpect, Expect, Scenario, SegmentExpect, SegmentsCheck, Step, StreamExpect, WaitFor, CONTENT_CAP,
};

#[derive(Default)]
struct Findings {
    fail: Vec<String>,
    broken: Vec<String>,
    timeout: Vec<String>,
    all: Vec<String>,
    failures: Vec<Failure>,
}

impl Findings {
    /// A harness or setup error: the scenario cannot be judged.
    fn broken(&mut self, msg: String) {
        self.broken.push(msg.clone());
        self.all.push(msg);
    }

    /// Something the implementation (or the kernel) did wrong, found by `check`.
    fn failed(&mut self, step: Option<usize>, check: Check, msg: String) {
        match check {
            Check::Timeout => self.timeout.push(msg.clone()),
            _ => self.fail.push(msg.clone()),
        }
        self.all.push(msg.clone());
        self.failures.push(Failure { step, check, text: msg });
    }
}

/// Judge a log against its scenario's steps.
pub fn check(scenario: &Scenario, steps: &[Step], log: &Log) -> Verdict {
    let mut f = Findings::default();
    for e in log.events.iter().filter(|e| e.step.is_none()) {
        match &e.kind {
            EventKind::Broken { message } => f.broken(message.clone()),
            EventKind::Container { ns, ipc, error, .. } => {
                let expected = scenario.namespaces.get(ns).and_then(|d| d.expect_error.as_deref());
                match (expected, error) {
                    (Some(want), Some(got)) if !got.contains(want) => f.failed(
                        None,
                        Check::Container,
                        format!("namespace {ns}: docker refused --ipc {ipc} with {got:?}, expected an error containing {want:?}"),
                    ),
                    (Some(want), None) => f.failed(
                        None,
                        Check::Container,
                        format!("namespace {ns}: expected docker to refuse --ipc {ipc} ({want:?}), but the container started"),
                    ),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let mut interrupted = None;
    for step in steps {
        let events: Vec<&EventKind> = log.step_events(step.n).collect();
        if events.is_empty() {
            break; // stopped before this step; the cause is already reported
        }
        if let Some(reason) = events.iter().find_map(|e| match e {
            EventKind::Interrupted { reason } => Some(reason.clone()),
            _ => None,
        }) {
            interrupted = Some(format!("step {}: {reason}; the scenario was not judged", step.n));
            break;
        }
        check_step(step, &events, &mut f);
        if events.iter().any(|e| matches!(e, EventKind::Aborted { .. })) {
            break;
        }
    }
    if let Some(message) = interrupted {
        // Whatever was seen before the signal is no verdict on the whole.
        return Verdict {
            status: Status::Interrupted,
            message,
            problems: f.all,
            failures: vec![],
        };
    }
    let skipped = log.events.iter().find_map(|e| match &e.kind {
        EventKind::Skipped { reason } => Some(reason.clone()),
        _ => None,
    });
    if let (Some(reason), true) = (skipped, f.all.is_empty()) {
        return Verdict {
            status: Status::Skip,
            message: reason,
            problems: vec![],
            failures: vec![],
        };
    }
    f.verdict()
}

impl Findings {
    /// The worst kind found decides (BROKEN, then TIMEOUT, then FAIL); its
    /// first problem is the message.
    fn verdict(self) -> Verdict {
        let worst = [
            (Status::Broken, &self.broken),
            (Status::Timeout, &self.timeout),
            (Status::Fail, &self.fail),
        ]
        .into_iter()
        .find_map(|(status, found)| found.first().map(|m| (status, m.clone())));
        let (status, message) = worst.unwrap_or((Status::Pass, String::new()));
        Verdict {
            status,
            message,
            problems: self.all,
            failures: self.failures,
        }
    }
}

/// Which limit ran out, in words: the scenario's, or the step's (and how
/// much later a busy machine moved it).
fn limit_words(limit_ms: u64, cpu_wait_ms: Option<u64>, limit: crate::events::WhichLimit) -> String {
    if limit == crate::events::WhichLimit::Scenario {
        format!("the scenario's limit of {limit_ms} ms ran out")
    } else {
        format!(
            "timed out after {limit_ms} ms (the step's limit{})",
            crate::events::cpu_wait_text(cpu_wait_ms, limit_ms)
        )
    }
}

fn timeout_message(n: usize, proc: &str, waiting_for: &str, which: &str, stdout: &Text, stderr: &Text) -> String {
    if proc == "kernel" || proc == "scenario" {
        format!("step {n}: {which} waiting for {waiting_for}")
    } else {
        format!(
            "step {n}: {proc}: {which} waiting for {waiting_for}; killed with its process group; stdout so far {}, stderr {}",
            escape_short(&stdout.bytes, 120),
            escape_short(&stderr.bytes, 120)
        )
    }
}

/// The expectation a step puts on a process's end, if it ends one.
fn expectation(step: &Step) -> Option<&Expect> {
    match &step.action {
        Action::Spawn(sp) if sp.background.is_none() => Some(&sp.expect),
        Action::Wait {
            until: WaitFor::Exit(e),
            ..
        } => Some(e),
        Action::Kill { expect, .. } => Some(expect),
        _ => None,
    }
}

/// A process's end against what the step expects of it.
fn check_exit(step: &Step, proc: &str, ending: &Ending, out: (&Text, &Text), stray: bool, f: &mut Findings) {
    let n = step.n;
    if stray {
        f.failed(
            Some(n),
            Check::StrayProcesses,
            format!("step {n}: {proc} exited ({ending}) but left processes running in its process group"),
        );
    }
    let default = Expect::default();
    let expect = expectation(step).unwrap_or(&default);
    for (check, problem) in check_process(expect, ending, out.0, out.1) {
        f.failed(Some(n), check, format!("step {n}: {proc}: {problem}"));
    }
}

fn check_step(step: &Step, events: &[&EventKind], f: &mut Findings) {
    let n = step.n;
    for e in events {
        match e {
            EventKind::Broken { message } => f.broken(format!("step {n}: {message}")),
            EventKind::SpawnFailed { proc, argv, error } => {
                f.broken(format!("step {n}: cannot start {proc} ({}): {error}", argv.join(" ")))
            }
            EventKind::Timeout {
                proc,
                waiting_for,
                limit_ms,
                cpu_wait_ms,
                limit,
                stdout,
                stderr,
            } => {
                let message = timeout_message(
                    n,
                    proc,
                    waiting_for,
                    &limit_words(*limit_ms, *cpu_wait_ms, *limit),
                    stdout,
                    stderr,
                );
                // Moved as far as a limit moves by waits for a CPU: the
                // program had not used its own time; nothing about it can
                // be judged.
                if crate::events::machine_too_busy(*cpu_wait_ms, *limit_ms) {
                    f.broken(message)
                } else {
                    f.failed(Some(n), Check::Timeout, message)
                }
            }
            EventKind::WaitEnded {
                proc,
                waiting_for,
                ending,
                stdout,
                stderr,
            } => f.failed(
                Some(n),
                Check::EndedEarly,
                format!(
                    "step {n}: {proc} ended ({ending}) before {waiting_for}; stdout {}, stderr {}",
                    escape_short(&stdout.bytes, 120),
                    escape_short(&stderr.bytes, 120)
                ),
            ),
            // A process may exit before reading its input (e.g. it refuses
            // early); what it then did is judged by its exit and output.
            EventKind::StdinFailed { .. } => {}
            EventKind::File {
                op,
                path,
                error: Some(e),
                ..
            } => f.broken(format!("step {n}: {op} {path}: {e}")),
            EventKind::Stopped { ns, error: Some(e) } => f.broken(format!("step {n}: stop {ns}: {e}")),
            EventKind::Sysctl {
                name,
                value,
                error: Some(e),
                ..
            } => f.broken(format!("step {n}: sysctl {name}={value}: {e}")),
            EventKind::Exit {
                proc,
                ending,
                stdout,
                stderr,
                stray_processes,
            } => check_exit(step, proc, ending, (stdout, stderr), *stray_processes, f),
            EventKind::Snapshot {
                ns,
                rows,
                keys,
                contents,
                ..
            } => {
                if let Action::Segments(check) = &step.action {
                    for problem in check_segments(check, rows, keys, contents) {
                        f.failed(
                            Some(n),
                            Check::Segments,
                            format!("step {n} (segment table of ns {ns}): {problem}"),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    check_recorded(step, events, f);
}

/// A step must have recorded what it is judged by: an end for a step that
/// ends a process (or a timeout, or a setup error), the kernel's table for
/// a segments step. Missing, it is a harness bug: BROKEN rather than PASS.
fn check_recorded(step: &Step, events: &[&EventKind], f: &mut Findings) {
    let n = step.n;
    // A step that should have ended a process but recorded no end (nor a
    // timeout or setup error) is a harness bug: say so rather than pass.
    let ended = events.iter().any(|e| {
        matches!(
            e,
            EventKind::Exit { .. }
                | EventKind::Timeout { .. }
                | EventKind::WaitEnded { .. }
                | EventKind::SpawnFailed { .. }
                | EventKind::Aborted { .. }
                | EventKind::Broken { .. }
        )
    });
    if expectation(step).is_some() && !ended {
        f.broken(format!("step {n}: no exit recorded"));
    }
    // A segments step must have looked at the kernel.
    if matches!(step.action, Action::Segments(_))
        && !events.iter().any(|e| {
            matches!(
                e,
                EventKind::Snapshot { .. } | EventKind::Broken { .. } | EventKind::Skipped { .. }
            )
        })
    {
        f.broken(format!("step {n}: no segment table recorded"));
    }
}

/// Compare a process's ending and output with its expectations: each
/// problem with the check it fails.
pub fn check_process(expect: &Expect, ending: &Ending, stdout: &Text, stderr: &Text) -> Vec<(Check, String)> {
    let mut problems: Vec<String> = Vec::new();
    match &expect.ending {
        EndingExpect::Signal(sig) => {
            if !matches!(ending, Ending::Signaled { signal } if signal == sig.as_str()) {
                problems.push(format!(
                    "expected to be killed by {}, but it ended with {ending}",
                    sig.as_str()
                ));
            }
        }
        EndingExpect::Any => {}
        EndingExpect::Nonzero => {
            if *ending == (Ending::Exited { code: 0 }) {
                problems.push("expected to fail (nonzero exit), but it exited 0".into());
            }
        }
        EndingExpect::Refusal | EndingExpect::SuccessOrRefusal => {
            let success_allowed = expect.ending == EndingExpect::SuccessOrRefusal;
            let said_why = stderr.bytes.iter().any(|b| !b.is_ascii_whitespace());
            let problem = match ending {
                Ending::Exited { code: 0 } if success_allowed => None,
                Ending::Exited { code: 0 } => Some("expected a refusal (a nonzero exit with a message on stderr), but it exited 0".to_string()),
                Ending::Exited { .. } if said_why => None,
                Ending::Exited { .. } => Some(format!(
                    "expected a refusal to say why on stderr, but it ended with {ending} and nothing on stderr"
                )),
                _ => Some(format!(
                    "expected {}a refusal (a nonzero exit with a message on stderr), but it ended with {ending}; stderr {}",
                    if success_allowed { "exit 0 or " } else { "" },
                    escape_short(&stderr.bytes, 200)
                )),
            };
            problems.extend(problem);
        }
        EndingExpect::Success | EndingExpect::Code(_) => {
            let code = match expect.ending {
                EndingExpect::Code(c) => c,
                _ => 0,
            };
            if *ending != (Ending::Exited { code }) {
                problems.push(format!(
                    "expected exit code {code}, but it ended with {ending}; stderr {}",
                    escape_short(&stderr.bytes, 200)
                ));
            }
        }
    }
    let mut typed: Vec<(Check, String)> = problems.into_iter().map(|p| (Check::Exit, p)).collect();
    for (check, stream, data, want) in [
        (Check::Stdout, "stdout", stdout, &expect.stdout),
        (Check::Stderr, "stderr", stderr, &expect.stderr),
    ] {
        typed.extend(check_stream(stream, data, want).into_iter().map(|p| (check, p)));
    }
    if let Some(program) = &expect.program {
        if stdout.is_cut() {
            typed.push((
                Check::Model,
                format!(
                    "the executor's report is longer than what is kept ({} bytes)",
                    stdout.total
                ),
            ));
        } else {
            typed.extend(
                crate::model::program::judge_report(program, &stdout.bytes)
                    .into_iter()
                    .map(|p| (Check::Model, p)),
            );
        }
    }
    typed
}

fn check_stream(stream: &str, data: &Text, want: &StreamExpect) -> Vec<String> {
    let mut problems = Vec::new();
    let cut = if data.is_cut() {
        format!(
            " (only the first {} of its {} bytes were kept)",
            data.bytes.len(),
            data.total
        )
    } else {
        String::new()
    };
    if let Some(exact) = &want.exact {
        // Expectations are smaller than what is kept, so a cut capture differs.
        if data.bytes != *exact || data.is_cut() {
            problems.push(format!(
                "{stream} differs: {}{}",
                diff_bytes(exact, &data.bytes),
                if data.is_cut() {
                    format!("; it printed {} bytes in all", data.total)
                } else {
                    String::new()
                }
            ));
        }
    }
    for needle in &want.contains {
        if !crate::events::contains(&data.bytes, needle) {
            problems.push(format!(
                "{stream} does not contain {}; it is {}{cut}",
                escape_short(needle, 120),
                escape_short(&data.bytes, 200)
            ));
        }
    }
    if let Some(re) = &want.regex {
        if !re.is_match(&data.bytes) {
            problems.push(format!(
                "{stream} does not match /{re}/; it is {}{cut}",
                escape_short(&data.bytes, 200)
            ));
        }
    }
    problems
}

/// "expected X, got Y" with the first differing byte pointed out.
pub fn diff_bytes(want: &[u8], got: &[u8]) -> String {
    let at = want.iter().zip(got).take_while(|(a, b)| a == b).count();
    let ctx = at.saturating_sub(20);
    let note = if at == want.len() {
        format!("{} extra bytes after the expected end", got.len() - at)
    } else if at == got.len() {
        format!("{} expected bytes missing at the end", want.len() - at)
    } else {
        format!("first difference at byte {at}")
    };
    if want.len() <= 160 && got.len() <= 160 {
        format!(
            "expected {}, got {} ({note})",
            escape_short(want, 160),
            escape_short(got, 160)
        )
    } else {
        format!(
            "{note}: expected ...{} ({} bytes in all), got ...{} ({} bytes in all)",
            escape_short(&want[ctx..want.len().min(at + 40)], 80),
            want.len(),
            escape_short(&got[ctx..got.len().min(at + 40)], 80),
            got.len()
        )
    }
}

fn check_segments(
    step: &SegmentsCheck,
    rows: &[SegRow],
    keys: &std::collections::BTreeMap<String, Result<i32, String>>,
    contents: &std::collections::BTreeMap<i32, Text>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let table = || {
        if rows.is_empty() {
            "the table is empty".to_string()
        } else {
            format!(
                "the table holds: {}",
                rows.iter().map(SegRow::describe).collect::<Vec<_>>().join("; ")
            )
        }
    };
    let mut matched: Vec<i32> = Vec::new();
    for exp in &step.expect {
        let spec = exp.key.to_string();
        let key = match keys.get(&spec) {
            Some(Ok(k)) => *k,
            // No key file, no key: nothing can exist under it.
            Some(Err(_)) if exp.absent => continue,
            Some(Err(e)) => {
                problems.push(format!("cannot resolve key {spec}: {e}"));
                continue;
            }
            None => continue,
        };
        let label = if spec.starts_with("0x") {
            spec.clone()
        } else {
            format!("{spec} (key 0x{:08x})", key as u32)
        };
        let found: Vec<&SegRow> = rows.iter().filter(|r| r.raw_key == key).collect();
        if exp.absent {
            if !found.is_empty() {
                problems.push(format!(
                    "expected no segment with key {label}, found {}",
                    found.iter().map(|r| r.describe()).collect::<Vec<_>>().join("; ")
                ));
            }
            continue;
        }
        if found.is_empty() {
            problems.push(format!("expected a segment with key {label}, none found; {}", table()));
            continue;
        }
        let want_count = exp.count.unwrap_or(1);
        if found.len() != want_count && (exp.count.is_some() || key != 0) {
            problems.push(format!(
                "expected {want_count} segment(s) with key {label}, found {}",
                found.len()
            ));
        }
        for row in found {
            matched.push(row.shmid);
            problems.extend(compare_row(&label, exp, row, contents.get(&row.shmid)));
        }
    }
    if !step.partial {
        for row in rows.iter().filter(|r| !matched.contains(&r.shmid)) {
            problems.push(format!(
                "unexpected segment (leaked or wrongly keyed): {}",
                row.describe()
            ));
        }
    }
    if let Some(count) = step.count {
        if rows.len() != count {
            problems.push(format!(
                "expected {count} segment(s) in all, found {}; {}",
                rows.len(),
                table()
            ));
        }
    }
    problems
}

fn compare_row(label: &str, exp: &SegmentExpect, row: &SegRow, content: Option<&Text>) -> Vec<String> {
    let mut p = Vec::new();
    let mut field = |name: &str, want: String, got: String| {
        if want != got {
            p.push(format!(
                "segment {label}: {name}: expected {want}, kernel reports {got}"
            ));
        }
    };
    if let Some(size) = exp.size {
        field("size", size.to_string(), row.size.to_string());
    }
    if let Some(want) = exp.mode {
        field(
            "mode",
            format!("{:04o}", want & 0o777),
            format!("{:04o}", row.raw_mode & 0o777),
        );
    }
    if let Some(nattch) = exp.nattch {
        field("nattch", nattch.to_string(), row.nattch.to_string());
    }
    if let Some(dest) = exp.dest {
        let got = row.raw_mode & 0o1000 != 0;
        field("SHM_DEST (marked for destruction)", dest.to_string(), got.to_string());
    }
    // The log drops trailing NULs of a content; restore them up to the segment's size.
    let mut bytes = content.map(|t| t.bytes.clone()).unwrap_or_default();
    bytes.resize(bytes.len().max(row.size.min(CONTENT_CAP as u64) as usize), 0);
    if let Some(want) = &exp.content {
        let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
        if text != want.as_slice() {
            p.push(format!(
                "segment {label}: content (up to the first NUL): {}",
                diff_bytes(want, text)
            ));
        }
    }
    if let Some(want) = &exp.prefix {
        let got = &bytes[..want.len().min(bytes.len())];
        if got != want.as_slice() {
            p.push(format!(
                "segment {label}: first {} bytes: {}",
                want.len(),
                diff_bytes(want, got)
            ));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_points_at_first_difference() {
        let d = diff_bytes(b"hello\n", b"hellp\n");
        assert!(d.contains("first difference at byte 4"), "{d}");
        assert!(diff_bytes(b"ab", b"abc").contains("1 extra bytes"));
        assert!(diff_bytes(b"abc", b"ab").contains("1 expected bytes missing"));
        let long = diff_bytes(&[b'x'; 1000], &[&[b'x'; 500][..], b"y"].concat());
        assert!(long.contains("first difference at byte 500"), "{long}");
    }

    #[test]
    fn default_expectation_is_exit_zero() {
        let e = Expect::default();
        let t = Text::default();
        assert!(check_process(&e, &Ending::Exited { code: 0 }, &t, &t).is_empty());
        let p = check_process(
            &e,
            &Ending::Signaled {
                signal: "SIGSEGV".into(),
            },
            &t,
            &t,
        );
        assert_eq!(p[0].0, Check::Exit);
        assert!(
            p[0].1
                .contains("expected exit code 0, but it ended with killed by SIGSEGV"),
            "{p:?}"
        );
    }

    #[test]
    fn a_refusal_is_a_nonzero_exit_that_says_why_in_any_words() {
        let refusal = |ending: EndingExpect| Expect {
            ending,
            ..Expect::default()
        };
        let text = |s: &str| Text {
            bytes: s.as_bytes().to_vec(),
            total: s.len() as u64,
        };
        let none = text("");
        let said = text("stdin ended before a line was read\n");
        let segv = Ending::Signaled {
            signal: "SIGSEGV".into(),
        };
        let exited = |code| Ending::Exited { code };
        for (ending, stderr, refusal_ok, either_ok) in [
            (exited(3), &said, true, true),
            (
                exited(1),
                &text("Traceback ...\nFileNotFoundError: shmfile\n"),
                true,
                true,
            ),
            (exited(3), &none, false, false),
            (exited(3), &text(" \n"), false, false),
            (exited(0), &said, false, true),
            (exited(0), &none, false, true),
            (segv.clone(), &said, false, false),
        ] {
            for (word, ok) in [
                (EndingExpect::Refusal, refusal_ok),
                (EndingExpect::SuccessOrRefusal, either_ok),
            ] {
                let p = check_process(&refusal(word.clone()), &ending, &none, stderr);
                assert_eq!(p.is_empty(), ok, "{word:?} {ending} {stderr:?}: {p:?}");
                assert!(p.iter().all(|(c, _)| *c == Check::Exit), "{p:?}");
            }
        }
    }

    #[test]
    fn failure_statuses() {
        for s in [Status::Fail, Status::Broken, Status::Timeout, Status::Xpass] {
            assert!(s.is_failure());
        }
        for s in [Status::Pass, Status::Skip, Status::Xfail, Status::Interrupted] {
            assert!(!s.is_failure());
        }
    }
}
