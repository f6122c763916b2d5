//! Tests that need something of the machine: root (to run shmconf as
//! another uid), or a Python with `sysv_ipc` (a third-party pair). Where it is
//! missing they show as ignored with the reason, never as a silent pass; CI
//! provides both (`.ci/run`), and there a missing one fails.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command as StdCommand;
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use predicates::prelude::*;

mod common;
use common::{all_seed_contract_pass, scenarios, shmconf};

fn python_with_sysv_ipc() -> Option<String> {
    let python = std::env::var("SHMCONF_PYTHON").unwrap_or_else(|_| "python3".into());
    StdCommand::new(&python)
        .args(["-c", "import sysv_ipc"])
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(python)
}

/// Run `f`, or ignore the test with `missing` where the machine lacks it (a
/// failure under CI, which must provide it).
fn needing(missing: Option<&'static str>, f: impl FnOnce() -> Result<(), Failed>) -> Result<Completion, Failed> {
    match missing {
        None => f().map(|()| Completion::Completed),
        Some(what) if std::env::var_os("CI").is_some() => Err(format!("CI must provide {what}").into()),
        Some(what) => Ok(Completion::ignored_with(format!("needs {what}"))),
    }
}

fn a_third_party_python_pair_passes_the_seed_contract_and_agrees_with_the_model(python: String) -> Result<(), Failed> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/thirdparty");
    let role = |r: &str| format!("{python} {}", dir.join(format!("{r}.py")).display());
    shmconf()
        .args([
            "run",
            "--tag",
            "seed-contract",
            "--name",
            "python-sysv_ipc",
            "--writer",
            &role("writer"),
        ])
        .args(["--reader", &role("reader")])
        .arg(scenarios())
        .assert()
        .success()
        .stdout(predicate::str::contains(all_seed_contract_pass()));
    shmconf()
        .args(["run", "--writer", &role("writer"), "--reader", &role("reader")])
        .arg(scenarios().join("orders/explore-2x2.toml"))
        .assert()
        .success()
        .stdout(predicate::str::contains("24 orders agree with the model"));
    // The same system-call explorer as for ours and the C reference, on the
    // unmodified interpreter (through whatever launcher `python3` is, such as
    // a pyenv shim): it reads its whole line before writing the segment and
    // fails cleanly when the segment is gone, so no order breaks a property.
    // CPython starts slowly: a budget of orders, the same on any machine.
    shmconf()
        .args(["run", "--tag", "syscall", "--max-orders", "25"])
        .args(["--writer", &role("writer"), "--reader", &role("reader")])
        .arg(scenarios())
        .assert()
        .success()
        .stdout(predicate::str::contains("PASS    orders/syscall-rmid-before-attach"))
        .stdout(predicate::str::contains("PASS    orders/syscall-input-in-pieces"))
        .stdout(predicate::str::contains("every one keeps the properties"));
    Ok(())
}

fn without_root_it_runs_as_root_of_a_user_namespace_of_its_own() -> Result<(), Failed> {
    // Copies uid 65534 can reach (the build tree may sit under a private dir).
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for bin in ["shmconf", "shm-writer", "shm-reader"] {
        std::fs::copy(assert_cmd::cargo::cargo_bin(bin), dir.path().join(bin)).unwrap();
    }
    let scen = dir.path().join("scenarios");
    for sub in ["visibility", "orders"] {
        std::fs::create_dir_all(scen.join(sub)).unwrap();
    }
    for f in [
        "visibility/writer-then-reader.toml",
        "orders/paused-writer.toml",
        "orders/explore-2x2.toml",
    ] {
        std::fs::copy(scenarios().join(f), scen.join(f)).unwrap();
    }
    let run = || {
        let mut cmd = StdCommand::new(dir.path().join("shmconf"));
        cmd.arg("run").arg(&scen).current_dir(dir.path()).uid(65534).gid(65534);
        cmd.output()
    };
    // Another test thread may still hold a copy open for writing (ETXTBSY).
    let mut out = run();
    for _ in 0..100 {
        match &out {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(10));
                out = run();
            }
            _ => break,
        }
    }
    let out = out.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("shmconf: 3 passed, 0 failed, 0 skipped"), "{stdout}");
    Ok(())
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"].into_iter().find(|b| {
        StdCommand::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The matrix page of a real run, opened in a real browser: it parses, shows
/// a row per scenario with a verdict one click away, highlights the row
/// where two targets disagree, and renders to a screenshot.
fn the_matrix_page_renders_in_a_real_browser(browser: &str) -> Result<(), Failed> {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let files = ["visibility/writer-then-reader.toml", "orders/reader-first.toml"];
    shmconf()
        .args(["matrix", "--target", "local", "--out"])
        .arg(&runs)
        .args(files.map(|f| scenarios().join(f)))
        .timeout(Duration::from_secs(120))
        .assert()
        .success()
        .stdout(predicate::str::contains("local          2 PASS, 0 FAIL"));
    // A second target as another machine would report it: one divergence.
    let text = std::fs::read_to_string(runs.join("local.json")).unwrap();
    let mut other: serde_json::Value = serde_json::from_str(&text).unwrap();
    other["target"] = "elsewhere".into();
    other["results"][0]["status"] = "fail".into();
    other["results"][0]["message"] = "step 3: <b>not</b> what Linux does".into();
    let merged_in = dir.path().join("in");
    std::fs::create_dir_all(&merged_in).unwrap();
    std::fs::copy(runs.join("local.json"), merged_in.join("local.json")).unwrap();
    std::fs::write(merged_in.join("elsewhere.json"), other.to_string()).unwrap();
    let page_dir = dir.path().join("page");
    shmconf()
        .args(["matrix", "--out"])
        .arg(&page_dir)
        .arg("--from")
        .arg(&merged_in)
        .timeout(Duration::from_secs(30))
        .assert()
        .success()
        .stdout(predicate::str::contains("2 target(s) merged"));
    let page = page_dir.join("matrix.html");
    let url = format!("file://{}", page.display());
    let headless = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"];
    let dom = assert_cmd::Command::new(browser)
        .args(headless)
        .args(["--dump-dom", &url])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(dom.matches("<th class=\"scenario\">").count(), 2, "{dom}");
    assert_eq!(dom.matches("<tr class=\"diverges\">").count(), 1, "{dom}");
    assert_eq!(
        dom.matches("<details>").count(),
        4,
        "every cell's message is a click away: {dom}"
    );
    assert!(
        dom.contains("&lt;b&gt;not&lt;/b&gt; what Linux does"),
        "messages stay text: {dom}"
    );
    let shot = page_dir.join("matrix.png");
    assert_cmd::Command::new(browser)
        .args(headless)
        .arg(format!("--screenshot={}", shot.display()))
        .args(["--window-size=1200,700", &url])
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        u32::from_be_bytes(png[20..24].try_into().unwrap()),
    );
    assert_eq!((w, h), (1200, 700));
    // A blank page compresses to almost nothing; a table of coloured cells does not.
    assert!(png.len() > 15_000, "screenshot of {} bytes looks blank", png.len());
    if let Some(keep) = std::env::var_os("SHMCONF_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        Trial::ignorable_test(
            "a_third_party_python_pair_passes_the_seed_contract_and_agrees_with_the_model",
            || {
                let python = python_with_sysv_ipc();
                let missing = python.is_none().then_some("a Python with sysv_ipc (SHMCONF_PYTHON)");
                needing(missing, || {
                    a_third_party_python_pair_passes_the_seed_contract_and_agrees_with_the_model(
                        python.unwrap_or_default(),
                    )
                })
            },
        ),
        Trial::ignorable_test("without_root_it_runs_as_root_of_a_user_namespace_of_its_own", || {
            let missing = (!nix::unistd::geteuid().is_root()).then_some("root, to switch to an unprivileged uid");
            needing(missing, without_root_it_runs_as_root_of_a_user_namespace_of_its_own)
        }),
        Trial::ignorable_test("the_matrix_page_renders_in_a_real_browser", || {
            let browser = chromium();
            let missing = browser.is_none().then_some("a headless Chromium (Debian: chromium)");
            needing(missing, || {
                the_matrix_page_renders_in_a_real_browser(browser.unwrap_or_default())
            })
        }),
    ];
    libtest_mimic::run(&args, trials).exit();
}
