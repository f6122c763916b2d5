//! Programs of several threads are judged at system-call level like
//! single-threaded ones, as long as their calls are one at a time: a
//! program's points are its own whichever thread makes them (the Go runtime
//! moves a goroutine between threads; a C program may do its work in a
//! thread that `main` joins). tests/threads/threaded.c makes the same calls
//! as the bare program from one worker thread, or from a new thread for each
//! call: both system-call scenarios explore exactly the bare program's
//! orders, the same verdict, the same half line caught when it streams its
//! input into the segment. So do a `main` that ends (pthread_exit) before
//! its worker, a thread that execs (taking main's id), and a launcher that
//! waits for the program on a thread of its own while main joins (Go's
//! os/exec). A program whose threads do make calls at once cannot be
//! explored one call at a time: a SKIP that says so, every time. A Python pair
//! (the zoo's, ctypes) run from a worker thread or beside a waiting helper
//! thread (tests/threads/threaded.py) is explored as the plain one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rstest::rstest;

mod common;
use common::{scenarios, shmconf};

const SCENARIOS: [&str; 2] = ["orders/syscall-rmid-before-attach", "orders/syscall-input-in-pieces"];

/// tests/threads/threaded.c, compiled once per test binary.
fn threaded() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/threads/threaded.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("threaded-{}", std::process::id()));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let status = Command::new(&cc)
            .args(["-O2", "-Wall", "-Werror", "-pthread", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("{cc}: {e}"));
        assert!(status.success(), "{cc} failed on {}", src.display());
        out
    })
}

/// Both system-call scenarios on the threaded pair, the writer made as
/// `writer` says (MODE [streams]) and the reader as `reader`: shmconf's
/// stdout and exit code.
fn explore(writer: &str, reader: &str) -> (String, Option<i32>) {
    let program = threaded().display().to_string();
    let out = shmconf()
        .args(["run", "--jobs", "1"])
        .args(["--writer", &format!("{program} writer {writer}")])
        .args(["--reader", &format!("{program} reader {reader}")])
        .args(SCENARIOS.map(|id| scenarios().join(format!("{id}.toml"))))
        .timeout(std::time::Duration::from_secs(600))
        .output()
        .unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
}

/// "N orders explored" of each scenario's verdict line, in order.
fn order_counts(out: &str) -> Vec<String> {
    SCENARIOS
        .iter()
        .map(|id| {
            let line = out
                .lines()
                .find(|l| l.contains(id) && l.contains("orders explored"))
                .unwrap_or_else(|| panic!("no verdict line for {id} in {out}"));
            let (_, rest) = line.split_once(" - ").unwrap_or(("", line));
            rest.split(" orders explored").next().unwrap_or_default().to_string()
        })
        .collect()
}

fn bare(streams: bool) -> &'static (String, Option<i32>) {
    static CORRECT: OnceLock<(String, Option<i32>)> = OnceLock::new();
    static STREAMING: OnceLock<(String, Option<i32>)> = OnceLock::new();
    if streams {
        STREAMING.get_or_init(|| explore("bare streams", "bare"))
    } else {
        CORRECT.get_or_init(|| explore("bare", "bare"))
    }
}

#[rstest]
#[case::one_worker_thread("worker")]
#[case::a_new_thread_for_each_call("relay")]
#[case::main_ends_before_its_worker("main-exits")]
#[case::a_thread_that_execs("exec-thread")]
#[case::a_launcher_that_waits_on_a_thread("launcher")]
fn a_program_whose_calls_move_between_threads_passes_as_the_bare_one(#[case] mode: &str) {
    let (control, control_code) = bare(false);
    assert_eq!(*control_code, Some(0), "the bare control: {control}");
    let (out, code) = explore(mode, mode);
    assert_eq!(code, Some(0), "{out}");
    for id in SCENARIOS {
        assert!(out.contains(&format!("PASS    {id}")), "{mode}: {out}");
    }
    assert!(!out.contains("not all"), "{out}");
    assert_eq!(
        order_counts(&out),
        order_counts(control),
        "{mode}: {out}\nbare: {control}"
    );
}

#[rstest]
#[case::one_worker_thread("worker")]
#[case::a_new_thread_for_each_call("relay")]
fn a_half_line_is_caught_whatever_thread_stores_it(#[case] mode: &str) {
    let (control, _) = bare(true);
    let (out, code) = explore(&format!("{mode} streams"), mode);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL    orders/syscall-input-in-pieces"), "{out}");
    assert!(
        out.contains("r printed part of w's line: \"hel\" of \"hello\" (property whole-lines)"),
        "{out}"
    );
    assert_eq!(
        order_counts(&out),
        order_counts(control),
        "{mode}: {out}\nbare: {control}"
    );
}

/// The chatter thread prints between two of main's calls, each of them
/// waiting for the other: their calls overlap. Every run says so (SKIP,
/// naming the threads); none is a verdict.
#[test]
fn threads_that_make_calls_at_once_are_a_skip_that_says_so() {
    for _ in 0..3 {
        let (out, code) = explore("concurrent", "bare");
        assert_eq!(code, Some(4), "nothing judged, so exit 4: {out}");
        for id in SCENARIOS {
            assert!(out.contains(&format!("SKIP    {id}")), "{out}");
        }
        assert!(out.contains("(threaded-"), "the threads named: {out}");
        assert!(out.contains("two of its threads make calls at once"), "{out}");
    }
}

/// The system's python3 (uid 65534 and the confined programs cannot start
/// a per-user one, such as a pyenv shim under a 0700 home).
fn system_python() -> String {
    ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("a system python3 (Debian: apt-get install python3)")
        .to_string()
}

/// The zoo's hardened Python pair (ctypes) on `scenario`, plain or run by
/// tests/threads/threaded.py in `shape` (worker / helper): stdout, exit.
fn explore_python(scenario: &str, shape: Option<&str>) -> (String, Option<i32>) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let zoo = here.join("zoo/python");
    let python = system_python();
    let command = |script: &str| match shape {
        None => format!("{python} {}", zoo.join(script).display()),
        Some(shape) => format!(
            "{python} {} {shape} {}",
            here.join("threads/threaded.py").display(),
            zoo.join(script).display()
        ),
    };
    let out = shmconf()
        .args(["run", "--jobs", "1"])
        .args(["--writer", &command("writer_hardened.py")])
        .args(["--reader", &command("reader_hardened.py")])
        .arg(scenarios().join(format!("{scenario}.toml")))
        .timeout(std::time::Duration::from_secs(900))
        .output()
        .unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
}

/// A Python pair whose calls are made by a worker thread (main joins), or
/// beside a helper thread that waits the whole run, is explored at
/// system-call level exactly as the single-threaded pair: no SKIP, the same
/// orders, the same verdict. The scenario is the cheapest system-call one
/// for Python (an interpreter start per run, about 0.1 s an order traced).
#[test]
fn a_python_pair_with_threads_is_explored_as_the_single_threaded_one() {
    const SCENARIO: &str = "orders/syscall-over-an-older-line";
    let explored = |out: &str| -> String {
        let line = out
            .lines()
            .find(|l| l.contains(SCENARIO) && l.contains("orders explored"))
            .unwrap_or_else(|| panic!("no verdict line in {out}"));
        line.split(" - ")
            .nth(1)
            .unwrap_or(line)
            .split(" orders explored")
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let (control, code) = explore_python(SCENARIO, None);
    assert_eq!(code, Some(0), "the plain pair: {control}");
    for shape in ["worker", "helper"] {
        let (out, code) = explore_python(SCENARIO, Some(shape));
        assert_eq!(code, Some(0), "{shape}: {out}");
        assert!(out.contains(&format!("PASS    {SCENARIO}")), "{shape}: {out}");
        assert_eq!(explored(&out), explored(&control), "{shape}: {out}\nplain: {control}");
    }
}
