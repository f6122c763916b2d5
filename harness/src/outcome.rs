//! Outcomes: a verdict mapped through the implementation's known deviations
//! (the expectations file) into what the run reports: FAIL or TIMEOUT of a
//! known deviation is XFAIL, its PASS is XPASS. The same for scripted
//! scenarios and explorations.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::check::Status;
use crate::events::Log;
use crate::scenario::LoadError;

/// Known deviations of an implementation: scenario id → expected outcome.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Expectations(pub BTreeMap<String, Expected>);

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// "fail" (also matches timeout), or "skip" (not run).
    pub status: ExpectedStatus,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedStatus {
    Fail,
    Skip,
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
    pub problems: Vec<String>,
    pub log: Option<Log>,
}

/// Apply the expectation for this scenario, if any, to its result.
pub fn apply(expected: Option<&Expected>, r: ScenarioResult) -> ScenarioResult {
    match (expected, r.status) {
        (Some(e), Status::Fail | Status::Timeout) if e.status == ExpectedStatus::Fail => ScenarioResult {
            status: Status::Xfail,
            message: format!("{} (expected: {})", r.message, e.reason),
            ..r
        },
        (Some(e), Status::Pass) if e.status == ExpectedStatus::Fail => ScenarioResult {
            status: Status::Xpass,
            message: format!("passed, but the expectations file says it fails: {}", e.reason),
            ..r
        },
        _ => r,
    }
}
