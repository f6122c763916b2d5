//! The human report: a line per finished scenario as it finishes (above an
//! indicatif bar on a terminal), then every failure with its timeline, the
//! counts and the closing line CI tools read.

use std::io::Write;
use std::path::PathBuf;

use super::{for_terminal, record_name, ReportError, Reporter, Run, Summary};
use crate::outcome::{ScenarioResult, Status};

/// The human reporter: the progress while the run goes, the report at its end.
pub struct Human {
    detail: Detail,
    diagrams: Option<PathBuf>,
    progress: Progress,
}

impl Human {
    /// `total` scenarios to come; `quiet`: lines for failures only, no bar;
    /// `diagrams`: `--record`'s folder, where each failure's diagram is.
    pub fn new(detail: Detail, diagrams: Option<PathBuf>, total: usize, quiet: bool) -> Human {
        Human {
            detail,
            diagrams,
            progress: Progress::new(total, quiet),
        }
    }
}

impl Reporter for Human {
    fn scenario_finished(&self, r: &ScenarioResult) {
        self.progress.finished(r);
    }

    fn run_finished(&self, run: &Run<'_>) -> Result<(), ReportError> {
        self.progress.done();
        let how = HumanReport {
            detail: self.detail,
            took: run.time.took,
            diagrams: self.diagrams.as_deref(),
        };
        let mut out = anstream::stdout().lock();
        human(&mut out, run.implementation, run.results, how)
            .and_then(|()| out.flush())
            .or_else(super::unless_closed)
            .map_err(ReportError::Stdout)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::report::test_result as result;

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
