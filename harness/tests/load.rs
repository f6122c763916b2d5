//! A verdict must not follow the machine's load: a step's limit counts the
//! time its program could run, not the time it waited for a CPU (its
//! run-queue wait, /proc/PID/schedstat), up to four limits of wall time.
//!
//! Here shmconf, its program and eight busy loops share one CPU (taskset):
//! a program that needs about 0.1 s of CPU takes a second or more of wall
//! time, past its 600 ms limit, and still passes; a program that hangs
//! (blocked, not waiting for a CPU) is still a TIMEOUT under the same load.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Busy loops pinned to CPU 0, killed when dropped.
struct BusyLoops(Vec<Child>);

impl BusyLoops {
    fn on_cpu0(n: usize) -> BusyLoops {
        BusyLoops(
            (0..n)
                .map(|_| {
                    Command::new("taskset")
                        .args(["-c", "0", "sh", "-c", "while :; do :; done"])
                        .stdout(Stdio::null())
                        .spawn()
                        .expect("taskset")
                })
                .collect(),
        )
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `shmconf run` of a one-step scenario running `script` under `sh -c`,
/// with a 600 ms limit, all of it on CPU 0: its stdout and exit code.
fn run_on_cpu0(script: &str) -> (String, Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("on-a-busy-cpu.toml");
    std::fs::write(
        &scenario,
        format!(
            "description = \"a program on a CPU shared with busy loops\"\n[[step]]\nexec = [\"sh\", \"-c\", \
             {script:?}]\ntimeout_ms = 600\n"
        ),
    )
    .unwrap();
    let out = assert_cmd::Command::new("taskset")
        .args(["-c", "0"])
        .arg(assert_cmd::cargo::cargo_bin("shmconf"))
        .args(["run", "--jobs", "1"])
        .arg(&scenario)
        .env("TMPDIR", dir.path())
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
}

fn have_taskset() -> bool {
    let ok = Command::new("taskset")
        .args(["-c", "0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: taskset(1) cannot pin to CPU 0 here");
    }
    ok
}

/// One test, so that the two runs never share CPU 0 with each other's
/// busy loops: stacked, 16 loops and two harnesses gave the program less
/// CPU than four limits of wall time hold, the most a limit moves (a
/// TIMEOUT that says the machine is too busy, as it should).
#[test]
fn a_busy_cpu_moves_a_limit_and_a_hang_is_still_a_timeout() {
    if !have_taskset() {
        return;
    }
    let _busy = BusyLoops::on_cpu0(8);
    // About 0.1 s of CPU (dash), a second or more of wall time here.
    let (out, code) = run_on_cpu0("i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done");
    assert_eq!(code, Some(0), "a program that waits for a CPU is not a timeout: {out}");
    assert!(out.contains("PASS"), "{out}");
    // Blocked, not waiting for a CPU: the limit does not move.
    let (out, code) = run_on_cpu0("sleep 1000");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("TIMEOUT after 600 ms"), "{out}");
    assert!(!out.contains("too busy to judge"), "a hang is the program's: {out}");
}
