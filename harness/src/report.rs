//! Reporters: human text, JSON and JUnit. They only present verdicts.

use std::io::Write;

use serde::Serialize;

use crate::check::Status;
use crate::runner::ScenarioResult;

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
            *match r.status {
                Status::Pass => &mut s.pass,
                Status::Fail => &mut s.fail,
                Status::Broken => &mut s.broken,
                Status::Skip => &mut s.skip,
                Status::Timeout => &mut s.timeout,
                Status::Xfail => &mut s.xfail,
                Status::Xpass => &mut s.xpass,
                Status::Interrupted => &mut s.interrupted,
            } += 1;
        }
        s
    }

    pub fn failed(&self) -> usize {
        self.fail + self.broken + self.timeout + self.xpass
    }
}

/// One progress line per finished scenario.
pub fn progress_line(r: &ScenarioResult) -> String {
    let mut line = format!("{:<7} {} ({} ms)", r.status.label(), r.id, r.duration.as_millis());
    if matches!(r.status, Status::Skip | Status::Xfail | Status::Pass) && !r.message.is_empty() {
        line.push_str(&format!(" - {}", r.message));
    }
    line
}

/// Details of every failure, then the summary.
pub fn human(out: &mut dyn Write, implementation: &str, results: &[ScenarioResult]) -> std::io::Result<()> {
    let failures: Vec<_> = results.iter().filter(|r| r.status.is_failure()).collect();
    if !failures.is_empty() {
        writeln!(out, "\n=== failures ({implementation}) ===")?;
    }
    for r in failures {
        writeln!(out, "\n--- {} {}: {}", r.status.label(), r.id, r.message)?;
        for p in r.problems.iter().skip(1) {
            writeln!(out, "    also: {p}")?;
        }
        if let Some(log) = &r.log {
            writeln!(
                out,
                "  event log (workdir {}, isolation {}):",
                log.workdir, log.isolation
            )?;
            write!(out, "{}", log.render())?;
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
    // The plain closing line CI tools read.
    writeln!(
        out,
        "shmconf: {} passed, {} failed, {} skipped",
        s.pass + s.xfail,
        s.failed(),
        s.skip
    )
}

#[derive(Serialize)]
struct JsonResult<'a> {
    scenario: &'a str,
    status: Status,
    duration_ms: u64,
    message: &'a str,
    problems: &'a [String],
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
            })
            .collect(),
        summary: Summary::of(results),
    };
    serde_json::to_string_pretty(&report).expect("report serialises")
}

pub fn junit(implementation: &str, results: &[ScenarioResult]) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("shmconf");
    let mut suite = TestSuite::new(format!("shmconf ({implementation})"));
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
                s.set_message(r.message.as_str()).set_type("BROKEN");
                s
            }
            other => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(r.message.as_str()).set_type(other.label());
                if let Some(log) = &r.log {
                    s.set_description(log.render());
                }
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
