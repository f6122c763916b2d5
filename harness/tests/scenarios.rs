//! Every scenario file is a cargo test of its own, once per built-in
//! implementation, named `impl::theme/scenario` (filter with
//! `cargo test -p shmconf-harness --test scenarios -- rust::orders`).
//! SKIP shows as ignored with its reason; XFAIL (a deviation the
//! implementation's expectations file declares) passes. The runner comes
//! from the same composition root as the CLI's.

use std::path::PathBuf;
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use shmconf_harness::compose::{self, BackendChoice, Choices, ImplChoice, Isolation, OracleChoice};
use shmconf_harness::engine::{procs, Limits};
use shmconf_harness::outcome::Status;
use shmconf_harness::rundir;
use shmconf_harness::scenario::discover;

#[path = "../../tests/common/turn.rs"]
mod turn;

fn main() {
    // Single-threaded here, as entering a user namespace requires.
    compose::enter_user_namespace_if_unprivileged();
    let args = Arguments::from_args();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let scenarios = discover(&[root]).unwrap_or_else(|errors| {
        for e in errors {
            eprintln!("{e}");
        }
        panic!("scenario files must load");
    });
    let _ = procs::handle_termination_signals();
    let mut trials = Vec::new();
    for name in ["rust", "c-reference"] {
        let runner = compose::compose(&Choices {
            implementation: ImplChoice::Builtin(name.into()),
            backend: BackendChoice::Local(Isolation::Auto),
            oracle: OracleChoice::Auto,
            limits: Limits::default(),
            jobs: 1,
            expectations: None,
            replay_order: None,
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let runner = Arc::new(runner);
        for sf in &scenarios {
            let (runner, sf) = (Arc::clone(&runner), sf.clone());
            trials.push(Trial::ignorable_test(format!("{name}::{}", sf.id), move || {
                // A backend that shares one namespace runs one scenario at a
                // time, across test processes too (nextest).
                let _turn = (runner.backend.max_parallel() == Some(1)).then(|| turn::exclusive("shared-namespace"));
                let r = runner.run_one(&sf);
                match r.status {
                    Status::Pass | Status::Xfail => Ok(Completion::Completed),
                    Status::Skip => Ok(Completion::ignored_with(r.message)),
                    _ => {
                        let log = r.log.map(|l| l.timeline()).unwrap_or_default();
                        Err(Failed::from(format!("{}: {}\n{}", r.status.label(), r.message, log)))
                    }
                }
            }));
        }
        // A scenario that waits on the clock must pass every time, not
        // mostly: ipc-set-ctime once failed 5 runs of 6 (the kernel stamps
        // with a coarser clock than the probe waited on). Five in a row.
        let timed = scenarios
            .iter()
            .find(|sf| sf.id == "persistence/ipc-set-ctime")
            .cloned();
        let timed = timed.expect("persistence/ipc-set-ctime is in the catalogue");
        let runner = Arc::clone(&runner);
        trials.push(Trial::ignorable_test(
            format!("{name}::{} five times in a row", timed.id),
            move || {
                let _turn = (runner.backend.max_parallel() == Some(1)).then(|| turn::exclusive("shared-namespace"));
                for run in 1..=5 {
                    let r = runner.run_one(&timed);
                    match r.status {
                        Status::Pass | Status::Xfail => {}
                        Status::Skip => return Ok(Completion::ignored_with(r.message)),
                        _ => return Err(Failed::from(format!("run {run}: {}: {}", r.status.label(), r.message))),
                    }
                }
                Ok(Completion::Completed)
            },
        ));
    }
    let conclusion = libtest_mimic::run(&args, trials);
    rundir::finish();
    conclusion.exit();
}
