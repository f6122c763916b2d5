//! The JSON report: one type, [`RunReport`], written by `shmconf run
//! --format json` and read back by the matrix, so the two cannot drift.

use serde::{Deserialize, Serialize};

use super::{ReportError, Reporter, Run, Summary};
use crate::outcome::{Failure, ScenarioResult, Status};

/// A run's report: the implementation, each scenario's verdict, the counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub implementation: String,
    pub results: Vec<ResultRecord>,
    pub summary: Summary,
}

/// One scenario's verdict as the JSON report gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    pub scenario: String,
    pub status: Status,
    pub duration_ms: u64,
    pub message: String,
    #[serde(default)]
    pub problems: Vec<String>,
    /// The failures, typed: what a deviation's `fails` pins.
    #[serde(default)]
    pub failures: Vec<Failure>,
}

impl RunReport {
    pub fn of(implementation: &str, results: &[ScenarioResult]) -> RunReport {
        RunReport {
            implementation: implementation.to_owned(),
            results: results
                .iter()
                .map(|r| ResultRecord {
                    scenario: r.id.clone(),
                    status: r.status,
                    duration_ms: u64::try_from(r.duration.as_millis()).unwrap_or(u64::MAX),
                    message: r.message.clone(),
                    problems: r.problems.clone(),
                    failures: r.failures.clone(),
                })
                .collect(),
            summary: Summary::of(results),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report of strings and numbers serialises")
    }
}

/// `--format json`: the [`RunReport`] on stdout.
pub struct Json;

impl Reporter for Json {
    fn run_finished(&self, run: &Run<'_>) -> Result<(), ReportError> {
        super::to_stdout(&format!(
            "{}\n",
            RunReport::of(run.implementation, run.results).to_json()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Check;
    use crate::report::test_result as result;

    /// What `run --format json` writes is what the matrix reads: the same
    /// type, every field back as written, the typed failures included.
    #[test]
    fn the_report_reads_back_as_written() {
        let mut failed = result("orders/x", Status::Fail, "step 2: exit 1");
        failed.problems = vec!["step 2: exit 1".into(), "step 3: stdout".into()];
        failed.failures = vec![
            Failure::at_step(2, Check::Exit, "step 2: exit 1".into()),
            Failure::of_exploration(Check::WholeLines, "part of a line".into()),
        ];
        let written = RunReport::of("impl \"q\"", &[failed, result("orders/y", Status::Xfail, "known")]);
        let read: RunReport = serde_json::from_str(&written.to_json()).unwrap();
        // The failures' words are the problems', not written twice.
        let mut expected = written.clone();
        for f in &mut expected.results[0].failures {
            f.text.clear();
        }
        assert_eq!(read, expected);
        assert_eq!(read.summary.fail, 1);
        assert_eq!(read.summary.xfail, 1);
        let value: serde_json::Value = serde_json::from_str(&written.to_json()).unwrap();
        assert_eq!(
            value["results"][0]["failures"][0],
            serde_json::json!({"step": 2, "check": "exit"})
        );
        assert_eq!(
            value["results"][0]["failures"][1],
            serde_json::json!({"check": "whole-lines"})
        );
    }
}
