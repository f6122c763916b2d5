//! The plan: for each selected scenario, run it or skip it, decided once
//! before anything runs, with a typed reason (the expectations file says so,
//! or the backend cannot do what the scenario needs).

use crate::engine::backend::{Backend, SkipReason};
use crate::outcome::{Expectations, ExpectedStatus};
use crate::scenario::ScenarioFile;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Run,
    Skip(Skip),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The expectations file marks it skip, with its reason.
    Expected(String),
    /// The backend cannot run it here.
    Backend(SkipReason),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Expected(reason) => write!(f, "expectations: {reason}"),
            Skip::Backend(reason) => reason.fmt(f),
        }
    }
}

pub fn decide(sf: &ScenarioFile, backend: &dyn Backend, expectations: &Expectations) -> Decision {
    if let Some(e) = expectations.get(&sf.id).filter(|e| e.status == ExpectedStatus::Skip) {
        return Decision::Skip(Skip::Expected(e.reason.clone()));
    }
    match backend.cannot_run(&sf.scenario.needs()) {
        Some(reason) => Decision::Skip(Skip::Backend(reason)),
        None => Decision::Run,
    }
}
