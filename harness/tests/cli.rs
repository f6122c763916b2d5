//! `shmconf` as users run it: it must catch broken implementations and say
//! precisely what is wrong, time out hung ones and kill them with their
//! group, report in every format, and leave nothing behind, Ctrl-C included.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use predicates::prelude::*;
use rstest::rstest;

mod common;
use common::{all_seed_contract_pass, leftovers, scenarios, shmconf};

/// Build tests/faults/faulty.c with `-DFAULT_<fault>` (none: the faithful build).
fn faulty(dir: &Path, fault: Option<&str>) -> PathBuf {
    let name = format!("faulty-{}", fault.unwrap_or("none").to_lowercase());
    let define = fault.map(|f| format!("-DFAULT_{f}"));
    compile_faulty(dir, &name, define.as_deref())
}

/// faulty.c built as `name`, with one `-D` of its own if any.
fn compile_faulty(dir: &Path, name: &str, define: Option<&str>) -> PathBuf {
    let out = dir.join(name);
    let mut cc = StdCommand::new("cc");
    cc.args(["-O1", "-o"])
        .arg(&out)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/faults/faulty.c"));
    if let Some(d) = define {
        cc.arg(d);
    }
    assert!(cc.status().unwrap().success(), "compiling {name}");
    out
}

fn run_impl(bin: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    run_impl_on(bin, &scenarios(), extra)
}

fn run_impl_on(bin: &Path, scenarios: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    let b = bin.display();
    shmconf()
        .arg("run")
        .arg(scenarios)
        .args(["--writer", &format!("{b} writer"), "--reader", &format!("{b} reader")])
        .args(extra)
        .assert()
}

/// Processes whose command line contains `needle` (other than ourselves).
fn processes_matching(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                found.push(text);
            }
        }
    }
    found
}

#[test]
fn faithful_implementations_pass_the_seed_contract() {
    let dir = tempfile::tempdir().unwrap();
    let good = faulty(dir.path(), None);
    run_impl(&good, &["--tag", "seed-contract"])
        .success()
        .stdout(predicate::str::contains(format!(
            "{}, 0 skipped",
            all_seed_contract_pass()
        )));
    // A writer that runs helpers in its group (one of them orphaned) and
    // waits for their pipe's end is no stray, however late their exits finish.
    let helped = compile_faulty(dir.path(), "faithful-with-helper", Some("-DWITH_HELPER"));
    run_impl(&helped, &["--tag", "seed-contract"])
        .success()
        .stdout(predicate::str::contains(format!(
            "{}, 0 skipped",
            all_seed_contract_pass()
        )));
    // The C reference, plugged in by command line like any third-party build.
    let c_ref = PathBuf::from(env!("SHMCONF_C_REFERENCE_DIR"));
    shmconf()
        .args(["run", "--tag", "seed-contract"])
        .arg(scenarios())
        .arg("--writer")
        .arg(c_ref.join("c-writer"))
        .arg("--reader")
        .arg(c_ref.join("c-reader"))
        .assert()
        .success();
}

#[rstest]
#[case::key("KEY", "expected a segment with key ftok:shmfile:65")]
#[case::size("SIZE", "size: expected 1024, kernel reports 2048")]
#[case::mode("MODE", "mode: expected 0666, kernel reports 0644")]
#[case::content("CONTENT", "content (up to the first NUL)")]
#[case::terminator("TERMINATOR", "first 6 bytes: expected \"short\\x00\"")]
#[case::output_format("FORMAT", "stdout differs: expected \"Write Data: Data written")]
#[case::cleanup("NO_RMID", "unexpected segment (leaked or wrongly keyed)")]
#[case::crash("CRASH", "expected exit code 0, but it ended with killed by SIGSEGV")]
#[case::lingering_child("LINGER", "left processes running in its process group")]
// Attachments kept out of the writer's process group: no stray of its group,
// but the kernel's count after the writer's end says it.
#[case::daemon_attachment("DAEMON", "nattch: expected 0, kernel reports 1")]
#[case::attachment_in_a_group_of_its_own("OWN_GROUP", "nattch: expected 0, kernel reports 1")]
#[case::double_forked_daemon_attachment("DOUBLE_FORK", "nattch: expected 0, kernel reports 1")]
fn each_fault_fails_the_seed_contract_with_a_message_naming_it(#[case] fault: &str, #[case] needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let bin = faulty(dir.path(), Some(fault));
    run_impl(&bin, &["--tag", "seed-contract"])
        .code(1)
        .stdout(predicate::str::contains("--- FAIL"))
        .stdout(predicate::str::contains(needle));
    // The full path: other tests run binaries of the same name from their own dirs.
    let name = bin.display().to_string();
    assert_eq!(
        processes_matching(&name),
        Vec::<String>::new(),
        "processes of {name} left behind"
    );
}

/// The gap scenarios: each fails the fault it targets (and says what is
/// wrong), and passes the faithful build.
#[rstest]
#[case::reader_creates_private(
    "READER_MODE",
    "orders/reader-creates-the-seeds-segment",
    "mode: expected 0666, kernel reports 0600"
)]
#[case::reader_creates_small(
    "READER_SIZE",
    "orders/reader-creates-the-seeds-segment",
    "size: expected 1024, kernel reports 64"
)]
#[case::reader_reads_a_smaller_segment("READER_SIZE", "errors/reader-smaller-segment-einval", "expected a refusal")]
#[case::wipes_at_eof(
    "EOF_WIPE",
    "persistence/eof-keeps-content",
    "first 6 bytes: expected \"prior\\x00\""
)]
#[case::writes_as_it_reads("PARTIAL", "orders/partial-input-line", "got \"Data read from memory: hel\\n\"")]
#[case::drops_ftoks_device_byte("FTOK_NODEV", "keys/ftok-device-byte", "expected a segment with key ftok:shmfile:65")]
fn each_gap_scenario_fails_the_fault_it_targets(#[case] fault: &str, #[case] id: &str, #[case] needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let one = scenarios().join(format!("{id}.toml"));
    let good = faulty(dir.path(), None);
    run_impl_on(&good, &one, &[]).success();
    let bin = faulty(dir.path(), Some(fault));
    run_impl_on(&bin, &one, &[])
        .code(1)
        .stdout(predicate::str::contains(format!("--- FAIL {id}")))
        .stdout(predicate::str::contains(needle));
}

#[test]
fn a_hung_process_is_a_timeout_and_is_killed_with_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let bin = faulty(dir.path(), Some("HANG"));
    let start = Instant::now();
    let one = scenarios().join("visibility/writer-then-reader.toml");
    run_impl_on(&bin, &one, &["--step-timeout", "300"])
        .code(1)
        .stdout(predicate::str::contains("TIMEOUT visibility/writer-then-reader"))
        .stdout(predicate::str::contains("timed out after 300 ms (the step's limit"));
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(processes_matching(&bin.display().to_string()).is_empty());
}

#[test]
fn malformed_scenario_files_give_file_line_column_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "description = \"x\"\n\n[[step]]\nrun = \"writer\"\nstdinn = \"x\"\n",
    )
    .unwrap();
    shmconf()
        .arg("run")
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "{}:5:1: unknown field `stdinn`",
            bad.display()
        )));
    shmconf().args(["run", "/nonexistent/scenarios"]).assert().code(2);
}

#[test]
fn json_report_has_the_documented_shape() {
    let out = shmconf()
        .args(["run", "--format", "json", "--tag", "seed-contract"])
        .arg(scenarios())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["implementation"], "rust");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 12);
    for r in results {
        assert_eq!(r["status"], "pass");
        assert!(r["scenario"].as_str().unwrap().contains('/'));
        assert!(r["duration_ms"].is_u64());
        assert!(r["message"].is_string());
    }
    assert_eq!(v["summary"]["pass"], 12);
}

#[test]
fn junit_and_record_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let record = dir.path().join("logs");
    shmconf()
        .args(["run", "--tag", "seed-contract", "--junit"])
        .arg(&junit)
        .arg("--record")
        .arg(&record)
        .arg(scenarios())
        .assert()
        .success();
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testsuite name=\"shmconf (rust)\""), "{xml}");
    assert!(xml.contains("name=\"orders/paused-writer\""));
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record.join("orders%2Fpaused-writer.json")).unwrap()).unwrap();
    assert_eq!(log["status"], "pass");
    let kinds: Vec<&str> = log["log"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for k in ["spawn", "output_seen", "snapshot", "stdin", "exit"] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
}

/// A report that cannot be written at the run's end (a full device: the
/// paths were checked before the run) is one line naming its flag or
/// stdout and exit 2, whatever the verdicts; every other report of the run
/// is still written. A reader that stops reading stdout (`| head`) is no
/// such failure (below).
#[rstest]
#[case::junit(&["--junit", "/dev/full"], None, "--junit /dev/full: ")]
#[case::summary(&["--summary", "/dev/full"], None, "--summary /dev/full: ")]
#[case::json_on_stdout(&["--format", "json"], Some("/dev/full"), "stdout: ")]
#[case::tap_on_stdout(&["--format", "tap"], Some("/dev/full"), "stdout: ")]
#[case::human_on_stdout(&[], Some("/dev/full"), "stdout: ")]
fn a_report_that_cannot_be_written_is_exit_2_and_costs_no_other(
    #[case] flags: &[&str],
    #[case] stdout: Option<&str>,
    #[case] said: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    let mut cmd = StdCommand::new(env!("CARGO_BIN_EXE_shmconf"));
    shmconf::sysv::process::end_with_parent(&mut cmd);
    cmd.arg("run")
        .args(flags)
        .arg("--record")
        .arg(&record)
        .arg(scenarios().join("visibility/writer-then-reader.toml"))
        .stderr(std::process::Stdio::piped());
    if let Some(path) = stdout {
        cmd.stdout(std::fs::OpenOptions::new().write(true).open(path).unwrap());
    } else {
        cmd.stdout(std::process::Stdio::null());
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with(&format!("shmconf: {said}"))),
        "{said} in {stderr}"
    );
    let recorded = std::fs::read_to_string(record.join("visibility%2Fwriter-then-reader.json")).unwrap();
    assert!(recorded.contains("\"status\": \"pass\""), "{recorded}");
}

#[test]
fn a_reader_that_stops_reading_is_no_failure_to_report() {
    let mut cmd = StdCommand::new(env!("CARGO_BIN_EXE_shmconf"));
    shmconf::sysv::process::end_with_parent(&mut cmd);
    let mut child = cmd
        .args(["run", "--format", "json"])
        .arg(scenarios().join("visibility/writer-then-reader.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close our end before the report comes: its write gets EPIPE.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn expectations_turn_failures_into_xfail_and_passes_into_xpass() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.toml");
    std::fs::write(
        &exp,
        "[\"visibility/writer-then-reader\"]\nstatus = \"fail\"\nreason = \"claimed broken\"\nfails = [{ step = 3, check = \"stdout\" }]\n",
    )
    .unwrap();
    shmconf()
        .args(["run", "--expectations"])
        .arg(&exp)
        .arg(scenarios().join("visibility/writer-then-reader.toml"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("XPASS visibility/writer-then-reader"));
    shmconf()
        .args(["run", "--impl", "c-reference"])
        .arg(scenarios().join("keys/missing-key-file.toml"))
        .assert()
        .success()
        .stdout(predicate::str::contains("XFAIL   keys/missing-key-file"))
        .stdout(predicate::str::contains("silently uses key 0xffffffff"));
}

/// A deviation pins the failures it expects: the C reference's real EOF
/// defect (step 2's exit) against deviations that name something else is a
/// FAIL that says so; named right, it is an XFAIL.
#[rstest]
#[case::another_step("fails = [{ step = 3, check = \"exit\" }]", false)]
#[case::another_check("fails = [{ step = 2, check = \"stdout\" }]", false)]
#[case::an_exploration_check("fails = [{ check = \"whole-lines\" }]", false)]
#[case::another_exploration_check("fails = [{ check = \"detach-attached\" }]", false)]
#[case::the_step_and_check("fails = [{ step = 2, check = \"exit\" }]", true)]
#[case::the_check_at_any_step("fails = [{ check = \"exit\" }, { check = \"segments\" }]", true)]
fn a_deviation_that_names_another_failure_is_a_fail(#[case] fails: &str, #[case] expected: bool) {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp.toml");
    std::fs::write(
        &exp,
        format!("[\"errors/eof-without-input\"]\nstatus = \"fail\"\nreason = \"pinned\"\n{fails}\n"),
    )
    .unwrap();
    let run = shmconf()
        .args(["run", "--impl", "c-reference", "--expectations"])
        .arg(&exp)
        .arg(scenarios().join("errors/eof-without-input.toml"))
        .assert();
    // What to pin is in the JSON report, typed.
    let json = shmconf()
        .args(["run", "--format", "json", "--impl", "c-reference", "--expectations"])
        .arg(&exp)
        .arg(scenarios().join("errors/eof-without-input.toml"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        v["results"][0]["failures"],
        serde_json::json!([{ "step": 2, "check": "exit" }]),
        "{v}"
    );
    if expected {
        run.success()
            .stdout(predicate::str::contains("XFAIL   errors/eof-without-input"));
    } else {
        run.code(1)
            .stdout(predicate::str::contains("FAIL    errors/eof-without-input"))
            .stdout(predicate::str::contains(
                "a known-failing scenario failed differently: step 2: writer@2: expected a refusal",
            ));
    }
}

/// A typo in a command is one line and exit 2 before any scenario runs,
/// not a BROKEN per scenario.
#[rstest]
#[case::missing_path(&["/nonexistent/writer", "true"], "--writer: program \"/nonexistent/writer\" not found")]
#[case::missing_in_path(&["true", "no-such-reader-xyz --keep"], "--reader: program \"no-such-reader-xyz\" not found in PATH")]
fn a_missing_implementation_command_is_one_error_before_any_scenario(#[case] cmds: &[&str], #[case] message: &str) {
    assert_eq!(one_line_error(cmds[0], cmds[1]), format!("shmconf: {message}"));
}

/// Run the catalogue with these commands, expecting exit 2 before any
/// scenario (nothing on stdout) and one line on stderr, which it returns.
fn one_line_error(writer: &str, reader: &str) -> String {
    let out = shmconf()
        .args(["run", "--writer", writer, "--reader", reader])
        .arg(scenarios())
        .assert()
        .code(2)
        .stdout("")
        .get_output()
        .stderr
        .clone();
    let stderr = String::from_utf8_lossy(&out).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}

/// A program that starts but whose code is not there (an interpreter given
/// a script that does not exist where roles run, `env` given a missing
/// program) is found by the preflight, which starts each role once, by what
/// the kernel shows (an error exit having done nothing with shared memory),
/// however the interpreter words it, on stderr or (php) on stdout: one line,
/// exit 2, no scenario run.
#[rstest]
#[case::python_script(&["python3 no-such-writer.py", "true"], "writer", "no-such-writer.py")]
#[case::shell_script(&["true", "sh ./no-such-reader.sh"], "reader", "no-such-reader.sh")]
#[case::perl_script(&["perl no-such.pl", "true"], "writer", "no-such.pl")]
#[case::php_says_it_on_stdout(&["php no-such.php", "true"], "writer", "no-such.php")]
#[case::node_script(&["true", "node no-such.js"], "reader", "no-such.js")]
#[case::bash_script(&["bash no-such.sh", "true"], "writer", "no-such.sh")]
#[case::env_program(&["env no-such-program-xyz", "true"], "writer", "no-such-program-xyz")]
fn a_role_that_dies_at_once_for_a_missing_file_is_one_error(
    #[case] cmds: &[&str],
    #[case] role: &str,
    #[case] named: &str,
) {
    let program = cmds[usize::from(role == "reader")].split(' ').next().unwrap();
    if StdCommand::new(program).arg("--version").output().is_err() {
        eprintln!("{program} is not installed here: case not run");
        return;
    }
    let stderr = one_line_error(cmds[0], cmds[1]);
    let command = cmds[usize::from(role == "reader")];
    assert!(
        stderr.starts_with(&format!("shmconf: {role}: {command:?} does not start (exit code ")),
        "{stderr}"
    );
    // Its own words, from whichever stream it used, name the missing file.
    assert!(stderr.contains(named), "{stderr}");
}

/// The same interpreters running a script that exists are no preflight
/// error, whatever the script then does wrong (the scenarios judge that):
/// here a writer that makes its segment and then fails.
#[rstest]
#[case::sh("sh")]
#[case::bash("bash")]
fn a_script_that_runs_passes_the_preflight(#[case] shell: &str) {
    let dir = tempfile::tempdir().unwrap();
    let writer = assert_cmd::cargo::cargo_bin("shm-writer");
    let script = dir.path().join("writer.sh");
    // A real writer, then a failure of its own: activity the kernel saw.
    std::fs::write(
        &script,
        format!(
            "{} \"$@\"\necho 'wrapper: failing on purpose' >&2\nexit 9\n",
            writer.display()
        ),
    )
    .unwrap();
    let reader = assert_cmd::cargo::cargo_bin("shm-reader");
    let one = scenarios().join("visibility/writer-then-reader.toml");
    shmconf()
        .arg("run")
        .arg(&one)
        .args(["--writer", &format!("{shell} {}", script.display())])
        .args(["--reader", &reader.display().to_string()])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("FAIL    visibility/writer-then-reader"))
        .stdout(predicate::str::contains(
            "expected exit code 0, but it ended with exit code 9",
        ));
}

#[test]
fn a_writer_that_is_not_executable_is_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain-file");
    std::fs::write(&plain, "not a program").unwrap();
    std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    shmconf()
        .args(["run", "--reader", "true", "--writer"])
        .arg(&plain)
        .arg(scenarios())
        .assert()
        .code(2)
        .stdout("")
        .stderr(format!(
            "shmconf: --writer: program {:?} is not an executable file\n",
            plain.display().to_string()
        ));
}

/// A program the kernel cannot start (its interpreter is missing) passes
/// the static check (it exists, it is executable) and is caught by the
/// preflight's start: one line naming the role and exec's error, exit 2.
#[test]
fn an_implementation_that_cannot_start_is_one_error_from_the_preflight() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-interpreter");
    std::fs::write(&bad, "#!/nonexistent/interpreter\n").unwrap();
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let stderr = one_line_error("true", &bad.display().to_string());
    assert!(stderr.starts_with("shmconf: reader: cannot start"), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}

#[test]
fn list_selects_by_tag_and_skip() {
    shmconf()
        .args(["list", "--tag", "namespaces", "--skip", "rmid"])
        .arg(scenarios())
        .assert()
        .success()
        .stdout(predicate::str::contains("namespaces/independent-segments"))
        .stdout(predicate::str::contains("shm-rmid-forced").not());
    shmconf()
        .arg("schema")
        .assert()
        .success()
        .stdout(predicate::str::contains("\"until_stdout\""));
}

#[test]
fn ctrl_c_leaves_no_process_segment_or_temp_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("hang.toml");
    // A writer left waiting on stdin, then a long wait for its exit.
    std::fs::write(
        &scenario,
        "description = \"hang\"\n[[step]]\nrun = \"writer\"\nbackground = true\nname = \"w\"\n\
         [[step]]\nwait = \"w\"\nuntil_stdout = \"Write Data: \"\n\
         [[step]]\nexec = [\"sleep\", \"1234.5\"]\ntimeout_ms = 60000\n",
    )
    .unwrap();
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    // Started as from a terminal: SIGINT not ignored, whatever this test
    // process was started ignoring (a background job ignores it).
    let mut command = StdCommand::new(assert_cmd::cargo::cargo_bin("shmconf"));
    shmconf::sysv::process::with_default_signals(&mut command);
    shmconf::sysv::process::end_with_parent(&mut command);
    let mut child = command
        .arg("run")
        .arg(&scenario)
        .env("TMPDIR", &scratch)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_matching("sleep 1234.5").is_empty() {
        assert!(Instant::now() < deadline, "the scenario never reached its sleep");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(processes_matching("sleep 1234.5").is_empty(), "sleep survived Ctrl-C");
    assert!(processes_matching(&scratch.display().to_string()).is_empty());
    assert_eq!(leftovers(&scratch), Vec::<PathBuf>::new(), "temp dir left behind");
}

#[test]
fn our_pair_interoperates_with_the_original_in_both_directions() {
    // The C reference behaves as the original programs; mix it with ours.
    let c_ref = PathBuf::from(env!("SHMCONF_C_REFERENCE_DIR"));
    let bin = |name: &str| assert_cmd::cargo::cargo_bin(name);
    for (writer, reader) in [
        (c_ref.join("c-writer"), bin("shm-reader")),
        (bin("shm-writer"), c_ref.join("c-reader")),
    ] {
        shmconf()
            .args(["run", "--tag", "seed-contract", "--writer"])
            .arg(&writer)
            .arg("--reader")
            .arg(&reader)
            .arg(scenarios())
            .assert()
            .success()
            .stdout(predicate::str::contains(all_seed_contract_pass()));
    }
}

#[test]
fn scenario_docs_list_every_scenario_and_the_schema_is_current() {
    let readme = std::fs::read_to_string(scenarios().join("README.md")).unwrap();
    let all = shmconf_harness::scenario::discover(&[scenarios()]).unwrap();
    assert!(all.len() >= 40, "the catalogue holds at least 40 scenarios");
    for s in &all {
        assert!(
            readme.contains(&format!("| `{}` |", s.id)),
            "scenarios/README.md does not list {}",
            s.id
        );
    }
    let schema = std::fs::read_to_string(scenarios().join("scenario.schema.json")).unwrap();
    assert_eq!(
        schema.trim(),
        shmconf_harness::scenario::json_schema().trim(),
        "regenerate: shmconf schema > scenarios/scenario.schema.json"
    );
}

/// docs/conformance.md says, for every scenario, which of its points are
/// the contract and which are our choices; it names no scenario that is gone.
#[test]
fn conformance_doc_has_each_scenarios_contract_line() {
    let doc =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/conformance.md")).unwrap();
    let section = doc
        .split("\n## Each scenario's contract\n")
        .nth(1)
        .expect("docs/conformance.md has a section \"Each scenario's contract\"");
    let section = section.split("\n## ").next().unwrap_or(section);
    // Every `group/name` in backquotes on a list line is a scenario id.
    let named: std::collections::BTreeSet<String> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| {
            w.split_once('/').is_some_and(|(g, n)| {
                !g.is_empty()
                    && !n.is_empty()
                    && !w.contains(['.', ' '])
                    && w.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-/".contains(c))
            })
        })
        .map(str::to_string)
        .collect();
    let all: std::collections::BTreeSet<String> = shmconf_harness::scenario::discover(&[scenarios()])
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let missing: Vec<&String> = all.difference(&named).collect();
    let stale: Vec<&String> = named.difference(&all).collect();
    assert!(
        missing.is_empty(),
        "docs/conformance.md has no contract line for {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "docs/conformance.md names scenarios that do not exist: {stale:?}"
    );
}

/// The syscall oracle (no procfs) judges the catalogue as procfs does, and
/// the cross-check (both, compared at every read) finds no disagreement.
#[rstest]
#[case::syscalls("syscalls", "rust")]
#[case::cross_check_rust("cross-check", "rust")]
#[case::cross_check_c_reference("cross-check", "c-reference")]
fn other_oracles_agree_on_the_whole_catalogue(#[case] oracle: &str, #[case] implementation: &str) {
    shmconf()
        .args(["run", "--oracle", oracle, "--impl", implementation])
        .arg(scenarios())
        .assert()
        .success()
        .stderr(predicate::str::contains(format!("oracle {oracle}")))
        .stdout(predicate::str::contains(", 0 failed,"));
}

#[test]
fn shared_isolation_runs_one_at_a_time_and_leaves_others_segments_alone() {
    use shmconf::sysv::{Create, Key, ReadOnly, ReadWrite, Segment};
    // A private namespace standing in for a container's: it holds segments
    // of another program before the run, and that program keeps creating
    // more (keys 0x7700..) while the whole catalogue runs.
    shmconf::ipcns::in_private_ipc_ns(|| {
        let make = |k: i32| {
            let seg = Segment::get(Key::from_raw(0x7700 + k), 64, Create::Exclusive, 0o600).unwrap();
            seg.attach::<ReadWrite>()
                .unwrap()
                .write_at(0, format!("theirs {k}\0").as_bytes())
                .unwrap();
            (k, seg.id())
        };
        let mut theirs: Vec<(i32, i32)> = (0..3).map(make).collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let during = std::thread::scope(|s| {
            let creator = s.spawn(|| {
                let mut made = Vec::new();
                for k in 3..43 {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    made.push(make(k));
                    std::thread::sleep(Duration::from_millis(25));
                }
                made
            });
            shmconf()
                .args(["run", "--isolation", "shared"])
                .arg(scenarios())
                .timeout(Duration::from_secs(300))
                .assert()
                .success()
                .stderr(predicate::str::contains("backend shared, oracle procfs, jobs 1"))
                .stdout(predicate::str::contains(
                    "SKIP    namespaces/independent-segments (0 ms) - needs 2 IPC namespaces",
                ))
                // A program step's model starts from an empty table: with
                // neighbours' segments there, it is not judged at all.
                .stdout(predicate::str::is_match(
                    "SKIP    errors/creator-keeps-the-owners-class \\([0-9]+ ms\\) - a program step is judged by a model that starts from an empty table, and the shared namespace holds [0-9]+ segments of other programs",
                ).unwrap());
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            creator.join().unwrap()
        });
        assert!(during.len() >= 10, "only {} segments made during the run", during.len());
        theirs.extend(during);
        let table = shmconf::SegTable::read().unwrap();
        let left: Vec<i32> = table.rows.iter().map(|r| r.shmid).collect();
        for (k, id) in &theirs {
            let row = table
                .find_id(*id)
                .unwrap_or_else(|| panic!("segment {k} (id {id}) was removed"));
            assert_eq!(row.key, Key::from_raw(0x7700 + k), "segment {k}'s key changed");
            let text = Segment::from_id(*id)
                .attach::<ReadOnly>()
                .unwrap()
                .read_c_string_capped(64);
            assert_eq!(text, format!("theirs {k}").as_bytes(), "segment {k}'s content changed");
        }
        assert_eq!(
            left.len(),
            theirs.len(),
            "the run left segments of its own: {:?}",
            table.rows
        );
        for (_, id) in theirs {
            Segment::from_id(id).remove().unwrap();
        }
    })
    .expect("needs a private IPC namespace");
}

#[rstest]
#[case::reader_does_not_remove("NO_RMID", "explore-2x2", "the model expects no segments, the kernel has {key")]
#[case::writer_writes_before_its_input(
    "EARLY_WRITE",
    "explore-paused-writer",
    "after p:attach (event 1 of 2): the model expects {key"
)]
fn exploration_catches_broken_pairs_with_the_shortest_order_and_a_replay_that_reproduces_it(
    #[case] fault: &str,
    #[case] scenario: &str,
    #[case] needle: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let bin = faulty(dir.path(), Some(fault));
    let file = scenarios().join(format!("orders/{scenario}.toml"));
    let b = bin.display();
    let out = shmconf()
        .arg("run")
        .arg(&file)
        .args(["--writer", &format!("{b} writer"), "--reader", &format!("{b} reader")])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("orders disagree with the model"))
        .stdout(predicate::str::contains("shortest failing order: "))
        .stdout(predicate::str::contains(needle))
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&out);
    let order = text
        .split("--order '")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("a replay command");
    assert!(order.split(',').count() <= 2, "shrunk to at most two events: {order}");
    // The replay runs exactly that order and fails the same way.
    shmconf()
        .arg("run")
        .arg(&file)
        .args([
            "--writer",
            &format!("{b} writer"),
            "--reader",
            &format!("{b} reader"),
            "--order",
            order,
        ])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("1 of 1 orders disagree with the model"))
        .stdout(predicate::str::contains(needle));
}

/// Orders are isolated: a reader that, run alone, leaves a segment under
/// the writers' key too small for them, a marker file in its dir, a
/// daemon that keeps writing into the key's segment and (were it let)
/// a smaller shmmax fails exactly the orders it leaks in. The four orders
/// where a writer goes first come after the two leaking ones and pass,
/// on one worker and on two; nothing of the leaks outlives the run.
#[rstest]
#[case::one_job("1")]
#[case::two_jobs("2")]
fn what_an_order_leaves_behind_changes_no_other_orders_verdict(#[case] jobs: &str) {
    let dir = tempfile::tempdir().unwrap();
    let bin = faulty(dir.path(), Some("LEAK"));
    // The marker is read: in a dir whose "leftover" names another key
    // file, the reader says so instead of reading.
    let stale = dir.path().join("stale");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("shmfile"), "").unwrap();
    std::fs::write(stale.join("leftover"), "1\n").unwrap();
    let told = StdCommand::new(&bin)
        .arg("reader")
        .current_dir(&stale)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&told.stdout),
        "Data read from memory: (an earlier order's dir)\n"
    );
    // Runs in declared order: the reader first, so the two orders that
    // start with it (and leak) are planned before the four that do not.
    let scenario = dir.path().join("leaky.toml");
    std::fs::write(
        &scenario,
        "description = \"a reader that leaks when alone\"\n[explore]\nruns = [\n\
         { name = \"r\", role = \"reader\" },\n\
         { name = \"w1\", role = \"writer\", stdin = \"one\\n\" },\n\
         { name = \"w2\", role = \"writer\", stdin = \"two\\n\" },\n]\n",
    )
    .unwrap();
    let b = bin.display();
    shmconf()
        .arg("run")
        .arg(&scenario)
        .args(["--writer", &format!("{b} writer"), "--reader", &format!("{b} reader")])
        .args(["--jobs", jobs])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("2 of 6 orders disagree with the model"))
        .stdout(predicate::str::contains("shortest failing order: r (1 events)"))
        // The leaks are live within their own order: the small segment,
        // and the daemon writing into it.
        .stdout(predicate::str::contains("size 512"))
        .stdout(predicate::str::contains("\"corrupt\""));
    assert_eq!(
        processes_matching(&b.to_string()),
        Vec::<String>::new(),
        "the daemon outlived the run"
    );
}

/// `shmconf probe step` names the kinds there are, and a kind refuses
/// arguments it cannot take (usage, exit 2) before any call is made.
#[rstest]
#[case::no_such_kind(&["probe", "step", "shm_lokc", "1"], "no step kind \"shm_lokc\" (there are: shm_lock, ")]
#[case::not_an_id(&["probe", "step", "shm_lock", "S"], "expected ID [--unlock]")]
#[case::an_unknown_flag(&["probe", "step", "shm_lock", "1", "--unlokc"], "expected ID [--unlock]")]
fn the_probe_refuses_a_step_kind_it_cannot_run(#[case] args: &[&str], #[case] says: &str) {
    shmconf()
        .args(args)
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(says));
}

/// `matrix --out` inside the scenarios it runs is refused before any target
/// runs (exit 2, naming both): the expectations files it writes there would
/// be read as scenarios by every target after the first. Reached directly,
/// through `..` and through a symbolic link alike.
#[rstest]
#[case::directly("s/out")]
#[case::through_dot_dot("s/x/../out")]
#[case::through_a_link("link/out")]
fn a_matrix_out_inside_its_scenarios_is_refused(#[case] out: &str) {
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("s");
    std::fs::create_dir_all(theirs.join("x")).unwrap();
    std::fs::copy(
        scenarios().join("visibility/writer-then-reader.toml"),
        theirs.join("w.toml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&theirs, dir.path().join("link")).unwrap();
    shmconf()
        .current_dir(dir.path())
        .args(["matrix", "--target", "local", "--out", out, "s"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is inside the scenarios"))
        .stderr(predicate::str::contains("put --out elsewhere"));
    assert!(!theirs.join("out").exists(), "nothing written");
}

#[test]
fn a_tiny_benchmark_completes_and_verifies_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let svg = dir.path().join("bench.svg");
    shmconf()
        .args([
            "bench",
            "--mib",
            "1",
            "--chunks",
            "4096,65536",
            "--rounds",
            "50",
            "--file-mib",
            "1",
            "--json",
        ])
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .assert()
        .success()
        .stdout(predicate::str::contains("1-byte round trip"))
        .stdout(predicate::str::contains("file to file"));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mechanisms: std::collections::BTreeSet<&str> = v["throughput"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["mechanism"].as_str().unwrap())
        .collect();
    for m in std::iter::once(&"memcpy").chain(shmconf_harness::bench::MECHANISMS) {
        assert!(mechanisms.contains(m), "{m} measured");
    }
    assert_eq!(
        v["latency"].as_array().unwrap().len(),
        shmconf_harness::bench::MECHANISMS.len()
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
}

/// `bench --explore` puts each exploration beside its floor: the same
/// orders (a paused writer's two halves included; at system-call level the
/// choices each executed order played) run bare.
#[test]
fn the_exploration_bench_puts_each_exploration_beside_its_floor() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("orders");
    std::fs::create_dir(&folder).unwrap();
    for name in [
        "explore-2x2.toml",
        "explore-paused-writer.toml",
        "explore-recreated-key-file.toml",
        "syscall-rmid-before-attach.toml",
    ] {
        std::fs::copy(scenarios().join("orders").join(name), folder.join(name)).unwrap();
    }
    let json = dir.path().join("bench.json");
    shmconf()
        .args(["bench", "--mechanisms", "none", "--explore"])
        .arg(&folder)
        .arg("--json")
        .arg(&json)
        .timeout(Duration::from_secs(600))
        .assert()
        .success()
        .stdout(predicate::str::contains("exploration speed"));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = v["explore"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "four scenarios, --jobs 1 and 2: {rows:#?}");
    assert_eq!(
        rows.iter().filter(|r| r["granularity"] == "syscall").count(),
        2,
        "{rows:#?}"
    );
    let root = nix::unistd::geteuid().is_root();
    for r in rows {
        assert_eq!(r["status"], "pass", "{r:#}");
        let orders = r["orders"].as_u64().unwrap();
        assert!(orders > 0, "{r:#}");
        if root {
            assert_eq!(
                r["floor_orders"].as_u64(),
                Some(orders),
                "the floor runs the explorer's orders: {r:#}"
            );
            assert!(r["floor_ms"].as_f64().unwrap() > 0.0, "{r:#}");
            assert!(r["floor_ratio"].as_f64().unwrap() > 0.0, "{r:#}");
        } else if r["granularity"] == "process" {
            assert!(r["no_floor"].as_str().unwrap().contains("IPC namespace"), "{r:#}");
        } else {
            assert!(!r["no_floor"].as_str().unwrap().is_empty(), "{r:#}");
        }
    }
}

/// The differential judge on this machine's kernel: generated programs,
/// each in a new IPC namespace, agree with the model result by result and
/// table by table; and the same seed is the same program.
#[test]
fn generated_programs_agree_with_the_model_on_linux() {
    if !nix::unistd::geteuid().is_root() {
        // No namespace of its own to make: one line, exit 2, no verdict.
        shmconf()
            .args(["fuzz", "--programs", "3"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("new IPC namespace"));
        return;
    }
    let out = shmconf()
        .args(["fuzz", "--programs", "300", "--ops", "30"])
        .timeout(Duration::from_secs(300))
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("fuzz (local): 300 programs (seeds 1..=300), 9000 operations: every result"),
        "{text}"
    );
    shmconf()
        .args(["fuzz", "--replay", "17", "--ops", "12"])
        .timeout(Duration::from_secs(60))
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "fuzz (local): 1 program (seeds 17..=17), 12 operations",
        ));
    // Reproducible from the seed: the same programs give the same answers,
    // kind by kind, and a replay is the program of that seed.
    let run = |args: &[&str]| {
        let out = shmconf()
            .arg("fuzz")
            .args(args)
            .timeout(Duration::from_secs(120))
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out).unwrap()
    };
    let first = run(&["--programs", "25", "--seed", "500"]);
    assert!(first.contains("answers checked: "), "{first}");
    let covered = run(&["--programs", "25", "--seed", "500", "--coverage"]);
    assert!(
        covered.starts_with(&first),
        "the coverage table comes after the report: {covered}"
    );
    assert!(covered.contains("| shmget | EEXIST | "), "{covered}");
    assert!(covered.contains("| shmget | ENOSPC | never |"), "{covered}");
    assert_eq!(first, run(&["--programs", "25", "--seed", "500"]));
    assert_ne!(
        first,
        run(&["--programs", "25", "--seed", "900"]),
        "another seed, other programs"
    );
    assert_eq!(
        run(&["--replay", "517", "--ops", "12"]),
        run(&["--seed", "517", "--programs", "1", "--ops", "12"])
    );
}

#[rstest]
#[case::not_json("hello\n")]
#[case::unknown_operation("{\"seed\":1,\"ops\":[{\"op\":\"fork\"}]}\n")]
#[case::nothing("")]
fn the_executor_refuses_a_program_it_cannot_read_in_one_line(#[case] input: &str) {
    shmconf()
        .arg("fuzz-exec")
        .write_stdin(input)
        .timeout(Duration::from_secs(30))
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::starts_with("shmconf fuzz-exec: the program: "));
}

#[test]
fn fuzz_refuses_a_bad_count_in_one_line() {
    shmconf()
        .args(["fuzz", "--ops", "0"])
        .timeout(Duration::from_secs(30))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--ops"));
}

/// Each target says what it lacks in one line and exit 2, before any
/// program runs: docker needs the image that carries the executor.
#[rstest]
#[case::docker_without_image(&["fuzz", "--target", "docker", "--programs", "1"], "--image <IMAGE>")]
#[case::unknown_target(&["fuzz", "--target", "kvm"], "invalid value 'kvm'")]
fn fuzz_says_what_a_target_lacks(#[case] args: &[&str], #[case] says: &str) {
    shmconf()
        .args(args)
        .timeout(Duration::from_secs(30))
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains(says));
}

/// A mistyped known-divergences file is a load error at its place, exit 2,
/// before any program runs.
#[test]
fn fuzz_refuses_a_wrong_known_file_at_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("known.toml");
    std::fs::write(
        &file,
        "[[divergence]]\ncall = \"shmget\"\nmodel = \"EACCESS\"\nkernel = \"id\"\nreason = \"r\"\n",
    )
    .unwrap();
    shmconf()
        .args(["fuzz", "--programs", "1", "--known"])
        .arg(&file)
        .timeout(Duration::from_secs(30))
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains(format!(
            "{}:3:9: unknown answer \"EACCESS\"",
            file.display()
        )));
}

#[test]
fn a_filesystem_without_colliding_inodes_in_time_is_a_skip_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("collide.toml");
    std::fs::write(
        &file,
        "description = \"x\"\nfiles = []\n[[step]]\ncollide_files = [\"a\", \"b\"]\ntimeout_ms = 1\n[[step]]\nsegments = []\n",
    )
    .unwrap();
    // The only scenario skipped: nothing was checked, a failure of its own (exit 4).
    shmconf()
        .arg("run")
        .arg(&file)
        .assert()
        .code(4)
        .stderr(predicate::str::contains(
            "nothing was checked: all 1 scenario(s) were skipped",
        ))
        .stdout(predicate::str::contains("SKIP    collide"))
        .stdout(predicate::str::contains(
            "got inodes equal modulo 65536 within the step's time limit",
        ));
}

/// `--format tap` is TAP that `prove` reads: a faithful build passes, a
/// faulty one fails with the failing scenario named; `--summary` appends a
/// Markdown table.
#[test]
fn tap_output_passes_prove_and_the_summary_is_a_markdown_table() {
    let dir = tempfile::tempdir().unwrap();
    let shmconf_bin = assert_cmd::cargo::cargo_bin("shmconf");
    let scenario = scenarios().join("visibility/writer-then-reader.toml");
    for (fault, ok) in [(None, true), (Some("CONTENT"), false)] {
        let b = faulty(dir.path(), fault);
        // prove splits --exec on spaces: the quoting goes in a script, which
        // sh reads (not executed itself: no ETXTBSY from a concurrent fork).
        let wrapper = dir.path().join(format!("tap-{}", fault.unwrap_or("none")));
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec '{}' run --format tap --writer '{} writer' --reader '{} reader' \"$@\"\n",
                shmconf_bin.display(),
                b.display(),
                b.display()
            ),
        )
        .unwrap();
        let out = StdCommand::new("prove")
            .arg("--exec")
            .arg(format!("sh {}", wrapper.display()))
            .arg(&scenario)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.success(), ok, "{fault:?}: {text}");
        assert!(
            text.contains(if ok { "Result: PASS" } else { "Result: FAIL" }),
            "{text}"
        );
    }
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "# earlier step\n").unwrap();
    shmconf()
        .args(["run", "--impl", "c-reference", "--summary"])
        .arg(&summary)
        .arg(scenarios().join("errors"))
        .assert()
        .success();
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.starts_with("# earlier step\n## shmconf: c-reference\n"),
        "appended: {md}"
    );
    assert!(
        md.contains("| total | pass | fail | broken | timeout | xpass | xfail | skip | interrupted |"),
        "{md}"
    );
    assert!(md.contains("| `errors/eof-without-input` | XFAIL |"), "{md}");

    // Rendered as GitHub does (GFM tables): two tables, the second with a
    // row per scenario that did not pass, every row with its three cells
    // (a '|' in a message stays inside its cell).
    let mut options = pulldown_cmark::Options::empty();
    options.insert(pulldown_cmark::Options::ENABLE_TABLES);
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, pulldown_cmark::Parser::new_ext(&md, options));
    assert_eq!(html.matches("<table>").count(), 2, "{html}");
    let not_passed = md.lines().filter(|l| l.starts_with("| `")).count();
    assert!(not_passed > 0);
    let body_rows = html.split("<table>").nth(2).unwrap().matches("<tr>").count();
    assert_eq!(body_rows, not_passed + 1, "header + one row per scenario: {html}");
    let cells = html.split("<table>").nth(2).unwrap().matches("<td>").count();
    assert_eq!(cells, 3 * not_passed, "{html}");
}

/// `shmconf show` describes every scenario in plain words.
#[test]
fn show_describes_every_scenario_in_plain_words() {
    let out = shmconf().arg("show").arg(scenarios()).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for s in shmconf_harness::scenario::discover(&[scenarios()]).unwrap() {
        assert!(
            text.contains(&format!("{}\n\n{}", s.id, s.scenario.description.trim())),
            "{}",
            s.id
        );
    }
    shmconf()
        .arg("show")
        .arg(scenarios().join("orders/paused-writer.toml"))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "  2. wait until the kernel shows a segment with key ftok:shmfile:65 attached (w runs)",
        ))
        .stdout(predicate::str::contains(
            "  8. check the kernel's segment table: no segments",
        ));
    shmconf()
        .args(["show", "--tag", "no-such-tag"])
        .arg(scenarios())
        .assert()
        .code(2);
    // By id, from the default scenarios dir.
    shmconf()
        .args(["show", "keys/proj-id-collision"])
        .current_dir(scenarios().join(".."))
        .assert()
        .success()
        .stdout(predicate::str::starts_with("keys/proj-id-collision\n"));
    shmconf()
        .args(["show", "keys/no-such-scenario"])
        .current_dir(scenarios().join(".."))
        .assert()
        .code(2)
        .stderr("shmconf: keys/no-such-scenario: no such file, and no scenario with that id\n");
}

#[test]
fn the_c_reference_leaves_its_prompt_in_the_buffer_on_a_pipe_as_the_original() {
    // The original printf()s "Write Data: " and reads with gets(): on a pipe
    // the prompt sits in stdio's buffer until exit. A reference that flushed
    // it would hide scenarios that wait for the prompt (they TIMEOUT on the
    // original), so the reference must not.
    use std::io::Read;
    let writer = PathBuf::from(env!("SHMCONF_C_REFERENCE_DIR")).join("c-writer");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shmfile"), b"").unwrap();
    let early = shmconf::ipcns::in_private_ipc_ns(|| {
        let mut child = StdCommand::new(&writer)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut first = [0u8; 1];
            let n = stdout.read(&mut first).unwrap_or(0);
            (Instant::now(), n)
        });
        // Attached (kernel's word): it is past the prompt, blocked in gets().
        let deadline = Instant::now() + Duration::from_secs(10);
        while !shmconf::SegTable::read().unwrap().rows.iter().any(|r| r.nattch >= 1) {
            assert!(Instant::now() < deadline, "the writer never attached");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(300));
        let released = Instant::now();
        drop(child.stdin.take()); // EOF: now it exits and flushes
        let (first_byte_at, n) = reader.join().unwrap();
        assert!(child.wait().unwrap().success());
        (n, first_byte_at < released)
    })
    .unwrap();
    assert_eq!(early, (1, false), "the prompt reached the pipe before stdin closed");
}

#[test]
fn verdicts_are_coloured_only_for_a_terminal_or_when_forced() {
    let file = scenarios().join("visibility/writer-then-reader.toml");
    let piped = shmconf()
        .arg("run")
        .arg(&file)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&piped.stdout).contains('\x1b'),
        "no escapes into a pipe"
    );
    let forced = shmconf()
        .arg("run")
        .arg(&file)
        .env("CLICOLOR_FORCE", "1")
        .env_remove("NO_COLOR")
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&forced.stdout).contains("\x1b[32mPASS"),
        "{}",
        String::from_utf8_lossy(&forced.stdout)
    );
    let vetoed = shmconf()
        .arg("run")
        .arg(&file)
        .env("CLICOLOR_FORCE", "1")
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&vetoed.stdout).contains('\x1b'),
        "NO_COLOR wins"
    );
}

/// An implementation file that declares no options (as the seed programs
/// have none): every scenario that passes one is a SKIP naming it, the seed
/// contract still passes, nothing fails for want of an option.
#[test]
fn an_implementation_file_without_options_skips_what_needs_them() {
    let dir = tempfile::tempdir().unwrap();
    let bin = |name: &str| assert_cmd::cargo::cargo_bin(name).display().to_string();
    let file = dir.path().join("impl.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"no-options\"\nwriter = \"{}\"\nreader = \"{}\"\n\n[deviations.\"keys/missing-key-file\"]\nstatus = \"skip\"\nreason = \"not this one\"\n",
            bin("shm-writer"),
            bin("shm-reader")
        ),
    )
    .unwrap();
    shmconf()
        .args(["run", "--impl-file"])
        .arg(&file)
        .arg(scenarios())
        .timeout(Duration::from_secs(300))
        .assert()
        .success()
        // (A skip's time is whatever the machine took to decide it.)
        .stdout(
            predicate::str::is_match(
                r"visibility/multiple-readers \(\d+ ms\) - implementation no-options has no --keep",
            )
            .unwrap(),
        )
        .stdout(
            predicate::str::is_match(
                r"keys/exclusive-create-eexist \(\d+ ms\) - implementation no-options has no --exclusive",
            )
            .unwrap(),
        )
        .stdout(predicate::str::is_match(r"keys/missing-key-file \(\d+ ms\) - expectations: not this one").unwrap())
        .stdout(predicate::str::contains("PASS    visibility/writer-then-reader"))
        .stdout(predicate::str::contains(" 0 failed,"));
}

#[rstest]
#[case::unknown_option("options = [\"turbo\"]", "impl.toml:4:")]
#[case::unknown_field("colour = \"blue\"", "impl.toml:4:1")]
#[case::bad_status("[deviations.\"a/b\"]\nstatus = \"maybe\"\nreason = \"x\"", "impl.toml:5:")]
#[case::fail_without_its_failures(
    "[deviations.\"a/b\"]\nstatus = \"fail\"\nreason = \"x\"",
    "impl.toml:4:1: a deviation with status \"fail\" must name the failures it expects"
)]
#[case::unknown_check(
    "[deviations.\"a/b\"]\nstatus = \"fail\"\nreason = \"x\"\nfails = [{ check = \"exitcode\" }]",
    "impl.toml:7:"
)]
fn a_bad_implementation_file_is_one_error_with_its_place(#[case] extra: &str, #[case] place: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("impl.toml");
    std::fs::write(
        &file,
        format!("name = \"x\"\nwriter = \"true\"\nreader = \"true\"\n{extra}\n"),
    )
    .unwrap();
    shmconf()
        .args(["run", "--impl-file"])
        .arg(&file)
        .arg(scenarios())
        .timeout(Duration::from_secs(30))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(place))
        .stdout(predicate::str::is_empty());
}

#[test]
fn an_implementation_files_missing_writer_is_one_line_before_any_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("impl.toml");
    std::fs::write(
        &file,
        "name = \"x\"\nwriter = \"./no-such-writer\"\nreader = \"true\"\n",
    )
    .unwrap();
    let out = shmconf()
        .args(["run", "--impl-file"])
        .arg(&file)
        .arg(scenarios())
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no-such-writer"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn the_implementation_file_schema_is_current() {
    let schema =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/impl-file.schema.json"))
            .unwrap();
    assert_eq!(
        schema.trim(),
        shmconf_harness::impls::ImplFile::json_schema().trim(),
        "regenerate: shmconf schema --impl-file > docs/impl-file.schema.json"
    );
}

/// A failure reads as a timeline (who did what, bytes cut with their
/// length); `--verbose` gives every event in full instead. The progress bar
/// stays off a pipe.
#[test]
fn failures_show_a_timeline_and_verbose_shows_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let bad = faulty(dir.path(), Some("CONTENT"));
    let file = scenarios().join("visibility/writer-then-reader.toml");
    let plain = run_impl_on(&bad, &file, &[]).code(1).get_output().clone();
    let out = String::from_utf8_lossy(&plain.stdout);
    assert!(out.contains("timeline (workdir"), "{out}");
    assert!(out.contains("stdin <- \"hello world\\n\", then closed"), "{out}");
    assert!(out.contains("kernel       ns main: 1 segment"), "{out}");
    assert!(!out.contains("{\"event\""), "{out}");
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(
        !err.contains('\r') && !err.contains('\x1b'),
        "no progress bar into a pipe: {err:?}"
    );

    let verbose = run_impl_on(&bad, &file, &["--verbose"]).code(1).get_output().clone();
    let out = String::from_utf8_lossy(&verbose.stdout);
    assert!(out.contains("event log (workdir"), "{out}");
    assert!(out.contains("{\"event\":\"spawn\""), "{out}");
}

/// Programs under a folder other uids cannot enter (a 0700 checkout, a
/// home) are copied for the processes that run as another uid, and run
/// where they are for every other: a program that needs what is around it
/// (a venv's interpreter finds its packages from ../pyvenv.cfg) must not
/// fail because of where it was launched from.
#[test]
fn a_program_in_a_private_folder_runs_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    std::fs::create_dir_all(venv.join("bin")).unwrap();
    std::fs::write(venv.join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
    for (role, target) in [
        ("writer", assert_cmd::cargo::cargo_bin("shm-writer")),
        ("reader", assert_cmd::cargo::cargo_bin("shm-reader")),
    ] {
        let script = venv.join("bin").join(role);
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n[ -f \"$(dirname \"$0\")/../pyvenv.cfg\" ] || {{ echo \"not in my venv: $0\" >&2; exit 99; }}\nexec {} \"$@\"\n",
                target.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    shmconf()
        .args(["run", "--tag", "seed-contract", "--writer"])
        .arg(venv.join("bin/writer"))
        .arg("--reader")
        .arg(venv.join("bin/reader"))
        .arg(scenarios())
        .timeout(Duration::from_secs(120))
        .assert()
        .success()
        .stdout(predicate::str::contains(all_seed_contract_pass()));
}

/// A temp dir other uids cannot reach (TMPDIR in a 0700 folder, as in a
/// home or a private clone) with programs in a private folder: the copies
/// for the processes that run as another uid go to a reachable temp folder,
/// said once, and are gone after the run. Every scenario that runs a
/// program as another uid passes (they were BROKEN, "Permission denied").
#[test]
fn a_temp_dir_other_uids_cannot_reach_still_runs_their_programs() {
    let dir = tempfile::tempdir().unwrap();
    let (tmp, bin) = (dir.path().join("tmp"), dir.path().join("bin"));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["shm-writer", "shm-reader"] {
        std::fs::copy(assert_cmd::cargo::cargo_bin(name), bin.join(name)).unwrap();
    }
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let other_uid = [
        "errors/other-uid-eacces.toml",
        "errors/other-uid-rmid-eperm.toml",
        "errors/creator-has-no-exemption.toml",
        "orders/reader-creates-the-seeds-segment.toml",
    ];
    let out = shmconf()
        .env("TMPDIR", &tmp)
        .args(["run", "--writer"])
        .arg(bin.join("shm-writer"))
        .arg("--reader")
        .arg(bin.join("shm-reader"))
        .args(other_uid.map(|f| scenarios().join(f)))
        .timeout(Duration::from_secs(120))
        .assert()
        .success()
        .stdout(predicate::str::contains("4 scenarios: 4 PASS"))
        .stderr(predicate::str::contains(format!(
            "(TMPDIR; {} is not searchable by others)",
            dir.path().display()
        )))
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let copies = stderr
        .split("copied to ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("the note names where the copies went");
    assert!(!Path::new(copies).exists(), "the copies outlive the run: {copies}");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the run left files in TMPDIR"
    );
}

/// An implementation file's `dir` and `env`: relative paths in its commands
/// come from `dir`, and both roles see its variables.
#[test]
fn an_implementation_file_sets_the_folder_of_its_paths_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let bin = |name: &str| assert_cmd::cargo::cargo_bin(name);
    let progs = dir.path().join("progs");
    std::fs::create_dir(&progs).unwrap();
    // Wrappers that refuse to run without the file's variable.
    for (role, target) in [("writer", bin("shm-writer")), ("reader", bin("shm-reader"))] {
        let script = progs.join(format!("{role}.sh"));
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n[ \"$SHMCONF_TEST_VAR\" = 'set by file' ] || {{ echo \"no variable\" >&2; exit 99; }}\nexec {} \"$@\"\n",
                target.display()
            ),
        )
        .unwrap();
    }
    let file = dir.path().join("impl.toml");
    std::fs::write(
        &file,
        "name = \"wrapped\"\ndir = \"progs\"\nwriter = \"sh ./writer.sh\"\nreader = \"sh ./reader.sh\"\n\
         options = [\"keep\", \"size\", \"key-file\", \"proj-id\", \"key\", \"mode\", \"exclusive\"]\n\
         [env]\nSHMCONF_TEST_VAR = \"set by file\"\n",
    )
    .unwrap();
    shmconf()
        .args(["run", "--tag", "seed-contract", "--impl-file"])
        .arg(&file)
        .arg(scenarios())
        .assert()
        .success()
        .stdout(predicate::str::contains(all_seed_contract_pass()));
    // Without the variable the wrappers refuse before any shared-memory
    // call: the preflight says so, in the wrapper's words, and nothing runs.
    let without = std::fs::read_to_string(&file)
        .unwrap()
        .replace("[env]\nSHMCONF_TEST_VAR = \"set by file\"\n", "");
    std::fs::write(&file, without).unwrap();
    shmconf()
        .args(["run", "--impl-file"])
        .arg(&file)
        .arg(scenarios().join("visibility/writer-then-reader.toml"))
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("does not start (exit code 99"))
        .stderr(predicate::str::contains("it said \"no variable\""));
}

/// A budget is a count of orders, the same on any machine: an exploration
/// that stops at `--max-orders` with every explored order agreeing says how
/// much it explored and passes (`--strict-budget` makes it a TIMEOUT). The
/// clock is only a safety net: when it runs out (a slow writer, ours behind
/// a wrapper that lingers 150 ms, with a 2.5 s limit) the result is a
/// TIMEOUT that says so, never a PASS, whatever the flags.
#[test]
fn an_exploration_is_bounded_by_orders_and_the_clock_is_only_a_safety_net() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let text = std::fs::read_to_string(scenarios().join("orders/explore-3x2.toml")).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("timeout_ms"))
        .collect::<Vec<_>>()
        .join("\n");
    let scenario = dir.path().join("explore-3x2-copy.toml");
    std::fs::write(&scenario, &text).unwrap();
    let short = dir.path().join("explore-3x2-short.toml");
    std::fs::write(&short, text.replacen("[explore]", "timeout_ms = 2500\n\n[explore]", 1)).unwrap();
    let slow = dir.path().join("slow-writer");
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\n{} \"$@\"\ncode=$?\nsleep 0.15\nexit $code\n",
            assert_cmd::cargo::cargo_bin("shm-writer").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let reader = assert_cmd::cargo::cargo_bin("shm-reader").display().to_string();
    let writer = assert_cmd::cargo::cargo_bin("shm-writer").display().to_string();
    let run = |writer: &str, extra: &[&str], file: &std::path::Path| {
        shmconf()
            .args(["run", "--jobs", "2", "--writer", writer])
            .args(["--reader", &reader])
            .args(extra)
            .arg(file)
            .assert()
    };
    let out = run(&writer, &["--max-orders", "7"], &scenario)
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("PASS    explore-3x2-copy"), "{text}");
    assert!(
        text.contains("the first 7 of 120 orders agree with the model, stopping at the budget of 7 orders"),
        "{text}"
    );
    let out = run(&writer, &["--max-orders", "7", "--strict-budget"], &scenario)
        .code(1)
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8_lossy(&out).contains("TIMEOUT explore-3x2-copy"));
    for strict in [&[][..], &["--strict-budget"][..]] {
        let out = run(&slow.display().to_string(), strict, &short)
            .code(1)
            .get_output()
            .stdout
            .clone();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("TIMEOUT explore-3x2-short"), "{text}");
        assert!(
            text.contains("of 120 orders, all agreeing with the model, when the exploration's safety-net clock of 2500 ms ran out: not judged"),
            "{text}"
        );
    }
}

/// After every step of a system-call exploration the kernel's segment table
/// is held against the SysV semantics of the calls made so far, with their
/// results, and every run's end against what the contract allows (its
/// line, or an error exit that says why). A faithful C pair agrees in every
/// order; each fault is caught in the order that shows it, and named: a
/// writer that detaches with munmap (the table changes with no SysV call),
/// one that exits 0 in silence when a concurrent IPC_RMID made its shmat
/// fail, one that exits 1 there without a word, a reader that prints what
/// its segment never held.
#[rstest]
#[case::faithful(None, "")]
#[case::untraced_detach(
    Some("UNMAP"),
    "the kernel's segment table after w's write(1, 30 bytes) is not what the SysV model"
)]
#[case::untraced_detach_names_the_difference(Some("UNMAP"), "segment 0: nattch 0, the model says 1")]
#[case::silent_success(
    Some("SILENT_SHMAT"),
    "w exited 0 printing \"\", not a writer's \"Write Data: Data written in memory: <line>\\n\""
)]
#[case::quiet_failure(
    Some("QUIET_SHMAT"),
    "w exited with code 1 and nothing on stderr: an error exit must say why"
)]
#[case::content_not_in_memory(
    Some("READ_SKIP"),
    "r exited 0 printing \"ello\" as what is in memory, but while it was attached its segment held \"hello\" (content visibility)"
)]
fn syscall_exploration_judges_every_step_and_every_ending(#[case] fault: Option<&str>, #[case] needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let bin = faulty(dir.path(), fault);
    let file = scenarios().join("orders/syscall-rmid-before-attach.toml");
    let assert = run_impl_on(&bin, &file, &[]);
    let out = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    match fault {
        None => {
            assert!(out.contains("PASS    orders/syscall-rmid-before-attach"), "{out}");
            assert!(out.contains("every one keeps the properties"), "{out}");
        }
        Some(_) => {
            assert!(out.contains("FAIL    orders/syscall-rmid-before-attach"), "{out}");
            assert!(out.contains(needle), "{out}");
        }
    }
}

/// System-call exploration finds both races of the original programs in
/// the C reference (which behaves as they do) by itself, reports each
/// distinct problem with its shortest order, and the replay command it
/// prints runs exactly that order again, with the same crash. Ours passes.
#[test]
fn syscall_exploration_finds_the_originals_races_and_replays_them() {
    let file = scenarios().join("orders/syscall-input-in-pieces.toml");
    // The C reference with no expectations: its failures are plain FAILs.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let c_reference = |extra: &[&str]| -> String {
        let out = shmconf()
            .args(["run", "--impl", "c-reference", "--expectations"])
            .arg(empty.path())
            .arg(&file)
            .args(extra)
            .assert()
            .code(1)
            .get_output()
            .stdout
            .clone();
        String::from_utf8_lossy(&out).into_owned()
    };
    let text = c_reference(&[]);
    assert!(text.contains("FAIL    orders/syscall-input-in-pieces"), "{text}");
    assert!(text.contains("(2 distinct problem(s))"), "{text}");
    assert!(text.contains("w was killed by SIGSEGV"), "{text}");
    assert!(
        text.contains("r printed part of w's line: \"hel\" of \"hello\" (property whole-lines)"),
        "{text}"
    );
    // The replay of the shortest order: one order, the same crash.
    let order = text
        .split("--order '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a replay command");
    let replayed = c_reference(&["--order", order]);
    assert!(replayed.contains("1 of 1 orders explored"), "{replayed}");
    assert!(replayed.contains("w was killed by SIGSEGV"), "{replayed}");
    assert!(
        replayed.contains("killed by SIGSEGV; stdout \"\""),
        "the timeline shows it: {replayed}"
    );
    // Our writer reads its whole line before touching the segment and
    // checks shmat: no order breaks a property.
    shmconf()
        .args(["run", "--impl", "rust"])
        .arg(&file)
        .assert()
        .success()
        .stdout(predicate::str::contains("every one keeps the properties"));
}

/// The bounds on programs under test, and the run's counts and limits, are
/// checked before anything runs: refused, never quietly clamped.
#[rstest]
#[case::unknown_unit(&["--max-memory", "1X"], "unknown unit \"X\"")]
#[case::not_a_number(&["--max-memory", "lots"], "is not a size")]
#[case::zero_memory(&["--max-memory", "0"], "is not a size between 1 byte")]
#[case::zero_processes(&["--max-processes", "0"], "0 is not in 1..")]
#[case::zero_jobs(&["--jobs", "0"], "'--jobs <JOBS>': must be at least 1")]
#[case::zero_orders(&["--max-orders", "0"], "must be at least 1")]
#[case::zero_step(&["--step-timeout", "0s"], "out of range: between 1ms and 10m")]
#[case::huge_scenario(&["--scenario-timeout", "2h"], "out of range: between 1ms and 1h")]
#[case::not_a_duration(&["--exploration-timeout", "soon"], "is not a duration (e.g. 5s")]
fn bad_bounds_are_usage_errors(#[case] args: &[&str], #[case] message: &str) {
    shmconf()
        .arg("run")
        .args(args)
        .arg(scenarios())
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(message));
}

/// Whether this test may make namespaces of its own with unshare(1) (root,
/// unshare installed); if not, says that `what` is skipped.
fn root_with_unshare(what: &str) -> bool {
    let can = nix::unistd::Uid::effective().is_root() && StdCommand::new("unshare").arg("--version").output().is_ok();
    if !can {
        eprintln!("skipped: {what} needs root and unshare(1)");
    }
    can
}

/// A read-only TMPDIR (a read-only mount, where even root makes nothing) is
/// one line naming it and exit 2 before any scenario runs: no BROKEN per
/// scenario. The mount is made in a mount namespace of the test's own.
#[test]
fn a_read_only_tmpdir_is_one_error_naming_it() {
    if !root_with_unshare("a read-only mount") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let script = format!(
        "mount -t tmpfs -o ro shmconf-ro {ro} && TMPDIR={ro} exec {bin} run {scenario}",
        ro = ro.display(),
        bin = assert_cmd::cargo::cargo_bin("shmconf").display(),
        scenario = scenarios().join("visibility/writer-then-reader.toml").display()
    );
    let out = assert_cmd::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot make the run's dir in the temp dir {} (TMPDIR): Read-only file system",
            ro.display()
        )),
        "{stderr}"
    );
    assert!(!stdout.contains("PASS") && !stdout.contains("BROKEN"), "{stdout}");
}

/// `shmconf run` of `scenario` started by `sh` with `ignored` signals set to
/// SIG_IGN first (`trap '' ...`, as `nohup` or a shell's `&` leave them):
/// the running child, to signal.
fn run_ignoring(ignored: &str, scenario: &Path, tmp: &Path) -> std::process::Child {
    StdCommand::new("sh")
        .arg("-c")
        .arg(format!("trap '' {ignored}; exec \"$0\" run \"$1\""))
        .arg(assert_cmd::cargo::cargo_bin("shmconf"))
        .arg(scenario)
        .env("TMPDIR", tmp)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Started ignoring SIGHUP (`nohup`), shmconf keeps ignoring it: a hangup
/// does not end the run, which finishes and passes.
#[test]
fn a_run_started_ignoring_sighup_keeps_ignoring_it() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("sleeps.toml");
    std::fs::write(
        &scenario,
        "description = \"x\"\n[[step]]\nexec = [\"sh\", \"-c\", \"sleep 1.25\"]\ntimeout_ms = 30000\n",
    )
    .unwrap();
    let child = run_ignoring("HUP", &scenario, tmp.path());
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let deadline = Instant::now() + Duration::from_secs(20);
    while processes_matching("sleep 1.25").is_empty() {
        assert!(Instant::now() < deadline, "the scenario never started its program");
        std::thread::sleep(Duration::from_millis(10));
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("PASS"), "{stdout}");
}

/// What shmconf was started ignoring is not what its programs ignore: a
/// program a scenario kills with SIGINT or SIGHUP dies of it.
#[rstest]
#[case::sigint("SIGINT")]
#[case::sighup("SIGHUP")]
fn programs_get_default_signal_dispositions_whatever_shmconf_ignores(#[case] signal: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("killed.toml");
    std::fs::write(
        &scenario,
        format!(
            "description = \"x\"\n\
             [[step]]\nexec = [\"sh\", \"-c\", \"echo ready; exec sleep 30\"]\nbackground = true\nname = \"s\"\n\
             [[step]]\nwait = \"s\"\nuntil_stdout = \"ready\"\n\
             [[step]]\nkill = \"s\"\nsignal = \"{signal}\"\nexpect = {{ signal = \"{signal}\" }}\n"
        ),
    )
    .unwrap();
    let out = run_ignoring("INT HUP QUIT", &scenario, tmp.path())
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("PASS"), "{stdout}");
}

/// An installed shmconf is one file: copied alone into a folder (no
/// shm-writer, no build tree beside it) and run from an empty folder (no
/// ./scenarios), it runs the catalogue it carries with our own pair, which it
/// runs itself when started as `shm-writer`/`shm-reader`, and names a
/// failing scenario by id in the replay command (its files go with the run).
#[test]
fn an_installed_binary_alone_runs_its_catalogue_and_our_pair() {
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    let empty = root.path().join("empty");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&empty).unwrap();
    let installed = bin.join("shmconf");
    // Copied by another process: a file this process held open for writing
    // could be inherited by a child another test thread forks meanwhile, and
    // exec'ing the copy would then fail with ETXTBSY.
    assert!(StdCommand::new("cp")
        .arg(env!("CARGO_BIN_EXE_shmconf"))
        .arg(&installed)
        .status()
        .unwrap()
        .success());
    let alone = |args: &[&str]| {
        let mut cmd = StdCommand::new(&installed);
        cmd.args(args)
            .current_dir(&empty)
            .env("TMPDIR", root.path())
            .env_remove("SHMCONF_SCENARIOS");
        shmconf::sysv::process::end_with_parent(&mut cmd);
        let mut cmd = assert_cmd::Command::from_std(cmd);
        cmd.timeout(Duration::from_secs(300));
        cmd.assert()
    };
    // The catalogue: every scenario of the folder, by id.
    let listed = alone(&["list"]).success().get_output().stdout.clone();
    let ids: Vec<String> = String::from_utf8(listed)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    let on_disk = shmconf().arg("list").arg(scenarios()).output().unwrap().stdout;
    let on_disk: Vec<String> = String::from_utf8(on_disk)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    assert_eq!(ids, on_disk, "the carried catalogue lists as the folder does");
    // Our pair from the binary itself, judged on a scenario by id.
    alone(&["run", "orders/paused-writer", "keys/private-key-always-new"])
        .success()
        .stdout(predicate::str::contains("2 PASS"))
        .stdout(predicate::str::is_match(r"(?m)^shmconf: 2 passed, 0 failed, 0 skipped in \d+\.\d s$").unwrap());
    // Started under a program's name, it is that program.
    let writer = bin.join("shm-writer");
    std::os::unix::fs::symlink(&installed, &writer).unwrap();
    let help = StdCommand::new(&writer).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: shm-writer"));
    // Nothing left in the temp dir: the unpacked catalogue and programs went with the run.
    let left: Vec<PathBuf> = leftovers(root.path())
        .into_iter()
        .filter(|p| p != &bin && p != &empty)
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A duration flag takes what people type (5s, 250ms) as well as a bare
/// number of milliseconds, and both mean the same limit.
#[rstest]
#[case("700")]
#[case("700ms")]
#[case("0.7s")]
fn a_step_limit_is_a_duration_in_any_form(#[case] limit: &str) {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("hang.toml");
    std::fs::write(
        &scenario,
        "description = \"a step that hangs\"\n[[step]]\nexec = [\"sleep\", \"60\"]\n",
    )
    .unwrap();
    let start = Instant::now();
    shmconf()
        .args(["run", "--step-timeout", limit])
        .arg(&scenario)
        .env("TMPDIR", dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("TIMEOUT").and(predicate::str::contains("700 ms")));
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "the limit applied, not the sleep"
    );
}

/// `list --format json` is the catalogue as data; completions and the man
/// page are generated from the same command definition as --help.
#[test]
fn list_as_json_completions_and_the_man_page() {
    let out = shmconf()
        .args(["list", "--format", "json"])
        .arg(scenarios())
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let human = shmconf().arg("list").arg(scenarios()).output().unwrap().stdout;
    assert_eq!(listed.len(), String::from_utf8(human).unwrap().lines().count());
    let paused = listed
        .iter()
        .find(|s| s["id"] == "orders/paused-writer")
        .expect("a known id");
    assert!(paused["tags"].as_array().is_some_and(|t| !t.is_empty()));
    assert!(paused["path"]
        .as_str()
        .is_some_and(|p| p.ends_with("orders/paused-writer.toml")));
    for (shell, needle) in [
        ("bash", "_shmconf()"),
        ("zsh", "#compdef shmconf"),
        ("fish", "complete -c shmconf"),
    ] {
        shmconf()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains(needle).and(predicate::str::contains("step-timeout")));
    }
    let help = shmconf().args(["run", "--help"]).output().unwrap().stdout;
    let help = String::from_utf8(help).unwrap();
    for heading in [
        "Selection:",
        "Implementation:",
        "Running:",
        "Reports:",
        "Where scenarios run:",
        "Limits:",
        "Examples:",
    ] {
        assert!(help.contains(&format!("\n{heading}\n")), "{heading} in {help}");
    }
    shmconf()
        .arg("man")
        .assert()
        .success()
        .stdout(predicate::str::starts_with(".ie").or(predicate::str::contains(".TH shmconf")))
        .stdout(predicate::str::contains("completions"));
}

/// `--quiet` prints a line for each failing scenario only (then the
/// failures and the summary); `--fail-fast` starts nothing after the first
/// failure, and says so of each scenario it left; `--color` overrides the
/// terminal test either way (NO_COLOR and CLICOLOR_FORCE included).
#[test]
fn quiet_fail_fast_and_color() {
    let dir = tempfile::tempdir().unwrap();
    let bad = faulty(dir.path(), Some("CONTENT"));
    let seed = scenarios().join("visibility");
    let verdict_lines = |out: &[u8], verdict: &str| {
        String::from_utf8_lossy(out)
            .lines()
            .filter(|l| l.starts_with(&format!("{verdict:<8}")))
            .count()
    };
    let loud = run_impl_on(&bad, &seed, &["--jobs", "1"]).code(1).get_output().clone();
    let (failed, passed) = (verdict_lines(&loud.stdout, "FAIL"), verdict_lines(&loud.stdout, "PASS"));
    assert!(failed >= 2 && passed >= 1, "{}", String::from_utf8_lossy(&loud.stdout));

    let quiet = run_impl_on(&bad, &seed, &["--jobs", "1", "--quiet"])
        .code(1)
        .get_output()
        .clone();
    assert_eq!(verdict_lines(&quiet.stdout, "FAIL"), failed);
    assert_eq!(verdict_lines(&quiet.stdout, "PASS"), 0, "no line for a pass");
    assert!(String::from_utf8_lossy(&quiet.stdout).contains(&format!("{failed} failed")));
    assert!(
        !String::from_utf8_lossy(&quiet.stderr).contains("scenario(s), implementation"),
        "no header"
    );

    let fast = run_impl_on(&bad, &seed, &["--jobs", "1", "--fail-fast"])
        .code(1)
        .get_output()
        .clone();
    let out = String::from_utf8_lossy(&fast.stdout);
    assert_eq!(verdict_lines(&fast.stdout, "FAIL"), 1, "{out}");
    let left = verdict_lines(&fast.stdout, "INTERRUPTED");
    assert!(left >= 1, "{out}");
    assert_eq!(
        out.matches("not run: --fail-fast stopped the run when visibility/")
            .count(),
        left,
        "{out}"
    );

    let file = scenarios().join("visibility/writer-then-reader.toml");
    let coloured = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = shmconf();
        cmd.arg("run")
            .arg(&file)
            .args(args)
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        String::from_utf8_lossy(&cmd.output().unwrap().stdout).contains("\x1b[32mPASS")
    };
    assert!(coloured(&["--color", "always"], &[]), "always, into a pipe");
    assert!(
        coloured(&["--color", "always"], &[("NO_COLOR", "1")]),
        "the flag wins over NO_COLOR"
    );
    assert!(!coloured(&["--color", "never"], &[("CLICOLOR_FORCE", "1")]));
    assert!(!coloured(&[], &[]), "auto: not into a pipe");
}

/// `--record` draws a failure as an SVG sequence diagram beside its JSON
/// and the failure's report names it; a pass gets none, except in an
/// `--order` replay, where every scenario's order is drawn.
#[test]
fn record_draws_each_failure_and_each_replay() {
    let dir = tempfile::tempdir().unwrap();
    let bad = faulty(dir.path(), Some("CONTENT"));
    let failing = scenarios().join("visibility/writer-then-reader.toml");
    let rec = dir.path().join("rec");
    let out = run_impl_on(&bad, &failing, &["--record", rec.to_str().unwrap()])
        .code(1)
        .get_output()
        .stdout
        .clone();
    let svg = rec.join("visibility%2Fwriter-then-reader.svg");
    assert!(
        String::from_utf8_lossy(&out).contains(&format!("  diagram: {}", svg.display())),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(drawn.contains("FAIL — visibility/writer-then-reader"), "{drawn}");
    assert!(
        drawn.contains(">kernel</text>") && drawn.contains(">writer@1</text>"),
        "lanes: {drawn}"
    );

    let passing = dir.path().join("pass");
    shmconf()
        .args(["run", "--record", passing.to_str().unwrap()])
        .arg(&failing)
        .assert()
        .success()
        .stdout(predicate::str::contains("diagram:").not());
    assert!(
        !passing.join("visibility%2Fwriter-then-reader.svg").exists(),
        "no diagram of a pass"
    );

    let replay = dir.path().join("replay");
    shmconf()
        .args([
            "run",
            "--impl",
            "rust",
            "--order",
            "w,w,w,r,r,r,r,r,w,w",
            "--record",
            replay.to_str().unwrap(),
        ])
        .arg(scenarios().join("orders/syscall-rmid-before-attach.toml"))
        .assert()
        .success();
    let drawn = std::fs::read_to_string(replay.join("orders%2Fsyscall-rmid-before-attach.svg")).unwrap();
    assert!(drawn.contains("PASS — orders/syscall-rmid-before-attach"), "{drawn}");
}

/// An exploration that starts from a state: the model takes it, a run the
/// model expects to fail passes with any clear error (its own exit code,
/// a word on stderr), a silent failure does not, and a state that cannot
/// be made is BROKEN, never a verdict on the implementation.
#[rstest]
#[case::ours_exits_6("", 0, "PASS    t")]
#[case::another_exit_code_saying_why("|| exit 1", 0, "PASS    t")]
#[case::a_silent_failure(
    "2>/dev/null || exit 1",
    1,
    "r: the model expects a clear error (a nonzero exit saying why on stderr; ours exits 6), it ended with exit code 1 and nothing on stderr"
)]
fn an_exploration_from_an_initial_state_judges_the_contract_not_our_exit_codes(
    #[case] wrap: &str,
    #[case] code: i32,
    #[case] needle: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    // A segment smaller than the reader's 1024 bytes under its key: its
    // shmget fails with EINVAL, in every order, and the segment stays.
    std::fs::write(
        &file,
        "description = \"x\"\n[explore]\ninitial = [{ segment = \"ftok:shmfile:65\", size = 16, content = \"old\" }]\n\
         runs = [{ name = \"r\", role = \"reader\" }, { name = \"w\", role = \"writer\", stdin = \"new\\n\" }]\n",
    )
    .unwrap();
    let script = dir.path().join("reader.sh");
    let reader = assert_cmd::cargo::cargo_bin("shm-reader");
    std::fs::write(&script, format!("{} \"$@\" {wrap}\n", reader.display())).unwrap();
    let writer = assert_cmd::cargo::cargo_bin("shm-writer");
    let out = shmconf()
        .arg("run")
        .arg(&file)
        .args(["--writer", &writer.display().to_string()])
        .args(["--reader", &format!("sh {}", script.display())])
        .assert()
        .code(code)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains(needle), "{text}");
    if code == 0 {
        assert!(text.contains("2 orders agree with the model"), "{text}");
    }
}

#[test]
fn an_initial_state_that_cannot_be_made_is_broken_at_either_granularity() {
    let dir = tempfile::tempdir().unwrap();
    for granularity in ["process", "syscall"] {
        let file = dir.path().join(format!("{granularity}.toml"));
        // Two segments under one raw key: the second one's exclusive shmget
        // fails at run time (EEXIST).
        std::fs::write(
            &file,
            format!(
                "description = \"x\"\n[explore]\ngranularity = \"{granularity}\"\n\
                 initial = [{{ segment = \"0x5eed\" }}, {{ segment = \"0x5eed\" }}]\n\
                 runs = [{{ name = \"r\", role = \"reader\" }}]\n"
            ),
        )
        .unwrap();
        let out = shmconf()
            .arg("run")
            .arg(&file)
            .assert()
            .code(1)
            .get_output()
            .stdout
            .clone();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(&format!("BROKEN  {granularity}")), "{text}");
        assert!(
            text.contains("the initial state could not be made: initial:2.get ended with exit code 1: errno EEXIST"),
            "{text}"
        );
    }
}

/// Whether `runsc do` can run here (runsc on PATH, root); where not, the
/// test says it skipped, and in CI, which installs runsc and runs as root,
/// it fails instead.
fn gvisor_here() -> bool {
    let runsc = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join("runsc").is_file());
    if !runsc || !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var("CI").is_err(),
            "CI installs runsc and runs as root: this test must run there"
        );
        eprintln!("skipped under gVisor: needs runsc on PATH and root");
        return false;
    }
    true
}

/// Under gVisor (`runsc do`, a sandbox and a kernel of its own per
/// program), generated programs find, without being told where to look,
/// what the hand-written scenarios found there: another uid's shmget of a
/// segment whose bits refuse it succeeds, a non-owner's IPC_RMID succeeds,
/// and the kernel does not list (SHM_STAT) what it counts (SHM_INFO), and
/// more: shmget's checks on an existing key in another order. Each
/// kind is shrunk to a few operations and reported once, with its replay.
#[test]
fn generated_programs_find_gvisors_divergences_by_themselves() {
    if !gvisor_here() {
        return;
    }
    let found = tempfile::tempdir().unwrap();
    // With gVisor's known kinds (harness/runtimes/gvisor-fuzz.toml) the
    // run passes: what CI gates on is a kind nobody has seen.
    let known = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("runtimes/gvisor-fuzz.toml");
    let out = shmconf()
        .args([
            "fuzz",
            "--target",
            "gvisor",
            "--programs",
            "60",
            "--ops",
            "30",
            "--known",
        ])
        .arg(&known)
        .arg("--out")
        .arg(found.path())
        .timeout(Duration::from_secs(600))
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("the model says EACCES, the kernel answered id"),
        "another uid's shmget: {text}"
    );
    assert!(
        text.contains("(shmctl(id#0, IPC_RMID)): the model says EPERM, the kernel answered 0"),
        "a non-owner's IPC_RMID: {text}"
    );
    assert!(
        text.contains("divergence: the kernel does not list what it counts"),
        "SHM_STAT: {text}"
    );
    // And the ones found only by generated programs: shmget's checks on
    // an existing key in another order than Linux's, one seen behind a
    // kind reported earlier (the operation left out and run again).
    assert!(
        text.contains(
            "(shmget(0x5f000002, 0, 00|IPC_CREAT|IPC_EXCL)): the model says EEXIST, the kernel answered EINVAL"
        ),
        "IPC_EXCL before the size: {text}"
    );
    assert!(
        text.contains("(shmget(0x5f000003, 0, 0644|IPC_CREAT)): the model says id 1, the kernel answered EINVAL"),
        "size 0 of an existing segment: {text}"
    );
    assert!(text.contains("left out: "), "past a known kind: {text}");
    assert!(
        text.contains("  known (errors/other-uid-eacces: ") && text.contains(", 0 new\n"),
        "each kind known, none new: {text}"
    );
    let kinds: usize = text
        .split(" kinds of divergence")
        .next()
        .and_then(|t| t.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a count of kinds: {text}"));
    assert!(kinds >= 6, "{text}");
    assert!(text.contains("--target gvisor"), "replays name the target: {text}");
    for shrunk in text.lines().filter(|l| l.contains("shrunk to ")) {
        let n: usize = shrunk
            .split("shrunk to ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap();
        assert!(n <= 4, "shrunk to a few operations: {shrunk}");
    }
    // Each kind is written as a scenario that passes on this kernel and
    // fails under gVisor, judged by `shmconf run` with the same model.
    let mut written: Vec<PathBuf> = std::fs::read_dir(found.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    written.sort();
    assert_eq!(written.len(), kinds + 1, "each kind and the listing: {written:?}");
    for scenario in &written {
        shmconf()
            .arg("run")
            .arg(scenario)
            .timeout(Duration::from_secs(120))
            .assert()
            .success()
            .stdout(predicate::str::contains("1 PASS"));
        assert_cmd::Command::new("runsc")
            .args(["--network=none", "do"])
            .arg(assert_cmd::cargo::cargo_bin("shmconf"))
            .arg("run")
            .arg(scenario)
            .timeout(Duration::from_secs(300))
            .assert()
            .code(1)
            .stdout(predicate::str::contains("1 FAIL").and(
                predicate::str::contains("the model says").or(predicate::str::contains("does not list what it counts")),
            ));
    }
}

/// The divergences fuzzing found under gVisor, widened by hand into the
/// catalogue (the scenarios tagged `fuzz`): each passes on this kernel and
/// fails under `runsc do`, naming its operation and both answers (shmget's
/// checks on an existing key in another order: size 0, IPC_EXCL, size
/// before permission; the creator in the owner's class).
#[test]
fn the_divergences_fuzzing_found_pass_here_and_fail_under_gvisor() {
    let catalogue = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let run = || {
        let mut args: Vec<std::ffi::OsString> = vec!["run".into(), "--tag".into(), "fuzz".into()];
        args.push(catalogue.clone().into());
        args
    };
    shmconf()
        .args(run())
        .timeout(Duration::from_secs(120))
        .assert()
        .success()
        .stdout(predicate::str::contains("4 PASS"));
    if !gvisor_here() {
        return;
    }
    let out = assert_cmd::Command::new("runsc")
        .args(["--network=none", "do"])
        .arg(assert_cmd::cargo::cargo_bin("shmconf"))
        .args(run())
        .timeout(Duration::from_secs(300))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("4 FAIL"))
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8_lossy(&out);
    // (scenario, its failing operation, the model's answer, the kernel's):
    // the model's id is whatever the sandbox gave, so only its kind.
    for (scenario, operation, says, answered) in [
        (
            "errors/creator-keeps-the-owners-class",
            "operation 4 (shmat(id#0))",
            "attached",
            "EACCES",
        ),
        (
            "errors/shmget-checks-size-before-permission",
            "operation 3 (shmget(0x5f000001, 4097, 0644))",
            "EINVAL",
            "EACCES",
        ),
        (
            "errors/shmget-exclusive-comes-before-size-and-permission",
            "operation 2 (shmget(0x5f000002, 0, 0600|IPC_CREAT|IPC_EXCL))",
            "EEXIST",
            "EINVAL",
        ),
        (
            "keys/shmget-finds-an-existing-segment-with-size-0",
            "operation 2 (shmget(0x5f000003, 0, 0644|IPC_CREAT))",
            "id ",
            "EINVAL",
        ),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("--- FAIL {scenario}: ")))
            .unwrap_or_else(|| panic!("{scenario} fails: {text}"));
        assert!(
            line.contains(&format!("{operation}: the model says {says}"))
                && line.ends_with(&format!("the kernel answered {answered}")),
            "{line}"
        );
    }
}

/// `kernel-view mappings` counts what the processes of its IPC namespace
/// really map (the `until_attached` barrier compares it with nattch, so a
/// shmat still under way is not taken for an attach done): a writer
/// attached and waiting for its input is one mapping of its segment and
/// none of another id, and none once it has ended. In an IPC namespace of
/// the test's own.
#[test]
fn kernel_view_counts_the_mappings_a_namespace_holds() {
    use std::io::{BufRead, BufReader};
    if !root_with_unshare("an IPC namespace of the test's own") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shmfile"), "").unwrap();
    // The writer keeps the script's input; the script itself lets go of it,
    // so closing it is the writer's end of input.
    let script = r#"exec 3<&0; "$1" <&3 >/dev/null 2>&1 & w=$!; exec 3<&- 0</dev/null
i=0
until [ "$("$0" kernel-view mappings 0)" = 1 ] || [ $i -ge 1000 ]; do i=$((i+1)); sleep 0.01; done
echo "attached: $("$0" kernel-view mappings 0), another id: $("$0" kernel-view mappings 1)"
"$0" kernel-view table; echo
echo ready
wait $w
echo "ended: $("$0" kernel-view mappings 0)"
"$0" kernel-view table; echo"#;
    let mut child = StdCommand::new("timeout")
        .args(["60", "unshare", "--ipc", "sh", "-c", script])
        .arg(assert_cmd::cargo::cargo_bin("shmconf"))
        .arg(assert_cmd::cargo::cargo_bin("shm-writer"))
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    let before: Vec<String> = lines.by_ref().take_while(|l| l != "ready").collect();
    let mut input = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, b"kept\n").unwrap();
    drop(input);
    let after: Vec<String> = lines.collect();
    assert!(child.wait().unwrap().success(), "{before:?} {after:?}");
    assert_eq!(before[0], "attached: 1, another id: 0", "{before:?}");
    assert!(
        before[1].contains(r#""shmid":0"#) && before[1].contains(r#""nattch":1"#),
        "{before:?}"
    );
    assert_eq!(after[0], "ended: 0", "{after:?}");
    assert!(
        after[1].contains(r#""shmid":0"#) && after[1].contains(r#""nattch":0"#),
        "{after:?}"
    );
}
