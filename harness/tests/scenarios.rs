//! Every scenario file is a cargo test of its own, once per built-in
//! implementation, named `impl::theme/scenario` (filter with
//! `cargo test -p shmconf-harness --test scenarios -- rust::orders`).
//! SKIP shows as ignored with its reason; XFAIL (a deviation the
//! implementation's expectations file declares) passes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use shmconf_harness::check::Status;
use shmconf_harness::exec::Options;
use shmconf_harness::impls::{pid_init_command, Implementation};
use shmconf_harness::runner::{discover, run_one, Capabilities, Expectations, RunConfig};

fn main() {
    let args = Arguments::from_args();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let scenarios = discover(&[root]).unwrap_or_else(|errors| {
        for e in errors {
            eprintln!("{e}");
        }
        panic!("scenario files must load");
    });
    let caps = Capabilities::detect();
    let mut trials = Vec::new();
    for name in ["rust", "c-reference"] {
        let implementation = Implementation::builtin(name).expect("built-in implementation");
        let expectations = implementation
            .default_expectations
            .map(|t| Expectations::parse(Path::new(name), t).expect("built-in expectations parse"))
            .unwrap_or_default();
        let cfg = Arc::new(RunConfig {
            implementation,
            replay_order: None,
            exec: Options {
                isolation: caps.isolation(),
                pid_init: pid_init_command(),
                ..Options::default()
            },
            jobs: 1,
            expectations,
            capabilities: caps,
        });
        for sf in &scenarios {
            let (cfg, sf) = (Arc::clone(&cfg), sf.clone());
            let shared_ns = caps.isolation() == shmconf_harness::exec::Isolation::Shared;
            trials.push(Trial::ignorable_test(format!("{name}::{}", sf.id), move || {
                // Without namespaces scenarios share the host's: one at a time.
                let _guard = shared_ns.then(|| SERIAL.lock().unwrap_or_else(|p| p.into_inner()));
                let r = run_one(&sf, &cfg);
                match r.status {
                    Status::Pass | Status::Xfail => Ok(Completion::Completed),
                    Status::Skip => Ok(Completion::ignored_with(r.message)),
                    _ => {
                        let log = r.log.map(|l| l.render()).unwrap_or_default();
                        Err(Failed::from(format!("{}: {}\n{}", r.status.label(), r.message, log)))
                    }
                }
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
