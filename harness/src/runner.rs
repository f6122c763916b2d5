//! The composition of one run: plan each scenario, execute it on the
//! engine (scripted steps, or an exploration's orders), check the log, and
//! map the verdict through the expectations, scenarios in parallel. The CLI
//! and the cargo-test harness both go through [`Runner`].

use std::sync::Mutex;
use std::time::Instant;

use crate::check::check;
use crate::engine::backend::{Backend, Features};
use crate::engine::oracle::Oracle;
use crate::engine::{Engine, Limits, Run};
use crate::impls::Implementation;
pub use crate::outcome::ScenarioResult;
use crate::outcome::Status;
use crate::outcome::{self, Expectations};
use crate::parallel::parallel_map;
use crate::plan::{decide, Decision};
use crate::scenario::{Body, ScenarioFile};

/// Everything a run needs, built once (see `compose`).
pub struct Runner {
    pub implementation: Implementation,
    pub backend: Box<dyn Backend>,
    /// What the backend lacks here, declared once for the run (the plan
    /// decides every scenario against it).
    pub features: Features,
    pub oracle: Box<dyn Oracle>,
    /// Said once to the user: what was chosen for them and why (no procfs,
    /// no namespaces).
    pub notes: Vec<String>,
    pub limits: Limits,
    pub jobs: usize,
    pub expectations: Expectations,
    /// Exploration scenarios: run only this order (`--order "w1:attach,r1,w1:input"`).
    pub replay_order: Option<String>,
}

impl Runner {
    pub fn engine(&self) -> Engine<'_> {
        Engine {
            backend: self.backend.as_ref(),
            oracle: self.oracle.as_ref(),
            implementation: &self.implementation,
            limits: self.limits,
        }
    }

    /// Scenarios run at once: `jobs`, or fewer if the backend says so.
    pub fn parallel(&self) -> usize {
        self.backend
            .max_parallel()
            .map_or(self.jobs, |m| m.min(self.jobs))
            .max(1)
    }

    /// Run scenarios, calling `progress` as each finishes. Results come back
    /// in input order.
    pub fn run_all(
        &self,
        scenarios: &[ScenarioFile],
        progress: &(dyn Fn(&ScenarioResult) + Sync),
        fail_fast: FailFast,
    ) -> Vec<ScenarioResult> {
        // The first failure's id, once there is one (with --fail-fast).
        let first_failure: Mutex<Option<String>> = Mutex::new(None);
        parallel_map(
            scenarios.len(),
            self.parallel(),
            || false,
            |i| {
                let stopped = first_failure.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let result = match stopped {
                    // Scenarios already running finish; none starts after it.
                    Some(failed) => ScenarioResult {
                        id: scenarios[i].id.clone(),
                        status: Status::Interrupted,
                        duration: std::time::Duration::ZERO,
                        message: format!("not run: --fail-fast stopped the run when {failed} failed"),
                        problems: vec![],
                        failures: vec![],
                        log: None,
                    },
                    None => self.run_one(&scenarios[i]),
                };
                if fail_fast == FailFast::Yes && result.status.is_failure() {
                    first_failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert_with(|| result.id.clone());
                }
                progress(&result);
                result
            },
        )
    }

    /// Plan, execute, check and map one scenario. A panic anywhere in it is
    /// this scenario's BROKEN, and the run goes on.
    pub fn run_one(&self, sf: &ScenarioFile) -> ScenarioResult {
        let start = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_one_inner(sf)));
        result.unwrap_or_else(|panic| {
            let what = crate::engine::panic_text(&*panic);
            ScenarioResult {
                id: sf.id.clone(),
                status: Status::Broken,
                duration: start.elapsed(),
                message: format!("harness panicked: {what}"),
                problems: vec![],
                failures: vec![],
                log: None,
            }
        })
    }

    fn run_one_inner(&self, sf: &ScenarioFile) -> ScenarioResult {
        let start = Instant::now();
        let skipped = |message: String, status| ScenarioResult {
            id: sf.id.clone(),
            status,
            duration: start.elapsed(),
            message,
            problems: vec![],
            failures: vec![],
            log: None,
        };
        if let Decision::Skip(why) = decide(sf, &self.implementation, &self.features, &self.expectations) {
            return skipped(why.to_string(), Status::Skip);
        }
        if crate::interrupt::interrupted() {
            return skipped(
                format!("{} before it started; not judged", crate::interrupt::interruption()),
                Status::Interrupted,
            );
        }
        let engine = self.engine();
        let r = match &sf.scenario.body {
            Body::Explore(ex) => crate::explore::run(sf, ex, &engine, self.jobs, self.replay_order.as_deref()),
            Body::Steps(steps) => {
                let log = engine.execute(&Run {
                    id: &sf.id,
                    scenario: &sf.scenario,
                    steps,
                    hard_deadline: None,
                });
                let verdict = check(&sf.scenario, steps, &log);
                ScenarioResult {
                    id: sf.id.clone(),
                    status: verdict.status,
                    duration: start.elapsed(),
                    message: verdict.message,
                    problems: verdict.problems,
                    failures: verdict.failures,
                    log: Some(log),
                }
            }
        };
        outcome::apply(self.expectations.get(&sf.id), r)
    }
}

/// The throwaway scenario of the preflight: the writer given a line and
/// its key file, then the reader, each whatever it ends with, and the
/// kernel's table after each (the key file's segment: what they did).
const PREFLIGHT: &str = r#"
description = "preflight: each role of the implementation starts"
[[step]]
run = "writer"
stdin = "preflight\n"
expect = { exit = "any" }
[[step]]
segments = [{ key = "ftok:shmfile:65" }]
partial = true
[[step]]
run = "reader"
expect = { exit = "any" }
[[step]]
segments = [{ key = "ftok:shmfile:65" }]
partial = true
"#;

/// What the kernel shows of the key file's segments after a preflight step:
/// each segment's id, attach count and last attaching or detaching pid (a
/// role that touched a segment in any way changed one of them).
type Footprint = Vec<(i32, u64, Option<i32>)>;

impl Runner {
    /// Preflight: before any scenario, start each role once through the
    /// same engine and backend (a throwaway scenario dir with its key file;
    /// the writer gets a line). A program that cannot be started, that ends
    /// with 126 or 127 (a shell's "cannot execute" / "not found"), or that
    /// exits with an error having done nothing with shared memory the kernel
    /// can see (an interpreter that cannot open its script, however it says
    /// so: no words are matched) is one clear error, not a BROKEN or FAIL per
    /// scenario. Anything else it does is for the scenarios to judge.
    pub fn preflight(&self) -> Result<(), PreflightError> {
        use crate::events::{Ending, EventKind};
        let scenario = crate::scenario::Scenario::parse(std::path::Path::new("(preflight)"), PREFLIGHT)
            .map_err(PreflightError::Scenario)?;
        let crate::scenario::Body::Steps(steps) = &scenario.body else {
            return Ok(());
        };
        let log = self.engine().execute(&Run {
            id: "preflight",
            scenario: &scenario,
            steps,
            hard_deadline: None,
        });
        // The key file's segments as each segments step saw them.
        let footprint = |n: usize| -> Option<Footprint> {
            log.step_events(n).find_map(|e| match e {
                EventKind::Snapshot { rows, keys, .. } => {
                    let key = keys.values().find_map(|k| k.as_ref().ok().copied())?;
                    Some(
                        rows.iter()
                            .filter(|r| r.raw_key == key)
                            .map(|r| (r.shmid, r.nattch, r.lpid))
                            .collect(),
                    )
                }
                _ => None,
            })
        };
        let (after_writer, after_reader) = (footprint(2), footprint(4));
        // Each process's role, as its step declares it (not read off its name).
        let roles: std::collections::BTreeMap<&str, crate::scenario::Role> = steps
            .iter()
            .filter_map(|step| match &step.action {
                crate::scenario::Action::Spawn(spawn) => match spawn.program {
                    crate::scenario::Program::Role(role) => Some((spawn.name.as_str(), role)),
                    crate::scenario::Program::Exec(_) => None,
                },
                _ => None,
            })
            .collect();
        // Every process of the preflight is one of the pair's.
        let role_of = |proc: &str| roles.get(proc).copied().unwrap_or(crate::scenario::Role::Writer);
        for event in &log.events {
            match &event.kind {
                EventKind::SpawnFailed { proc, argv, error } => {
                    // The command as given: a staged copy's path means nothing to the user.
                    let given = match roles.get(proc.as_str()) {
                        Some(&role) => self.implementation.given(role).join(" "),
                        None => argv.join(" "),
                    };
                    return Err(PreflightError::CannotStart {
                        role: role_of(proc),
                        command: given,
                        error: error.clone(),
                    });
                }
                EventKind::Exit {
                    proc,
                    ending,
                    stdout,
                    stderr,
                    ..
                } => {
                    let role = role_of(proc);
                    let cannot_run = matches!(ending, Ending::Exited { code: 126 | 127 });
                    // Nothing the kernel can see: the writer left no segment
                    // under its key although it was given a line; the reader
                    // left the table exactly as the writer had left it (a
                    // reader creates, attaches or removes).
                    let untouched = match role {
                        crate::scenario::Role::Writer => after_writer.as_ref().is_some_and(Vec::is_empty),
                        _ => after_writer.is_some() && after_reader == after_writer,
                    };
                    let did_nothing = matches!(ending, Ending::Exited { code } if *code != 0) && untouched;
                    if cannot_run || did_nothing {
                        // The command as given: a staged copy's path means nothing to the user.
                        let command = self.implementation.given(role).join(" ");
                        // Its own words, wherever it put them (php says it on
                        // stdout); for the report only: the line that names one
                        // of its arguments (node's comes after a stack frame),
                        // else its first.
                        let lines: Vec<String> = [&stderr.bytes, &stdout.bytes]
                            .into_iter()
                            .flat_map(|b| {
                                String::from_utf8_lossy(b)
                                    .lines()
                                    .map(|l| l.trim().to_string())
                                    .filter(|l| !l.is_empty())
                                    .collect::<Vec<_>>()
                            })
                            .collect();
                        let args = self.implementation.command(role).get(1..).unwrap_or_default();
                        let said = lines
                            .iter()
                            .find(|l| args.iter().any(|a| l.contains(a.trim_start_matches("./"))))
                            .or(lines.first())
                            .cloned()
                            .unwrap_or_default();
                        return Err(PreflightError::DoesNotStart {
                            role,
                            command,
                            ending: ending.clone(),
                            did_nothing: !cannot_run,
                            said: crate::events::escape_short(said.as_bytes(), 200),
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Why an implementation's programs cannot be judged at all: said once,
/// before any scenario.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("preflight scenario: {0}")]
    Scenario(crate::scenario::LoadError),
    #[error("{}: cannot start {command:?}: {error}", .role.as_str())]
    CannotStart {
        role: crate::scenario::Role,
        command: String,
        error: String,
    },
    /// It ran but ended with 126/127 (a shell's "cannot execute" or "not
    /// found"), or with an error having done nothing the kernel can see
    /// (`did_nothing`); `said` is its own line, for the report only.
    #[error(
        "{}: {command:?} does not start ({ending}{}): it said {said}{}",
        role.as_str(),
        nothing_done(*role, *did_nothing),
        if *did_nothing { HINT_OWN_DIR } else { "" }
    )]
    DoesNotStart {
        role: crate::scenario::Role,
        command: String,
        ending: crate::events::Ending,
        did_nothing: bool,
        said: String,
    },
}

const HINT_OWN_DIR: &str =
    " (roles run in each scenario's own directory: write a file of yours as ./file or by its absolute path)";

fn nothing_done(role: crate::scenario::Role, did_nothing: bool) -> &'static str {
    match (did_nothing, role) {
        (false, _) => "",
        (true, crate::scenario::Role::Writer) => {
            ", having done nothing with shared memory though given a line and its key file"
        }
        (true, _) => ", having done nothing with shared memory",
    }
}

/// Whether a run stops starting scenarios after the first failure (FAIL,
/// BROKEN, TIMEOUT or XPASS); those not started are INTERRUPTED, not judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailFast {
    Yes,
    No,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::backend::{Capabilities, SetUpError, SetupLog, World};
    use crate::engine::oracle::Procfs;
    use crate::scenario::{Scenario, ScenarioDir};

    /// Delegates to a real backend, except that setting up the scenario
    /// described "boom" panics (a harness bug in one scenario).
    struct PanicsOnBoom(Box<dyn Backend>);

    impl Backend for PanicsOnBoom {
        fn name(&self) -> &'static str {
            "panics-on-boom"
        }
        fn features(&self) -> Features {
            self.0.features()
        }
        fn set_up(
            &self,
            s: &Scenario,
            dir: &ScenarioDir,
            log: &mut dyn SetupLog,
        ) -> Result<Box<dyn World>, SetUpError> {
            assert!(s.description != "boom", "injected harness bug");
            self.0.set_up(s, dir, log)
        }
    }

    fn scenario(id: &str, description: &str) -> ScenarioFile {
        let text = format!("description = \"{description}\"\n[[step]]\nexec = [\"true\"]\n");
        ScenarioFile {
            id: id.into(),
            path: id.into(),
            scenario: Scenario::parse(std::path::Path::new(id), &text).unwrap(),
        }
    }

    #[test]
    fn a_panic_is_that_scenarios_broken_and_the_run_goes_on() {
        let capabilities = Capabilities::detect();
        let inner: Box<dyn Backend> = if capabilities.namespaces {
            Box::new(crate::engine::backend::local::LocalNamespaces {
                capabilities,
                pid_init: None,
                confiner: crate::engine::confine::Confiner::new(Default::default()),
            })
        } else {
            Box::new(crate::engine::backend::shared::SharedNamespace {
                capabilities,
                pid_init: None,
                confiner: crate::engine::confine::Confiner::new(Default::default()),
            })
        };
        let runner = Runner {
            implementation: Implementation::from_commands("t", &["true"], &["true"], &["true"]),
            features: inner.features(),
            backend: Box::new(PanicsOnBoom(inner)),
            oracle: Box::new(Procfs),
            notes: vec![],
            limits: Limits::default(),
            jobs: 2,
            expectations: Expectations::default(),
            replay_order: None,
        };
        let results = runner.run_all(&[scenario("a", "boom"), scenario("b", "fine")], &|_| {}, FailFast::No);
        assert_eq!(results.len(), 2, "the run went on");
        assert_eq!(results[0].status, Status::Broken);
        assert!(
            results[0].message.contains("injected harness bug"),
            "{}",
            results[0].message
        );
        assert_eq!(results[1].status, Status::Pass, "{}", results[1].message);
        crate::rundir::finish();
    }
}
