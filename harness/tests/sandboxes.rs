//! Sandbox backends judge the sandbox's IPC claim, not ours: the catalogue's
//! IPC-mode scenarios pass with an honest bubblewrap and unshare, and a
//! fake sandbox (first on PATH, in front of the real one) that quietly drops
//! its IPC flag, or isolates when it was not asked to, fails exactly the
//! scenarios that check that claim, saying where.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use rstest::rstest;

/// Whether `program` runs here as root could use it; under CI it must.
fn usable(program: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let there = std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if std::env::var_os("CI").is_some() {
        assert!(root && there, "CI must provide {program} and run as root");
    }
    if !(root && there) {
        eprintln!("skipped: {program} is not installed, or this is not root");
    }
    root && there
}

/// `shmconf run --backend BACKEND --tag docker --jobs 1` with `path` first
/// on PATH: its stdout and exit code.
fn run(backend: &str, path_first: Option<&Path>) -> (String, Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = assert_cmd::Command::new(assert_cmd::cargo::cargo_bin("shmconf"));
    cmd.args([
        "run",
        "--backend",
        backend,
        "--tag",
        "docker",
        "--jobs",
        "1",
        "--color",
        "never",
    ])
    .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
    .env("TMPDIR", dir.path())
    .timeout(Duration::from_secs(300));
    if let Some(first) = path_first {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", first.display()));
    }
    let out = cmd.output().unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
}

/// A `bwrap` that runs the real one with its arguments changed by `sed`
/// (one word per line).
fn fake_bwrap(dir: &Path, sed: &str) {
    let real = which("bwrap");
    let script = format!(
        "#!/bin/sh\n# A sandbox that lies about its IPC flag.\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done | sed {sed} > \"$0.args\"\n\
         set --\nwhile IFS= read -r a; do set -- \"$@\" \"$a\"; done < \"$0.args\"\nexec {real} \"$@\"\n"
    );
    let fake = dir.join("bwrap");
    std::fs::write(&fake, script).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn which(program: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[rstest]
#[case::bwrap("bwrap", "bwrap")]
#[case::flatpak("flatpak", "bwrap")]
#[case::unshare("unshare", "unshare")]
#[case::lxc("lxc", "lxc-execute")]
fn an_honest_sandbox_passes_the_ipc_mode_scenarios(#[case] backend: &str, #[case] program: &str) {
    if !usable(program) {
        return;
    }
    let (out, code) = run(backend, None);
    assert_eq!(code, Some(0), "{out}");
    for id in [
        "docker/private-containers-are-isolated",
        "docker/host-mode-shares-the-host",
        "docker/private-is-hidden-from-the-host",
    ] {
        assert!(out.contains(&format!("PASS    {id}")), "{id} not judged: {out}");
    }
}

#[test]
fn a_sandbox_that_ignores_its_ipc_flag_is_caught() {
    if !usable("bwrap") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fake_bwrap(dir.path(), "'/^--unshare-ipc$/d'");
    let (out, code) = run("bwrap", Some(dir.path()));
    assert_eq!(code, Some(1), "{out}");
    // Two private sandboxes see each other's segment; a private one sees the host's.
    assert!(out.contains("FAIL    docker/private-containers-are-isolated"), "{out}");
    assert!(out.contains("FAIL    docker/private-is-hidden-from-the-host"), "{out}");
    assert!(
        out.contains("step 2: probe@2: expected exit code 1"),
        "says where: {out}"
    );
    // What the flag does not touch still passes.
    assert!(out.contains("PASS    docker/host-mode-shares-the-host"), "{out}");
}

#[test]
fn a_sandbox_that_isolates_unasked_is_caught() {
    if !usable("bwrap") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Every sandbox private, the "shared" one too.
    fake_bwrap(dir.path(), "'s/^--ro-bind$/--unshare-ipc\\n--ro-bind/'");
    let (out, code) = run("bwrap", Some(dir.path()));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("FAIL    docker/host-mode-shares-the-host"), "{out}");
    assert!(out.contains("segment table of ns harness"), "says where: {out}");
    assert!(out.contains("PASS    docker/private-containers-are-isolated"), "{out}");
}

/// A process by pid and start time (a reused pid is another process).
#[derive(Debug, Clone, PartialEq)]
struct Task {
    pid: i32,
    started: String,
    comm: String,
}

fn task(pid: i32) -> Option<Task> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
    Some(Task {
        pid,
        started: rest.split_whitespace().nth(19)?.to_string(),
        comm: comm.to_string(),
    })
}

/// `root`'s descendants now (every thread's children).
fn descendants(root: i32) -> Vec<Task> {
    let mut found = vec![];
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.extend(task(child));
                stack.push(child);
            }
        }
    }
    found
}

#[rstest]
#[case::bwrap("bwrap", "bwrap")]
#[case::flatpak("flatpak", "bwrap")]
#[case::unshare("unshare", "unshare")]
#[case::firejail("firejail", "firejail")]
#[case::lxc("lxc", "lxc-execute")]
fn nothing_of_a_sandbox_outlives_a_killed_shmconf(#[case] backend: &str, #[case] program: &str) {
    if !usable(program) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("long.toml");
    std::fs::write(
        &scenario,
        "description = \"a long step in a sandbox's namespace\"\n[namespaces]\ns = { docker = \"private\" }\n\
         h = { docker = \"host\" }\n[[step]]\nexec = [\"sleep\", \"30\"]\nns = \"s\"\ntimeout_ms = 60000\n",
    )
    .unwrap();
    let mut shmconf = std::process::Command::new(assert_cmd::cargo::cargo_bin("shmconf"))
        .args(["run", "--backend", backend])
        .arg(&scenario)
        .env("TMPDIR", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Both sandboxes' holders and the step's program are up (bounded wait):
    // everything the run started, as it is then.
    let root = shmconf.id() as i32;
    let mut started = vec![];
    let up = (0..400).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        started = descendants(root);
        started.iter().filter(|t| t.comm == "sleep").count() >= 3
    });
    shmconf.kill().unwrap();
    shmconf.wait().unwrap();
    assert!(up, "the sandboxes never started: {started:?}");
    let alive = || {
        started
            .iter()
            .filter(|t| task(t.pid).as_ref() == Some(*t))
            .cloned()
            .collect::<Vec<_>>()
    };
    let gone = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        alive().is_empty()
    });
    assert!(gone, "left after SIGKILL: {:?}", alive());
}
