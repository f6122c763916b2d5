//! The event log: everything execution observed, in order, with timestamps.
//! Checks read only this log; `--record DIR` writes it as JSON.

mod access;
mod call;
mod choice;
pub use access::{conflict, Access};
pub use call::TracedCall;
pub use choice::Choice;

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

/// Bytes a process printed or a segment held: what was kept (bounded) and
/// how many there were in all. Shown as text with C-style escapes for
/// anything not printable ASCII; reports show at most [`REPORT_KEEP`] bytes
/// of it with the full count, so a report stays small whatever was printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text {
    pub bytes: Vec<u8>,
    /// Bytes in all (more than `bytes.len()` when the capture was cut).
    pub total: u64,
}

/// Most bytes of one text a report shows.
pub const REPORT_KEEP: usize = 4096;

impl Text {
    pub fn new(bytes: Vec<u8>) -> Text {
        let total = bytes.len() as u64;
        Text { bytes, total }
    }

    pub fn captured(bytes: Vec<u8>, total: u64) -> Text {
        Text { bytes, total }
    }

    /// Were bytes dropped when this was captured?
    pub fn is_cut(&self) -> bool {
        self.total > self.bytes.len() as u64
    }

    /// For reports: escaped, cut to [`REPORT_KEEP`] bytes with the count.
    pub fn shown(&self) -> String {
        if self.bytes.len() <= REPORT_KEEP && !self.is_cut() {
            return escape(&self.bytes);
        }
        format!(
            "{}...({} bytes in all)",
            escape(&self.bytes[..self.bytes.len().min(REPORT_KEEP)]),
            self.total
        )
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.shown())
    }
}

/// `hello\n` → `hello\\n`; non-ASCII bytes as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// `escape`, cut in the middle when long, for messages.
pub fn escape_short(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        return format!("\"{}\"", escape(bytes));
    }
    let half = max / 2;
    format!(
        "\"{}\" ...({} bytes)... \"{}\"",
        escape(&bytes[..half]),
        bytes.len() - 2 * half,
        escape(&bytes[bytes.len() - half..])
    )
}

/// Which of a scenario's time limits a timeout is (`"step"` or
/// `"scenario"` in the log's JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WhichLimit {
    /// A step's own limit (`--step-timeout`, a step's `timeout_ms`).
    Step,
    /// What was left of the scenario's (or an exploration's) limit.
    Scenario,
}

impl std::fmt::Display for WhichLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WhichLimit::Step => "step",
            WhichLimit::Scenario => "scenario",
        })
    }
}

/// One segment-table row as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegRow {
    pub key: String,
    pub shmid: i32,
    pub mode: String,
    pub size: u64,
    pub nattch: u64,
    pub cpid: Option<i32>,
    pub lpid: Option<i32>,
    pub uid: Option<u32>,
    #[serde(skip)]
    pub raw_key: i32,
    #[serde(skip)]
    pub raw_mode: u32,
}

impl SegRow {
    pub fn from_row(r: &shmconf::segtable::Row) -> SegRow {
        SegRow {
            key: r.key.to_string(),
            shmid: r.shmid,
            mode: format!("{:04o}", r.mode),
            size: r.size,
            nattch: r.nattch,
            cpid: r.cpid,
            lpid: r.lpid,
            uid: r.uid,
            raw_key: r.key.raw(),
            raw_mode: r.mode,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "key {} id {} mode {} size {} nattch {}",
            self.key, self.shmid, self.mode, self.size, self.nattch
        )
    }
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Exited { code: i32 },
    Signaled { signal: String },
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Exited { code } => write!(f, "exit code {code}"),
            Ending::Signaled { signal } => write!(f, "killed by {signal}"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    Spawn {
        proc: String,
        argv: Vec<String>,
        ns: String,
        pid: i32,
        uid: Option<u32>,
    },
    SpawnFailed {
        proc: String,
        argv: Vec<String>,
        error: String,
    },
    Stdin {
        proc: String,
        data: Text,
        closed: bool,
    },
    StdinFailed {
        proc: String,
        error: String,
    },
    OutputSeen {
        proc: String,
        text: String,
    },
    Exit {
        proc: String,
        ending: Ending,
        stdout: Text,
        stderr: Text,
        stray_processes: bool,
    },
    /// A limit ran out: the step's own, or what was left of the scenario's.
    Timeout {
        proc: String,
        waiting_for: String,
        limit_ms: u64,
        /// Wall time the limit was moved by, while the program (or the
        /// harness watching it) was ready to run without a CPU: a busy
        /// machine's share, not the program's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpu_wait_ms: Option<u64>,
        /// Which limit fired.
        limit: WhichLimit,
        stdout: Text,
        stderr: Text,
    },
    /// The process ended before what a wait was waiting for happened.
    WaitEnded {
        proc: String,
        waiting_for: String,
        ending: Ending,
        stdout: Text,
        stderr: Text,
    },
    /// The run was interrupted (SIGINT, SIGTERM, SIGHUP) during this step.
    Interrupted {
        reason: String,
    },
    Signal {
        proc: String,
        signal: String,
    },
    Snapshot {
        ns: String,
        rows: Vec<SegRow>,
        /// Shared isolation: segments present before the scenario, left out of `rows`.
        foreign_ignored: usize,
        /// Key specs of the step resolved in the scenario dir (error text if ftok failed).
        keys: BTreeMap<String, Result<i32, String>>,
        /// Contents of segments whose content the step checks (all, for an
        /// exploration's observation), by shmid, bounded.
        contents: BTreeMap<i32, Text>,
    },
    File {
        op: String,
        path: String,
        error: Option<String>,
        /// Device and inode of the file afterwards (what ftok keys come from).
        #[serde(skip_serializing_if = "Option::is_none")]
        identity: Option<(u64, u64)>,
    },
    /// What teardown removed that the scenario had left (shared namespaces).
    Removed {
        what: String,
    },
    Sysctl {
        ns: String,
        name: String,
        value: String,
        error: Option<String>,
    },
    /// The harness could not do what the scenario asked (setup error).
    Broken {
        message: String,
    },
    /// Remaining steps not run (after a timeout, a setup error or Ctrl-C).
    Aborted {
        reason: String,
    },
    /// Processes still running at the end, killed with their group.
    Reaped {
        proc: String,
    },
    /// Docker backend: a namespace's container started (or Docker refused it).
    Container {
        ns: String,
        name: String,
        ipc: String,
        pid: i32,
        error: Option<String>,
    },
    /// The scenario cannot run here after all (found out while running).
    Skipped {
        reason: String,
    },
    /// The harness closed its handle on a namespace (`drop_ns`).
    NamespaceDropped {
        ns: String,
    },
    /// The machine's Shmem from /proc/meminfo (`shmem_mark`, `shmem_freed`).
    Shmem {
        mark: String,
        shmem_kib: u64,
        freed_kib: Option<i64>,
    },
    /// Docker backend: a namespace's container was removed by a `stop` step.
    Stopped {
        ns: String,
        error: Option<String>,
    },
    /// A system-call exploration let one thing happen: a traced run
    /// executed `call` and went on to its next point (or its end), or a
    /// piece of input was fed. `enabled`: the choices there were;
    /// `touches`: what it may have read or changed that another run's
    /// events can also touch (the dependency partial-order reduction uses).
    Scheduled {
        choice: Choice,
        call: String,
        enabled: Vec<Choice>,
        touches: Vec<Access>,
        /// The call decoded (none for a piece of input), for the judge.
        #[serde(skip_serializing_if = "Option::is_none")]
        op: Option<TracedCall>,
        /// What a table call returned (-errno on failure).
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<i64>,
        /// The content (up to its first NUL) of each segment the run had
        /// attached, before and after the step: what it could have read.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        seen: Vec<Text>,
    },
    /// Every choice left was asleep: the rest of this order is equivalent
    /// to one explored already, so it stops here (partial-order reduction).
    Redundant {
        asleep: Vec<Choice>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Microseconds since the scenario started.
    pub t_us: u64,
    /// 1-based step number, or none for setup/teardown.
    pub step: Option<usize>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// A scenario's whole log.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Log {
    pub scenario: String,
    pub implementation: String,
    pub workdir: String,
    /// Namespace name → inode of the IPC namespace it ran in.
    pub namespaces: BTreeMap<String, u64>,
    /// The backend that ran it.
    pub isolation: String,
    /// The oracle that read the kernel's view.
    pub oracle: String,
    pub events: Vec<Event>,
}

impl Log {
    pub fn step_events(&self, step: usize) -> impl Iterator<Item = &EventKind> {
        self.events
            .iter()
            .filter(move |e| e.step == Some(step))
            .map(|e| &e.kind)
    }

    /// Every event as one JSON line with its time and step: the full log
    /// (`--verbose`; `--record` writes the same events as one JSON file).
    pub fn render_json(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            let step = e.step.map_or("  -".to_string(), |s| format!("{s:>3}"));
            let body = serde_json::to_string(&e.kind).unwrap_or_default();
            out.push_str(&format!("  {:>8.1} ms  step {step}  {body}\n", e.t_us as f64 / 1000.0));
        }
        out
    }

    /// The log as a timeline people read: time, step, who, what happened,
    /// bytes escaped and cut to [`TIMELINE_BYTES`] with their length.
    pub fn timeline(&self) -> String {
        let mut out = String::new();
        for row in self.rows() {
            let step = row.step.map_or("-".to_string(), |s| format!("#{s}"));
            let mut lines = row.lines.iter();
            let first = lines.next().map_or("", String::as_str);
            out.push_str(&format!(
                "  {:>9.1} ms {step:>4}  {:<12} {first}\n",
                row.t_us as f64 / 1000.0,
                row.who
            ));
            for more in lines {
                out.push_str(&format!("  {:>9} {:>4}  {:<12} {more}\n", "", "", ""));
            }
        }
        out
    }

    /// The log as a reader follows it, one row an event: who acted, what
    /// happened in words, and how it went. A bare table read (no content,
    /// no keys: system-call exploration reads one after every step) is a
    /// row only when the table changed. The timeline and the diagram
    /// (`crate::diagram`) are both drawn from these rows.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut last_rows: BTreeMap<&str, &[SegRow]> = BTreeMap::new();
        for e in &self.events {
            let mut lane = Lane::Actor;
            if let EventKind::Snapshot {
                ns,
                rows: segs,
                keys,
                contents,
                ..
            } = &e.kind
            {
                let same = last_rows
                    .insert(ns, segs)
                    .is_some_and(|before| before == segs.as_slice());
                if same && keys.is_empty() && contents.is_empty() {
                    continue;
                }
                lane = Lane::Kernel;
            }
            let mark = match &e.kind {
                EventKind::Exit {
                    ending: Ending::Signaled { .. },
                    ..
                }
                | EventKind::Timeout { .. }
                | EventKind::SpawnFailed { .. }
                | EventKind::Broken { .. } => Mark::Wrong,
                EventKind::Scheduled { result: Some(r), .. } if *r < 0 => Mark::CallFailed,
                _ => Mark::Plain,
            };
            let (who, what) = e.kind.describe();
            rows.push(Row {
                t_us: e.t_us,
                step: e.step,
                who,
                lines: what.lines().map(str::to_owned).collect(),
                lane,
                mark,
            });
        }
        rows
    }
}

/// One event as a reader follows it ([`Log::rows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub t_us: u64,
    pub step: Option<usize>,
    /// Who acted: a process's name, the kernel, the harness, a file.
    pub who: String,
    /// What happened, in words; a segment table's rows as more lines.
    pub lines: Vec<String>,
    pub lane: Lane,
    pub mark: Mark,
}

/// Whose lane a row is drawn in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The kernel's segment table as a read found it.
    Kernel,
    /// A process, the harness or a file: the row's `who`.
    Actor,
}

/// How a row went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Plain,
    /// A system call that returned an error.
    CallFailed,
    /// Killed by a signal, timed out, not started, or broken.
    Wrong,
}

/// Most bytes of one text a timeline line shows.
pub const TIMELINE_BYTES: usize = 48;

/// `"hello\n"` or, when longer than `max` bytes, `"hel"... (2000 bytes)`.
pub fn quote_cut(bytes: &[u8], total: u64, max: usize) -> String {
    if bytes.len() <= max && total <= max as u64 {
        format!("\"{}\"", escape(bytes))
    } else {
        format!("\"{}\"... ({total} bytes)", escape(&bytes[..bytes.len().min(max)]))
    }
}

impl Text {
    /// For a timeline: quoted, escaped, cut with the length.
    pub fn brief(&self) -> String {
        quote_cut(&self.bytes, self.total, TIMELINE_BYTES)
    }
}

fn argv_brief(argv: &[String]) -> String {
    let joined = shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "));
    if joined.len() <= 120 {
        joined
    } else {
        let cut = (0..=120).rev().find(|&i| joined.is_char_boundary(i)).unwrap_or(0);
        format!("{}... ({} bytes)", &joined[..cut], joined.len())
    }
}

fn outputs(stdout: &Text, stderr: &Text) -> String {
    let mut s = format!("stdout {}", stdout.brief());
    if stderr.total > 0 {
        s.push_str(&format!(", stderr {}", stderr.brief()));
    }
    s
}

impl EventKind {
    /// Who acted (a process, the kernel, the harness) and what happened, in
    /// words; continuation lines for a segment table's rows.
    pub fn describe(&self) -> (String, String) {
        let harness = || "harness".to_string();
        let err = |e: &Option<String>| e.as_ref().map(|e| format!(": FAILED: {e}")).unwrap_or_default();
        match self {
            EventKind::Interrupted { reason } => (harness(), format!("interrupted: {reason}")),
            EventKind::Snapshot {
                ns,
                rows,
                foreign_ignored,
                keys,
                contents,
            } => (
                "kernel".into(),
                describe_snapshot(ns, rows, *foreign_ignored, keys, contents),
            ),
            EventKind::File {
                op,
                path,
                error,
                identity,
            } => (
                "file".into(),
                format!(
                    "{op} {path}{}{}",
                    identity
                        .map(|(dev, ino)| format!(" (dev {dev:#x} inode {ino})"))
                        .unwrap_or_default(),
                    err(error)
                ),
            ),
            EventKind::Removed { what } => (harness(), format!("removed {what}")),
            EventKind::Sysctl { ns, name, value, error } => (
                "kernel".into(),
                format!("ns {ns}: sysctl {name} = {value}{}", err(error)),
            ),
            EventKind::Broken { message } => (harness(), format!("BROKEN: {message}")),
            EventKind::Aborted { reason } => (harness(), format!("remaining steps not run: {reason}")),
            EventKind::Container {
                ns,
                name,
                ipc,
                pid,
                error,
            } => (
                "container".into(),
                format!("{name} for ns {ns} (ipc {ipc}, pid {pid}){}", err(error)),
            ),
            EventKind::Skipped { reason } => (harness(), format!("SKIP: {reason}")),
            EventKind::NamespaceDropped { ns } => ("kernel".into(), format!("ns {ns}: harness's handle closed")),
            EventKind::Shmem {
                mark,
                shmem_kib,
                freed_kib,
            } => (
                "kernel".into(),
                format!(
                    "Shmem at {mark}: {shmem_kib} KiB{}",
                    freed_kib.map(|f| format!(" ({f} KiB freed)")).unwrap_or_default()
                ),
            ),
            EventKind::Stopped { ns, error } => ("container".into(), format!("ns {ns} stopped{}", err(error))),
            EventKind::Redundant { asleep } => (
                harness(),
                format!(
                    "stop: the rest is explored already (asleep: {})",
                    asleep.iter().map(Choice::label).collect::<Vec<_>>().join(", ")
                ),
            ),
            EventKind::Scheduled {
                choice,
                call,
                enabled,
                result,
                op,
                ..
            } => {
                let chose = if enabled.len() > 1 {
                    format!(
                        " (of {})",
                        enabled.iter().map(Choice::label).collect::<Vec<_>>().join(", ")
                    )
                } else {
                    String::new()
                };
                let returned = op.as_ref().map(|c| c.describe_result(*result)).unwrap_or_default();
                (choice.run().to_string(), format!("{call}{returned}{chose}"))
            }
            EventKind::Spawn { .. }
            | EventKind::SpawnFailed { .. }
            | EventKind::Stdin { .. }
            | EventKind::StdinFailed { .. }
            | EventKind::OutputSeen { .. }
            | EventKind::Exit { .. }
            | EventKind::Timeout { .. }
            | EventKind::WaitEnded { .. }
            | EventKind::Signal { .. }
            | EventKind::Reaped { .. } => self.describe_process(),
        }
    }

    /// What happened to a process under test (its start, input, output,
    /// end); `describe` sends only those here.
    fn describe_process(&self) -> (String, String) {
        match self {
            EventKind::Spawn {
                proc,
                argv,
                ns,
                pid,
                uid,
            } => (
                proc.clone(),
                format!(
                    "start {} (pid {pid}, ns {ns}{})",
                    argv_brief(argv),
                    uid.map(|u| format!(", uid {u}")).unwrap_or_default()
                ),
            ),
            EventKind::SpawnFailed { proc, argv, error } => {
                (proc.clone(), format!("cannot start {}: {error}", argv_brief(argv)))
            }
            EventKind::Stdin { proc, data, closed } => (
                proc.clone(),
                format!(
                    "stdin <- {}{}",
                    data.brief(),
                    if *closed { ", then closed" } else { ", kept open" }
                ),
            ),
            EventKind::StdinFailed { proc, error } => (proc.clone(), format!("stdin failed: {error}")),
            EventKind::OutputSeen { proc, text } => (proc.clone(), format!("printed {text:?}")),
            EventKind::Exit {
                proc,
                ending,
                stdout,
                stderr,
                stray_processes,
            } => (
                proc.clone(),
                format!(
                    "{ending}; {}{}",
                    outputs(stdout, stderr),
                    if *stray_processes {
                        "; left processes behind (killed)"
                    } else {
                        ""
                    }
                ),
            ),
            EventKind::Timeout {
                proc,
                waiting_for,
                limit_ms,
                cpu_wait_ms,
                limit,
                stdout,
                stderr,
            } => (
                proc.clone(),
                format!(
                    "TIMEOUT after {limit_ms} ms ({limit} limit{}) waiting for {waiting_for}; {}",
                    cpu_wait_text(*cpu_wait_ms, *limit_ms),
                    outputs(stdout, stderr)
                ),
            ),
            EventKind::WaitEnded {
                proc,
                waiting_for,
                ending,
                stdout,
                stderr,
            } => (
                proc.clone(),
                format!("{ending} while waited for {waiting_for}; {}", outputs(stdout, stderr)),
            ),
            EventKind::Signal { proc, signal } => (proc.clone(), format!("sent {signal}")),
            EventKind::Reaped { proc } => (proc.clone(), "still running at the end: killed with its group".into()),
            other => ("harness".into(), format!("{other:?}")),
        }
    }
}

/// A snapshot of namespace `ns`'s table in words: a line per segment, with
/// its content, and the ftok keys resolved by then.
fn describe_snapshot(
    ns: &str,
    rows: &[SegRow],
    foreign_ignored: usize,
    keys: &BTreeMap<String, Result<i32, String>>,
    contents: &BTreeMap<i32, Text>,
) -> String {
    let mut s = match rows.len() {
        0 => format!("ns {ns}: no segment"),
        1 => format!("ns {ns}: 1 segment"),
        n => format!("ns {ns}: {n} segments"),
    };
    if foreign_ignored > 0 {
        s.push_str(&format!(" ({foreign_ignored} not the scenario's, ignored)"));
    }
    let resolved: Vec<String> = keys
        .iter()
        .filter(|(spec, _)| spec.starts_with("ftok:"))
        .map(|(spec, k)| match k {
            Ok(k) => format!("{spec} = {:#010x}", *k as u32),
            Err(e) => format!("{spec}: {e}"),
        })
        .collect();
    if !resolved.is_empty() {
        s.push_str(&format!("; {}", resolved.join(", ")));
    }
    for r in rows {
        s.push_str(&format!("\n  {}", r.describe()));
        if let Some(uid) = r.uid {
            s.push_str(&format!(" uid {uid}"));
        }
        if let Some(text) = contents.get(&r.shmid) {
            s.push_str(&format!("\n    content {}", text.brief()));
        }
    }
    s
}

/// What a busy machine added to a limit, as a timeout says it after the
/// limit's name: ", moved 1200 ms later by waits for a CPU" (or nothing).
pub fn cpu_wait_text(cpu_wait_ms: Option<u64>, limit_ms: u64) -> String {
    match cpu_wait_ms {
        Some(wait) if machine_too_busy(cpu_wait_ms, limit_ms) => format!(
            ", moved {wait} ms later by waits for a CPU, the most a limit moves ({MOST_CPU_WAIT_IN_LIMITS} limits): the machine is too busy to judge it"
        ),
        Some(wait) if wait > 0 => format!(", moved {wait} ms later by waits for a CPU"),
        _ => String::new(),
    }
}

/// Whether a busy machine moved a limit as far as it moves: the program had
/// not used its limit of time it could run (the rest was waits for a CPU),
/// so its timeout is the machine's, not the program's: BROKEN, never a
/// TIMEOUT or FAIL blamed on the implementation.
pub fn machine_too_busy(cpu_wait_ms: Option<u64>, limit_ms: u64) -> bool {
    cpu_wait_ms.is_some_and(|wait| limit_ms > 0 && wait >= limit_ms * u64::from(MOST_CPU_WAIT_IN_LIMITS))
}

/// How far a busy machine may move a limit, in limits: the clock stays a
/// safety net, a program that waits for nothing but a CPU is judged by at
/// most `1 + MOST_CPU_WAIT_IN_LIMITS` limits of wall time.
pub const MOST_CPU_WAIT_IN_LIMITS: u32 = 3;

/// Whether `needle` occurs in `hay` (an empty needle always does).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limit moved by a busy machine says by how much, and says when it
    /// reached the most it moves (the clock as the safety net).
    #[test]
    fn a_moved_limit_says_so_and_when_it_hit_its_cap() {
        assert_eq!(cpu_wait_text(None, 600), "");
        assert_eq!(cpu_wait_text(Some(0), 600), "");
        assert_eq!(cpu_wait_text(Some(61), 600), ", moved 61 ms later by waits for a CPU");
        assert!(cpu_wait_text(Some(1800), 600)
            .ends_with("the most a limit moves (3 limits): the machine is too busy to judge it"));
        assert!(!machine_too_busy(None, 600));
        assert!(!machine_too_busy(Some(1799), 600));
        assert!(machine_too_busy(Some(1800), 600));
    }

    #[test]
    fn escapes() {
        assert_eq!(escape(b"a\n\r\x00\xff\"\\"), "a\\n\\r\\x00\\xff\\\"\\\\");
        assert_eq!(escape_short(b"abcdefghij", 4), "\"ab\" ...(6 bytes)... \"ij\"");
    }

    #[test]
    fn timeline_cuts_bytes_with_their_length() {
        let log = Log {
            events: vec![
                Event {
                    t_us: 1500,
                    step: Some(2),
                    kind: EventKind::Stdin {
                        proc: "writer@2".into(),
                        data: Text::new(vec![b'x'; 5000]),
                        closed: true,
                    },
                },
                Event {
                    t_us: 2500,
                    step: Some(2),
                    kind: EventKind::Exit {
                        proc: "writer@2".into(),
                        ending: Ending::Signaled {
                            signal: "SIGSEGV".into(),
                        },
                        stdout: Text::new(b"a\x01\n".to_vec()),
                        stderr: Text::default(),
                        stray_processes: false,
                    },
                },
            ],
            ..Log::default()
        };
        let t = log.timeline();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(lines[0].contains("1.5 ms"), "{t}");
        assert!(lines[0].contains("#2  writer@2"), "{t}");
        assert!(
            lines[0].contains(&format!(
                "stdin <- \"{}\"... (5000 bytes), then closed",
                "x".repeat(TIMELINE_BYTES)
            )),
            "{t}"
        );
        assert!(lines[1].contains("killed by SIGSEGV; stdout \"a\\x01\\n\""), "{t}");
        assert!(t.len() < 400, "bounded: {t}");
    }
}
