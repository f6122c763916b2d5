//! JUnit XML (`--junit FILE`, and each matrix target's `.junit.xml`).

use std::path::PathBuf;

use super::{kernel_fact, ReportError, Reporter, Run, RunTime};
use crate::outcome::{ScenarioResult, Status};

/// `--junit FILE`.
pub struct Junit {
    pub path: PathBuf,
}

impl Reporter for Junit {
    fn run_finished(&self, run: &Run<'_>) -> Result<(), ReportError> {
        std::fs::write(&self.path, junit(run.implementation, run.results, Some(run.time))).map_err(|source| {
            ReportError::File {
                flag: "--junit",
                path: self.path.clone(),
                source,
            }
        })
    }
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

    use crate::report::test_result as result;

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
}
