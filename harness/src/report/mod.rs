//! Reporters: sinks fed the same run. Each format is a module implementing
//! [`Reporter`] (as nextest's reporters are): `human` (progress and the
//! failures' timelines), `json` (the one [`json::RunReport`] type the matrix
//! reads back), `tap`, `markdown` (the CI step summary), `junit` and `record`
//! (each result's log as JSON and failures' diagrams, drawn by `diagram`).
//! They present verdicts and decide none; `main.rs` only picks which sinks a
//! run has.

pub mod diagram;
pub mod human;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod record;
pub mod tap;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::outcome::ScenarioResult;
use crate::outcome::Status;

/// A finished run, as every reporter gets it.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    pub implementation: &'a str,
    pub results: &'a [ScenarioResult],
    pub time: RunTime,
}

/// A sink of a run's results. `scenario_finished` is called from the
/// runner's workers as each scenario ends (hence `&self` and `Sync`);
/// `run_finished` once, with every result in the run's order.
pub trait Reporter: Send + Sync {
    fn scenario_finished(&self, _result: &ScenarioResult) {}
    fn run_finished(&self, run: &Run<'_>) -> Result<(), ReportError>;
}

/// A report that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Writing to stdout failed (other than its reader having gone: a
    /// reader that stopped reading, `| head`, got what it wanted).
    #[error("stdout: {0}")]
    Stdout(#[source] std::io::Error),
    /// A report file (or folder) given by `flag` could not be written.
    #[error("{flag} {}: {source}", path.display())]
    File {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The sinks of one run, fed in the order they were added.
#[derive(Default)]
pub struct Reporters(Vec<Box<dyn Reporter>>);

impl Reporters {
    pub fn add(&mut self, reporter: impl Reporter + 'static) {
        self.0.push(Box::new(reporter));
    }

    pub fn scenario_finished(&self, result: &ScenarioResult) {
        for r in &self.0 {
            r.scenario_finished(result);
        }
    }

    /// Every sink gets the run, even after one failed to write (a file
    /// that cannot be written must not cost the others); the failures.
    pub fn run_finished(&self, run: &Run<'_>) -> Vec<ReportError> {
        self.0.iter().filter_map(|r| r.run_finished(run).err()).collect()
    }
}

/// Text to stdout, flushed.
fn to_stdout(text: &str) -> Result<(), ReportError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .or_else(unless_closed)
        .map_err(ReportError::Stdout)
}

/// A write error, unless it says stdout's reader has gone.
fn unless_closed(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e)
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub total: usize,
    pub pass: usize,
    pub fail: usize,
    pub broken: usize,
    pub skip: usize,
    pub timeout: usize,
    pub xfail: usize,
    pub xpass: usize,
    pub interrupted: usize,
}

impl Summary {
    pub fn of(results: &[ScenarioResult]) -> Summary {
        let mut s = Summary {
            total: results.len(),
            ..Summary::default()
        };
        for r in results {
            s.count(r.status);
        }
        s.total = results.len();
        s
    }

    /// One more verdict in the counts (not in `total`).
    pub fn count(&mut self, status: Status) {
        *match status {
            Status::Pass => &mut self.pass,
            Status::Fail => &mut self.fail,
            Status::Broken => &mut self.broken,
            Status::Skip => &mut self.skip,
            Status::Timeout => &mut self.timeout,
            Status::Xfail => &mut self.xfail,
            Status::Xpass => &mut self.xpass,
            Status::Interrupted => &mut self.interrupted,
        } += 1;
    }

    pub fn failed(&self) -> usize {
        self.fail + self.broken + self.timeout + self.xpass
    }

    /// Scenarios that got a verdict on the implementation (not SKIP or
    /// INTERRUPTED): zero means the run checked nothing.
    pub fn judged(&self) -> usize {
        self.pass + self.failed() + self.xfail
    }
}

/// A name, id or message as the terminal shows it: control characters
/// (escape sequences, newlines, carriage returns) and bidirectional
/// overrides as Rust escapes, so no text of a scenario file or a program
/// can move the cursor, recolour, or fake a line of the report.
pub fn for_terminal(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A TAP description: one line, and no `#` that TAP would read as the start
/// of a directive (`fails # TODO later` must not turn a failure into a TODO).
pub fn for_tap(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in for_terminal(text).chars() {
        match c {
            '#' => out.push_str("\\#"),
            _ => out.push(c),
        }
    }
    out
}

/// A Markdown table cell: one line, `|` escaped, and in a code span when
/// asked (backticks in the text widen the span's fence so it stays closed).
pub fn markdown_cell(text: &str, code: bool) -> String {
    let one_line = for_terminal(text).replace('|', "\\|");
    if !code {
        return one_line;
    }
    let longest = one_line.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if one_line.starts_with('`') || one_line.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{one_line}{pad}{fence}")
}

/// `/proc/sys/kernel/NAME` (`hostname`, `osrelease`): what reports say
/// about the machine that made them.
pub fn kernel_fact(name: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()
        .map(|t| t.trim().to_owned())
}

/// Text as HTML or XML character data (the matrix page, the SVG diagram):
/// markup escaped, and characters XML 1.0 cannot hold (controls a program
/// may print) as U+FFFD.
pub fn markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// When a run started and how long it took, for the reports that say so.
#[derive(Debug, Clone, Copy)]
pub struct RunTime {
    pub started: std::time::SystemTime,
    pub took: std::time::Duration,
}

/// A record file's name for a scenario id and an extension ("json",
/// "svg"): every byte other than ASCII letters, digits, `-`, `_` and `.` as
/// `%XX`, so two ids never share a file (`a/b` is `a%2Fb.json`, `a__b`
/// stays `a__b.json`).
pub fn record_name(id: &str, extension: &str) -> String {
    let mut name = String::with_capacity(id.len() + 5);
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            name.push(b as char);
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    // "." and ".." are not file names of their own.
    if name.bytes().all(|b| b == b'.') {
        name = name.replace('.', "%2E");
    }
    // A file name has at most 255 bytes: a long one keeps its start and
    // ends in a hash of the whole id ('~' is escaped in every other name).
    const KEEP: usize = 200;
    if name.len() > KEEP {
        let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        name.truncate(KEEP);
        name.push_str(&format!("~{hash:016x}"));
    }
    name.push('.');
    name.push_str(extension);
    name
}

/// A result with no log, for the reporters' tests.
#[cfg(test)]
pub(crate) fn test_result(id: &str, status: Status, message: &str) -> ScenarioResult {
    ScenarioResult {
        id: id.into(),
        status,
        duration: std::time::Duration::from_millis(1),
        message: message.into(),
        problems: vec![],
        failures: vec![],
        log: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts what it is fed; fails to write when told to.
    struct Counting {
        scenarios: Arc<AtomicUsize>,
        runs: Arc<AtomicUsize>,
        fails: bool,
    }

    impl Reporter for Counting {
        fn scenario_finished(&self, _: &ScenarioResult) {
            self.scenarios.fetch_add(1, Ordering::SeqCst);
        }
        fn run_finished(&self, _: &Run<'_>) -> Result<(), ReportError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            if self.fails {
                return Err(ReportError::File {
                    flag: "--test",
                    path: "/x".into(),
                    source: std::io::Error::other("full"),
                });
            }
            Ok(())
        }
    }

    /// Each sink gets every finished scenario and the run, in order, and
    /// a sink that cannot write costs no other sink its report.
    #[test]
    fn every_sink_gets_the_run_even_after_one_fails() {
        let (scenarios, runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut sinks = Reporters::default();
        for fails in [false, true, false] {
            sinks.add(Counting {
                scenarios: scenarios.clone(),
                runs: runs.clone(),
                fails,
            });
        }
        let results = [test_result("a", Status::Pass, ""), test_result("b", Status::Fail, "m")];
        for r in &results {
            sinks.scenario_finished(r);
        }
        let run = Run {
            implementation: "impl",
            results: &results,
            time: RunTime {
                started: std::time::UNIX_EPOCH,
                took: std::time::Duration::ZERO,
            },
        };
        let unwritten = sinks.run_finished(&run);
        assert_eq!(scenarios.load(Ordering::SeqCst), 6);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(unwritten.len(), 1);
        assert_eq!(unwritten[0].to_string(), "--test /x: full");
    }

    #[test]
    fn record_names_are_unique_per_id() {
        let ids = ["a/b", "a__b", "a%2Fb", "a_2Fb", "..", ".", "x y", "é"];
        let names: std::collections::BTreeSet<String> = ids.iter().map(|i| record_name(i, "json")).collect();
        assert_eq!(names.len(), ids.len(), "{names:?}");
        assert_eq!(record_name("keys/missing", "json"), "keys%2Fmissing.json");
        assert!(names
            .iter()
            .all(|n| !n.contains('/') && n != "..json" && n != "...json"));
        let long_a = format!("{}a", "é".repeat(200));
        let long_b = format!("{}b", "é".repeat(200));
        let (a, b) = (record_name(&long_a, "json"), record_name(&long_b, "json"));
        assert_ne!(a, b, "ids alike in their first 200 bytes stay apart");
        assert!(a.len() <= 255 && b.len() <= 255, "{a}");
    }
}
