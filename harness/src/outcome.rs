//! Outcomes: a verdict mapped through the implementation's known deviations
//! (the expectations file) into what the run reports. A deviation pins the
//! failures it expects, as WPT expectation files pin subtest results: a FAIL
//! (or TIMEOUT) whose every failure is one the deviation names is XFAIL; a
//! failure it does not name is a FAIL ("a known-failing scenario failed
//! differently"); a PASS is XPASS. The same for scripted scenarios and
//! explorations.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::events::Log;
use crate::scenario::LoadError;

/// A scenario's outcome.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Setup or harness error: the scenario could not be judged.
    Broken,
    Skip,
    Timeout,
    /// Failed, as the expectations file says it does.
    Xfail,
    /// Passed, though the expectations file says it fails.
    Xpass,
    /// The run was stopped (SIGINT, SIGTERM, SIGHUP) before the scenario
    /// could be judged: no verdict on the implementation.
    Interrupted,
}

impl Status {
    /// Does this outcome fail the run?
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Fail | Status::Broken | Status::Timeout | Status::Xpass)
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Broken => "BROKEN",
            Status::Skip => "SKIP",
            Status::Timeout => "TIMEOUT",
            Status::Xfail => "XFAIL",
            Status::Xpass => "XPASS",
            Status::Interrupted => "INTERRUPTED",
        }
    }
}

/// What a check found wrong, typed: the part of the contract it is about.
/// A deviation names these; reports say them in words (`problems`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// A process's ending: its exit code, a refusal, a signal.
    Exit,
    /// What a process printed on stdout.
    Stdout,
    /// What a process printed on stderr.
    Stderr,
    /// A `segments` step: the kernel's segment table (a row's fields or
    /// content, a missing, leaked or extra segment, the count).
    Segments,
    /// A process exited but left others running in its process group.
    StrayProcesses,
    /// A process ended before what a step waited for (its prompt, its attach).
    EndedEarly,
    /// A step's or a process's limit ran out.
    Timeout,
    /// Container backends: a namespace's container started, or was refused,
    /// unlike the scenario's `expect_error` says.
    Container,
    /// Explorations: the kernel's segment table after an event differs from
    /// the reference model (or from the SysV semantics of the calls made).
    Model,
    /// Explorations: a run was killed by a signal.
    Signal,
    /// Explorations: how a run ended (exit code, its line, an error without
    /// a message) is not what the model or the contract allows.
    Ending,
    /// Explorations: a reader printed part of a writer's line (whole-lines).
    WholeLines,
    /// Explorations: a run's shmdt(2) of an address its shmat(2) returned
    /// failed: it detached that attachment twice (detach-attached).
    DetachAttached,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::Exit => "exit",
            Check::Stdout => "stdout",
            Check::Stderr => "stderr",
            Check::Segments => "segments",
            Check::StrayProcesses => "stray-processes",
            Check::EndedEarly => "ended-early",
            Check::Timeout => "timeout",
            Check::Container => "container",
            Check::Model => "model",
            Check::Signal => "signal",
            Check::Ending => "ending",
            Check::WholeLines => "whole-lines",
            Check::DetachAttached => "detach-attached",
        }
    }
}

/// One failure of a scenario: the check that found it, the step it was
/// found at (scripted scenarios), and the words for the report. The JSON
/// report gives the step and check (what a deviation's `fails` names); the
/// words are its `problems`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    pub check: Check,
    #[serde(skip)]
    pub text: String,
}

impl Failure {
    pub fn at_step(step: usize, check: Check, text: String) -> Failure {
        Failure {
            step: Some(step),
            check,
            text,
        }
    }

    /// A failure of an exploration (no step: orders differ).
    pub fn of_exploration(check: Check, text: String) -> Failure {
        Failure {
            step: None,
            check,
            text,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    /// The first problem, or empty on PASS.
    pub message: String,
    /// Every problem found, in step order.
    pub problems: Vec<String>,
    /// The failures among them, typed (what deviations pin); a harness or
    /// setup error (BROKEN) is none.
    pub failures: Vec<Failure>,
}

/// Known deviations of an implementation: scenario id → expected outcome.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Expectations(pub BTreeMap<String, Expected>);

/// A known deviation.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, try_from = "ExpectedFields")]
#[schemars(with = "ExpectedFields")]
pub struct Expected {
    pub status: ExpectedStatus,
    pub reason: String,
    /// For "fail": the failures it may show (at least one).
    pub fails: Vec<Pin>,
}

/// The file's form of a deviation, checked into [`Expected`].
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedFields {
    /// "fail" (also matches timeout), or "skip" (not run).
    pub status: ExpectedStatus,
    pub reason: String,
    /// For "fail" (required): what it fails, as `{ step = N, check = "exit" }`
    /// (step optional: any step; explorations have none). A failure that no
    /// entry names makes the scenario FAIL, not XFAIL. Checks: exit, stdout,
    /// stderr, segments, stray-processes, ended-early, timeout, container; explorations:
    /// model, signal, ending, whole-lines, detach-attached, timeout.
    #[serde(default)]
    pub fails: Vec<Pin>,
}

/// A deviation whose status and `fails` contradict each other.
#[derive(Debug, thiserror::Error)]
pub enum InvalidDeviation {
    #[error(
        "a deviation with status \"fail\" must name the failures it expects: \
         fails = [{{ step = N, check = \"exit\" }}, ...] (check: exit, stdout, stderr, segments, \
         stray-processes, ended-early, timeout, container, model, signal, ending, whole-lines, detach-attached; \
         step optional); \
         `shmconf run --format json --expectations EMPTY_FILE` lists each failure's step and check"
    )]
    FailWithoutFails,
    #[error("a deviation with status \"skip\" is not run: it takes no `fails`")]
    SkipWithFails,
}

impl TryFrom<ExpectedFields> for Expected {
    type Error = InvalidDeviation;
    fn try_from(f: ExpectedFields) -> Result<Expected, InvalidDeviation> {
        match f.status {
            ExpectedStatus::Fail if f.fails.is_empty() => Err(InvalidDeviation::FailWithoutFails),
            ExpectedStatus::Skip if !f.fails.is_empty() => Err(InvalidDeviation::SkipWithFails),
            _ => Ok(Expected {
                status: f.status,
                reason: f.reason,
                fails: f.fails,
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedStatus {
    Fail,
    Skip,
}

/// One failure a deviation expects: a check, at a step or at any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// The step (1-based) it is found at; absent: any step.
    pub step: Option<usize>,
    pub check: Check,
}

impl Pin {
    fn names(&self, f: &Failure) -> bool {
        self.check == f.check
            && match self.step {
                None => true,
                Some(step) => f.step == Some(step),
            }
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.step {
            Some(step) => write!(f, "step {step} {}", self.check.name()),
            None => f.write_str(self.check.name()),
        }
    }
}

impl Expected {
    /// The failures of a failing result that this deviation does not name.
    fn unnamed<'a>(&self, failures: &'a [Failure]) -> Vec<&'a Failure> {
        failures
            .iter()
            .filter(|f| !self.fails.iter().any(|p| p.names(f)))
            .collect()
    }
}

impl Expectations {
    pub fn load(path: &Path) -> Result<Expectations, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::unreadable(path, e))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Expectations, LoadError> {
        crate::scenario::wire::from_toml(path, text)
    }

    pub fn get(&self, id: &str) -> Option<&Expected> {
        self.0.get(id)
    }
}

/// One scenario's outcome.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub id: String,
    pub status: Status,
    pub duration: Duration,
    pub message: String,
    /// What the report says, in words (failures and their context).
    pub problems: Vec<String>,
    /// The failures, typed (what a deviation is held against). Empty when
    /// the scenario did not fail, and in results read back from a report.
    pub failures: Vec<Failure>,
    pub log: Option<Log>,
}

/// Apply the expectation for this scenario, if any, to its result.
pub fn apply(expected: Option<&Expected>, r: ScenarioResult) -> ScenarioResult {
    match (expected, r.status) {
        (Some(e), Status::Fail | Status::Timeout) if e.status == ExpectedStatus::Fail => {
            let unnamed = e.unnamed(&r.failures);
            // A failure with nothing typed to hold against the pins is not
            // one the deviation can be said to expect.
            let first_unnamed = unnamed.first().map(|f| f.text.clone()).or_else(|| {
                r.failures
                    .is_empty()
                    .then(|| format!("{} (a failure no check names)", r.message))
            });
            match first_unnamed {
                None => ScenarioResult {
                    status: Status::Xfail,
                    message: format!("{} (expected: {})", r.message, e.reason),
                    ..r
                },
                Some(text) => {
                    let pins: Vec<String> = e.fails.iter().map(Pin::to_string).collect();
                    let mut problems = r.problems;
                    problems.extend(
                        unnamed
                            .iter()
                            .skip(1)
                            .map(|f| format!("also not among the expected failures: {}", f.text)),
                    );
                    ScenarioResult {
                        status: Status::Fail,
                        message: format!(
                            "a known-failing scenario failed differently: {text} (the deviation expects only: {}; {})",
                            pins.join(", "),
                            e.reason
                        ),
                        problems,
                        ..r
                    }
                }
            }
        }
        (Some(e), Status::Pass) if e.status == ExpectedStatus::Fail => ScenarioResult {
            status: Status::Xpass,
            message: format!("passed, but the expectations file says it fails: {}", e.reason),
            ..r
        },
        _ => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(failures: Vec<Failure>) -> ScenarioResult {
        ScenarioResult {
            id: "errors/eof-without-input".into(),
            status: Status::Fail,
            duration: Duration::ZERO,
            message: failures.first().map(|f| f.text.clone()).unwrap_or_default(),
            problems: failures.iter().map(|f| f.text.clone()).collect(),
            failures,
            log: None,
        }
    }

    fn deviation(text: &str) -> Result<Expected, LoadError> {
        let all = Expectations::parse(Path::new("t.toml"), &format!("[\"x\"]\n{text}"))?;
        Ok(all.0["x"].clone())
    }

    const EOF_DEFECT: &str =
        "status = \"fail\"\nreason = \"exit 0 at EOF\"\nfails = [{ step = 2, check = \"exit\" }]\n";

    #[test]
    fn the_pinned_failure_alone_is_xfail() {
        let e = deviation(EOF_DEFECT).unwrap();
        let r = apply(
            Some(&e),
            failing(vec![Failure::at_step(2, Check::Exit, "exited 0".into())]),
        );
        assert_eq!(r.status, Status::Xfail, "{}", r.message);
    }

    #[test]
    fn a_failure_the_deviation_does_not_name_is_a_fail() {
        let e = deviation(EOF_DEFECT).unwrap();
        // The EOF defect, plus a program that wipes the segment at EOF.
        let r = apply(
            Some(&e),
            failing(vec![
                Failure::at_step(2, Check::Exit, "exited 0".into()),
                Failure::at_step(3, Check::Segments, "content: expected \"prior\", got \"\"".into()),
            ]),
        );
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.message
                .starts_with("a known-failing scenario failed differently: content: expected"),
            "{}",
            r.message
        );
        assert!(r.message.contains("expects only: step 2 exit"), "{}", r.message);
        // The same check at another step is another failure.
        let r = apply(
            Some(&e),
            failing(vec![Failure::at_step(4, Check::Exit, "exited 0".into())]),
        );
        assert_eq!(r.status, Status::Fail, "{}", r.message);
        // A timeout is not the exit the deviation pins.
        let r = apply(
            Some(&e),
            failing(vec![Failure::at_step(2, Check::Timeout, "timed out".into())]),
        );
        assert_eq!(r.status, Status::Fail, "{}", r.message);
    }

    #[test]
    fn a_pin_without_a_step_names_the_check_at_any_step() {
        let e = deviation(
            "status = \"fail\"\nreason = \"r\"\nfails = [{ check = \"whole-lines\" }, { check = \"signal\" }]\n",
        )
        .unwrap();
        let r = apply(
            Some(&e),
            failing(vec![
                Failure::of_exploration(Check::WholeLines, "r printed part".into()),
                Failure::of_exploration(Check::Signal, "w was killed".into()),
            ]),
        );
        assert_eq!(r.status, Status::Xfail, "{}", r.message);
        let r = apply(
            Some(&e),
            failing(vec![Failure::of_exploration(Check::Model, "the table differs".into())]),
        );
        assert_eq!(r.status, Status::Fail, "{}", r.message);
    }

    #[test]
    fn a_failure_with_nothing_typed_is_not_expected() {
        let e = deviation(EOF_DEFECT).unwrap();
        let r = apply(Some(&e), failing(vec![]));
        assert_eq!(r.status, Status::Fail, "{}", r.message);
    }

    #[test]
    fn a_pass_is_xpass_and_a_skip_stays() {
        let e = deviation(EOF_DEFECT).unwrap();
        let mut pass = failing(vec![]);
        pass.status = Status::Pass;
        assert_eq!(apply(Some(&e), pass.clone()).status, Status::Xpass);
        assert_eq!(apply(None, pass).status, Status::Pass);
    }

    #[test]
    fn a_fail_deviation_must_pin_and_a_skip_must_not() {
        let e = deviation("status = \"fail\"\nreason = \"r\"\n").unwrap_err();
        assert!(e.message.contains("must name the failures it expects"), "{e}");
        assert_eq!(e.line, 1, "the deviation's header: {e}");
        let e = deviation("status = \"skip\"\nreason = \"r\"\nfails = [{ check = \"exit\" }]\n").unwrap_err();
        assert!(e.message.contains("takes no `fails`"), "{e}");
        let e = deviation("status = \"fail\"\nreason = \"r\"\nfails = [{ check = \"exit code\" }]\n").unwrap_err();
        assert!(e.message.contains("unknown variant"), "{e}");
        deviation("status = \"skip\"\nreason = \"r\"\n").unwrap();
    }
}
