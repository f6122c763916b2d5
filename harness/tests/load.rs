//! A verdict must not follow the machine's load: a step's limit counts the
//! time its program could run, not the time it waited for a CPU (its
//! run-queue wait, /proc/PID/schedstat), up to four limits of wall time.
//!
//! Here shmconf, its program and eight busy loops share one CPU (taskset):
//! a program that needs 130 ms of CPU (measured here first) takes about
//! twice its 600 ms limit in wall time and still passes; a program that hangs
//! (blocked, not waiting for a CPU) is still a TIMEOUT under the same load;
//! one that needs more than the most a limit moves is BROKEN, the machine's.

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

/// CPU time (user + system, in ms) of this process's waited-for children
/// so far (/proc/self/stat cutime + cstime, in USER_HZ = 100 ticks/s).
fn children_cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // Field 16 (cutime) and 17 (cstime) of proc(5); fields[0] is field 3.
    (fields[13].parse::<u64>().unwrap() + fields[14].parse::<u64>().unwrap()) * 10
}

/// The busy loop that needs about `cpu_ms` of CPU on this machine: counted
/// by iterations measured here (alone on CPU 0), so that a slow machine's
/// run stays as far from both edges as a fast one's.
fn loop_needing(cpu_ms: u64) -> String {
    const PROBE: u64 = 100_000;
    let script = |n: u64| format!("i=0; while [ $i -lt {n} ]; do i=$((i+1)); done");
    let probe_ms = (0..3)
        .map(|_| {
            let before = children_cpu_ms();
            let ok = Command::new("taskset")
                .args(["-c", "0", "sh", "-c", &script(PROBE)])
                .status()
                .unwrap()
                .success();
            assert!(ok);
            children_cpu_ms() - before
        })
        .min()
        .unwrap()
        .max(10);
    script(PROBE * cpu_ms / probe_ms)
}

/// Milliseconds the scenario took, from shmconf's verdict line
/// ("PASS on-a-busy-cpu (1234 ms)").
fn took_ms(out: &str) -> u64 {
    let line = out.lines().find(|l| l.contains(" on-a-busy-cpu (")).expect(out);
    let ms = line.rsplit('(').next().unwrap().trim_end_matches(" ms)");
    ms.parse().unwrap_or_else(|_| panic!("{line}"))
}

/// One test, so that the runs never share CPU 0 with each other's busy
/// loops. With eight loops the program gets about a ninth of the CPU, so a
/// program that needs 130 ms of CPU takes about twice its 600 ms limit in
/// wall time: half way (geometrically) between the limit and the most a
/// busy machine moves it (four limits).
#[test]
fn a_busy_cpu_moves_a_limit_and_a_hang_is_still_a_timeout() {
    if !have_taskset() {
        return;
    }
    let needs_130ms = loop_needing(130);
    let needs_2s = loop_needing(2000);
    let _busy = BusyLoops::on_cpu0(8);
    let (out, code) = run_on_cpu0(&needs_130ms);
    assert_eq!(code, Some(0), "a program that waits for a CPU is not a timeout: {out}");
    assert!(out.contains("PASS"), "{out}");
    assert!(
        took_ms(&out) > 600,
        "the limit was never moved, so nothing was shown: {out}"
    );
    // Blocked, not waiting for a CPU: the limit does not move.
    let (out, code) = run_on_cpu0("sleep 1000");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("TIMEOUT after 600 ms"), "{out}");
    assert!(!out.contains("too busy to judge"), "a hang is the program's: {out}");
    // Work the machine cannot give it within four limits: the clock, as the
    // safety net, ends it, and the verdict blames the machine (BROKEN), not
    // the program (TIMEOUT).
    let (out, code) = run_on_cpu0(&needs_2s);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("BROKEN on-a-busy-cpu"), "{out}");
    assert!(out.contains("the machine is too busy to judge it"), "{out}");
    assert!(!out.contains("TIMEOUT on-a-busy-cpu"), "{out}");
}
