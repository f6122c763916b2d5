//! Reporters: human text, JSON, JUnit, TAP and a Markdown summary. They only
//! present verdicts.

use std::io::Write;

use serde::Serialize;

use crate::outcome::ScenarioResult;
use crate::outcome::Status;

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
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

/// The verdict's label, coloured (green PASS, red failures, yellow XFAIL,
/// dim SKIP). Printed through `anstream`, which drops the colour when the
/// output is not a terminal or NO_COLOR is set.
pub fn coloured_label(status: Status, width: usize) -> String {
    use anstyle::{AnsiColor, Style};
    let style = match status {
        Status::Pass => Style::new().fg_color(Some(AnsiColor::Green.into())),
        Status::Xfail => Style::new().fg_color(Some(AnsiColor::Yellow.into())),
        Status::Skip | Status::Interrupted => Style::new().dimmed(),
        Status::Broken => Style::new().fg_color(Some(AnsiColor::Magenta.into())).bold(),
        Status::Fail | Status::Timeout | Status::Xpass => Style::new().fg_color(Some(AnsiColor::Red.into())).bold(),
    };
    format!(
        "{style}{}{style:#}{:pad$}",
        status.label(),
        "",
        pad = width.saturating_sub(status.label().len())
    )
}

/// One progress line per finished scenario.
pub fn progress_line(r: &ScenarioResult) -> String {
    let mut line = format!(
        "{} {} ({} ms)",
        coloured_label(r.status, 7),
        for_terminal(&r.id),
        r.duration.as_millis()
    );
    if matches!(
        r.status,
        Status::Skip | Status::Xfail | Status::Pass | Status::Interrupted
    ) && !r.message.is_empty()
    {
        line.push_str(&format!(" - {}", for_terminal(&r.message)));
    }
    line
}

/// How much of a failure's log the human report shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// A readable timeline, bytes cut with their length.
    Timeline,
    /// Every event in full, as JSON lines (`--verbose`).
    Full,
}

/// The running totals of a long run: an indicatif bar on stderr when it is
/// a terminal (hidden otherwise), one line per finished scenario above it.
pub struct Progress {
    bar: indicatif::ProgressBar,
    counts: std::sync::Mutex<Summary>,
    /// Lines for failures only, and no bar (`--quiet`).
    quiet: bool,
}

impl Progress {
    pub fn new(total: usize, quiet: bool) -> Progress {
        let target = if quiet {
            indicatif::ProgressDrawTarget::hidden()
        } else {
            indicatif::ProgressDrawTarget::stderr()
        };
        let bar = indicatif::ProgressBar::with_draw_target(Some(total as u64), target);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Progress {
            bar,
            counts: std::sync::Mutex::new(Summary::default()),
            quiet,
        }
    }

    /// A scenario finished: its line, then the totals.
    pub fn finished(&self, r: &ScenarioResult) {
        if !self.quiet || r.status.is_failure() {
            let line = progress_line(r);
            // Writes that fail (a closed pipe) must not stop the run.
            self.bar.suspend(|| {
                let _ = writeln!(anstream::stdout().lock(), "{line}");
            });
        }
        let Ok(mut c) = self.counts.lock() else {
            return;
        };
        c.total += 1;
        c.count(r.status);
        self.bar.set_message(format!(
            "{} passed, {} failed, {} skipped",
            c.pass + c.xfail,
            c.failed(),
            c.skip
        ));
        self.bar.inc(1);
    }

    pub fn done(&self) {
        self.bar.finish_and_clear();
    }
}

/// How the human report ends and what it points to.
#[derive(Debug, Clone, Copy)]
pub struct HumanReport<'a> {
    pub detail: Detail,
    /// The run's wall-clock time, in the closing line.
    pub took: std::time::Duration,
    /// `--record`'s folder: each failure names its diagram there.
    pub diagrams: Option<&'a std::path::Path>,
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

/// Does `--record` draw this result's diagram? A failure's, and every
/// one of a replayed order (`replay`): what a reader goes to look at.
pub fn has_diagram(r: &ScenarioResult, replay: bool) -> bool {
    r.log.is_some() && (replay || r.status.is_failure())
}

/// Details of every failure, then the summary, closing with the run's
/// wall-clock time.
pub fn human(
    out: &mut dyn Write,
    implementation: &str,
    results: &[ScenarioResult],
    how: HumanReport,
) -> std::io::Result<()> {
    let HumanReport { detail, took, diagrams } = how;
    let implementation = for_terminal(implementation);
    let failures: Vec<_> = results.iter().filter(|r| r.status.is_failure()).collect();
    if !failures.is_empty() {
        writeln!(out, "\n=== failures ({implementation}) ===")?;
    }
    for r in failures {
        writeln!(
            out,
            "\n--- {} {}: {}",
            coloured_label(r.status, 0),
            for_terminal(&r.id),
            for_terminal(&r.message)
        )?;
        for p in r.problems.iter().skip(1) {
            writeln!(out, "    also: {}", for_terminal(p))?;
        }
        if let Some(log) = &r.log {
            let what = match detail {
                Detail::Timeline => "timeline",
                Detail::Full => "event log",
            };
            writeln!(
                out,
                "  {what} (workdir {}, isolation {}):",
                for_terminal(&log.workdir),
                for_terminal(&log.isolation.to_string())
            )?;
            // The timeline quotes arguments and output of programs under
            // test: shown escaped, line by line, like every other text.
            let text = match detail {
                Detail::Timeline => log.timeline(),
                Detail::Full => log.render_json(),
            };
            for line in text.lines() {
                writeln!(out, "{}", for_terminal(line))?;
            }
            if let Some(dir) = diagrams {
                let svg = dir.join(record_name(&r.id, "svg"));
                writeln!(out, "  diagram: {}", for_terminal(&svg.display().to_string()))?;
            }
        }
    }
    let s = Summary::of(results);
    writeln!(out)?;
    writeln!(
        out,
        "implementation {implementation}: {} scenarios: {} PASS, {} FAIL, {} BROKEN, {} TIMEOUT, {} XPASS, {} XFAIL, {} SKIP{}",
        s.total,
        s.pass,
        s.fail,
        s.broken,
        s.timeout,
        s.xpass,
        s.xfail,
        s.skip,
        if s.interrupted > 0 {
            format!(", {} INTERRUPTED (not judged)", s.interrupted)
        } else {
            String::new()
        }
    )?;
    // The plain closing line CI tools read: passed is PASS and XFAIL, failed
    // is FAIL, BROKEN, TIMEOUT and XPASS.
    writeln!(
        out,
        "shmconf: {} passed, {} failed, {} skipped in {:.1} s",
        s.pass + s.xfail,
        s.failed(),
        s.skip,
        took.as_secs_f64()
    )
}

#[derive(Serialize)]
struct JsonResult<'a> {
    scenario: &'a str,
    status: Status,
    duration_ms: u64,
    message: &'a str,
    problems: &'a [String],
    /// The failures, typed: what a deviation's `fails` pins.
    failures: &'a [crate::outcome::Failure],
}

#[derive(Serialize)]
struct JsonReport<'a> {
    implementation: &'a str,
    results: Vec<JsonResult<'a>>,
    summary: Summary,
}

pub fn json(implementation: &str, results: &[ScenarioResult]) -> String {
    let report = JsonReport {
        implementation,
        results: results
            .iter()
            .map(|r| JsonResult {
                scenario: &r.id,
                status: r.status,
                duration_ms: r.duration.as_millis() as u64,
                message: &r.message,
                problems: &r.problems,
                failures: &r.failures,
            })
            .collect(),
        summary: Summary::of(results),
    };
    serde_json::to_string_pretty(&report).expect("report serialises")
}

/// TAP version 13 (what `prove` and many CI systems read): one test point per
/// scenario; SKIP and INTERRUPTED are `# SKIP`, XFAIL is `# TODO` (a known
/// deviation), failures carry their message as a YAML block.
pub fn tap(implementation: &str, results: &[ScenarioResult]) -> String {
    let mut out = format!("TAP version 13\n1..{}\n", results.len());
    // In the YAML block: a JSON string is a YAML scalar, on one line.
    let yaml = |s: &str| serde_json::to_string(s).unwrap_or_default();
    for (i, r) in results.iter().enumerate() {
        let n = i + 1;
        let id = for_tap(&r.id);
        let line = match r.status {
            Status::Pass => format!("ok {n} - {id}"),
            Status::Skip | Status::Interrupted => {
                format!("ok {n} - {id} # SKIP {}", for_tap(&r.message))
            }
            Status::Xfail => format!("not ok {n} - {id} # TODO {}", for_tap(&r.message)),
            _ => format!("not ok {n} - {id}"),
        };
        out.push_str(&line);
        out.push('\n');
        if r.status.is_failure() {
            out.push_str("  ---\n");
            out.push_str(&format!("  status: {}\n", r.status.label()));
            out.push_str(&format!("  implementation: {}\n", yaml(implementation)));
            out.push_str(&format!("  message: {}\n", yaml(&r.message)));
            out.push_str("  ...\n");
        }
    }
    out
}

/// A Markdown summary for a CI page (`$GITHUB_STEP_SUMMARY`): the counts as
/// a table, then every scenario that did not pass with its message.
pub fn markdown(implementation: &str, results: &[ScenarioResult]) -> String {
    let s = Summary::of(results);
    let mut out = format!("## shmconf: {}\n\n", markdown_cell(implementation, false));
    out.push_str("| total | pass | fail | broken | timeout | xpass | xfail | skip | interrupted |\n");
    out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    out.push_str(&format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        s.total, s.pass, s.fail, s.broken, s.timeout, s.xpass, s.xfail, s.skip, s.interrupted
    ));
    let notable: Vec<&ScenarioResult> = results.iter().filter(|r| r.status != Status::Pass).collect();
    if !notable.is_empty() {
        out.push_str("\n| scenario | status | message |\n| --- | --- | --- |\n");
        for r in notable {
            let mut msg = markdown_cell(&r.message, false);
            if msg.len() > 300 {
                let cut = (0..=300).rev().find(|&i| msg.is_char_boundary(i)).unwrap_or(0);
                msg.truncate(cut);
                msg.push_str("...");
            }
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                markdown_cell(&r.id, true),
                r.status.label(),
                msg
            ));
        }
    }
    out
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

/// A JUnit XML report: every problem of a failing scenario and its
/// timeline in the failure's text; the run's start, length, host, kernel and
/// shmconf version on the suite when known.
pub fn junit(implementation: &str, results: &[ScenarioResult], run: Option<RunTime>) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite, XmlString};
    let mut report = Report::new("shmconf");
    let mut suite = TestSuite::new(format!("shmconf ({implementation})"));
    if let Some(run) = run {
        let started = chrono::DateTime::<chrono::Utc>::from(run.started).fixed_offset();
        report.set_timestamp(started).set_time(run.took);
        suite.set_timestamp(started).set_time(run.took);
    }
    if let Some(host) = kernel_fact("hostname") {
        suite.extra.insert(XmlString::new("hostname"), XmlString::new(host));
    }
    suite.add_property(("shmconf.version", env!("CARGO_PKG_VERSION")));
    if let Some(release) = kernel_fact("osrelease") {
        suite.add_property(("kernel", release.as_str()));
    }
    // Every problem, then the timeline: a CI page shows the failure's text.
    let text = |r: &ScenarioResult| {
        let mut text = r.problems.join("\n");
        if let Some(log) = &r.log {
            text.push_str("\n\n");
            text.push_str(&log.timeline());
        }
        text
    };
    for r in results {
        let status = match r.status {
            Status::Pass | Status::Xfail => TestCaseStatus::success(),
            Status::Skip | Status::Interrupted => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(r.message.as_str());
                s
            }
            Status::Broken => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                s.set_message(r.message.as_str())
                    .set_type("BROKEN")
                    .set_description(text(r));
                s
            }
            other => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(r.message.as_str())
                    .set_type(other.label())
                    .set_description(text(r));
                s
            }
        };
        let mut case = TestCase::new(r.id.as_str(), status);
        case.set_classname(format!("{implementation}.{}", r.id.split('/').next().unwrap_or("")));
        case.set_time(r.duration);
        suite.add_test_case(case);
    }
    report.add_test_suite(suite);
    report.to_string().expect("junit serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, status: Status, message: &str) -> ScenarioResult {
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

    #[test]
    fn tap_lines_carry_no_directive_or_line_of_a_name() {
        let results = [
            result("fails # TODO later", Status::Fail, "x"),
            result("a\nok 9 - injected", Status::Pass, ""),
        ];
        let tap = tap("impl\nnot ok 7 - fake\n1..9", &results);
        let lines: Vec<&str> = tap.lines().collect();
        assert_eq!(lines.iter().filter(|l| l.starts_with("1..")).count(), 1, "{tap}");
        assert!(lines.contains(&"not ok 1 - fails \\# TODO later"), "{tap}");
        assert!(lines.contains(&"ok 2 - a\\nok 9 - injected"), "{tap}");
        assert!(
            !lines.iter().any(|l| l.starts_with("not ok 7") || l.starts_with("ok 9")),
            "{tap}"
        );
        assert!(
            tap.contains("  implementation: \"impl\\nnot ok 7 - fake\\n1..9\"\n"),
            "{tap}"
        );
    }

    /// A failure's JUnit text holds every problem, not the first; the
    /// report says when the run started, how long it took, where and with what.
    #[test]
    fn junit_has_every_problem_and_the_runs_stamp() {
        let mut failed = result("orders/x", Status::Fail, "step 2: exit 1, expected 0");
        failed.problems = vec![
            "step 2: exit 1, expected 0".into(),
            "step 3: stdout \"a\", expected \"b\"".into(),
        ];
        let mut broken = result("orders/y", Status::Broken, "cannot start");
        broken.problems = vec!["cannot start".into(), "and a second reason".into()];
        let run = RunTime {
            started: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
            took: std::time::Duration::from_millis(1500),
        };
        let xml = junit(
            "impl",
            &[failed, broken, result("orders/z", Status::Pass, "")],
            Some(run),
        );
        for needle in [
            "expected 0",
            "step 3: stdout &quot;a&quot;, expected &quot;b&quot;",
            "and a second reason",
            "timestamp=\"2027-01-15T08:00:00",
            "time=\"1.500\"",
            "hostname=",
            "name=\"shmconf.version\" value=\"",
            "name=\"kernel\"",
        ] {
            assert!(xml.contains(needle), "{needle} in {xml}");
        }
        assert!(
            !junit("impl", &[], None).contains("timestamp="),
            "no stamp when not known"
        );
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

    #[test]
    fn markdown_cells_keep_the_table_whole() {
        assert_eq!(markdown_cell("a|b", false), "a\\|b");
        assert_eq!(markdown_cell("x`y|z", true), "``x`y\\|z``");
        assert_eq!(markdown_cell("`", true), "`` ` ``");
        let md = markdown("n|a\nme", &[result("p|q", Status::Fail, "m|n\n| x |")]);
        for line in md.lines().filter(|l| l.starts_with('|')) {
            let bars = line.len() - line.replace('|', "").len() - line.matches("\\|").count();
            assert!(bars == 4 || bars == 10, "{line:?} in\n{md}");
        }
        assert!(md.starts_with("## shmconf: n\\|a\\nme\n"), "{md}");
    }

    #[test]
    fn the_terminal_sees_control_characters_escaped() {
        assert_eq!(for_terminal("a\u{1b}[2Jb\r\n"), "a\\u{1b}[2Jb\\r\\n");
        assert_eq!(for_terminal("plain é"), "plain é");
        assert_eq!(for_terminal("\u{202e}x"), "\\u{202e}x");
        let line = progress_line(&result("evil\u{1b}]0;title\u{7}", Status::Pass, "m\u{1b}[1A"));
        assert!(
            !anstream::adapter::strip_str(&line).to_string().contains('\u{1b}'),
            "{line:?}"
        );
    }
}
