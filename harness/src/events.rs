//! The event log: everything execution observed, in order, with timestamps.
//! Checks read only this log; `--record DIR` writes it as JSON.

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
        /// "step" or "scenario": which limit fired.
        limit: String,
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

    /// A readable one-line-per-event rendering for failure reports.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            let step = e.step.map_or("  -".to_string(), |s| format!("{s:>3}"));
            let body = serde_json::to_string(&e.kind).unwrap_or_default();
            out.push_str(&format!("  {:>8.1} ms  step {step}  {body}\n", e.t_us as f64 / 1000.0));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(escape(b"a\n\r\x00\xff\"\\"), "a\\n\\r\\x00\\xff\\\"\\\\");
        assert_eq!(escape_short(b"abcdefghij", 4), "\"ab\" ...(6 bytes)... \"ij\"");
    }
}
