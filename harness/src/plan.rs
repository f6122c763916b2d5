//! The plan: for each selected scenario, run it or skip it, decided once
//! before anything runs, with a typed reason (the expectations file says so,
//! or the backend lacks a feature the scenario needs: its `Features`,
//! declared once for the run, against the scenario's `Needs`).

use crate::engine::backend::{Features, SkipReason};
use crate::impls::Implementation;
use crate::outcome::{Expectations, ExpectedStatus};
use crate::scenario::{ImplOption, ScenarioFile};

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
    /// It passes options the implementation says it does not have.
    Options {
        implementation: String,
        missing: Vec<ImplOption>,
    },
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Expected(reason) => write!(f, "expectations: {reason}"),
            Skip::Backend(reason) => reason.fmt(f),
            Skip::Options {
                implementation,
                missing,
            } => {
                let flags: Vec<&str> = missing.iter().map(|o| o.flag()).collect();
                write!(f, "implementation {implementation} has no {}", flags.join(", "))
            }
        }
    }
}

pub fn decide(
    sf: &ScenarioFile,
    implementation: &Implementation,
    backend: &Features,
    expectations: &Expectations,
) -> Decision {
    if let Some(e) = expectations.get(&sf.id).filter(|e| e.status == ExpectedStatus::Skip) {
        return Decision::Skip(Skip::Expected(e.reason.clone()));
    }
    let needs = sf.scenario.needs();
    if let Some(has) = &implementation.options {
        let missing: Vec<ImplOption> = needs.options.difference(has).copied().collect();
        if !missing.is_empty() {
            return Decision::Skip(Skip::Options {
                implementation: implementation.name.clone(),
                missing,
            });
        }
    }
    match backend.missing_for(&needs) {
        Some(reason) => Decision::Skip(Skip::Backend(reason)),
        None => Decision::Run,
    }
}
