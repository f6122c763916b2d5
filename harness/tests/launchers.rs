//! Launchers are transparent to system-call exploration: a program started
//! through an exec wrapper script, `env`, a shim that runs `$(...)` helpers
//! (forks) before it execs (as pyenv's), a wrapper that execs another
//! wrapper, or a shell that runs the program and waits for it, is judged as
//! the program itself. Our correct pair passes both system-call scenarios
//! behind each launcher, and the C reference (the original programs' races:
//! a crash when IPC_RMID wins, a half line from gets()) is still caught
//! behind the same launchers, by its own fault and never by the launcher's
//! behaviour (no SIGTRAP, no SKIP).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rstest::rstest;

mod common;
use common::{scenarios, shmconf};

#[derive(Debug, Clone, Copy)]
enum Launcher {
    /// `#!/bin/sh` + `exec PROGRAM "$@"`.
    ExecWrapper,
    /// `env VAR=1 PROGRAM` as the command itself.
    Env,
    /// A bash shim that forks `$(...)` helpers (one execs a program, one
    /// reads a file on fd 0 with `read`), then execs, as pyenv's shims do.
    ForkingShim,
    /// A wrapper that execs a second wrapper, which execs the program.
    ExecsTwice,
    /// A shell that runs the program as its child, waits, and exits with
    /// its code (no exec).
    RunsAndWaits,
}

fn script(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// The command (split like a shell by shmconf) that starts `program`
/// through `launcher`, with its scripts in `dir`.
fn launch(launcher: Launcher, dir: &Path, program: &Path, name: &str) -> String {
    let program = program.display();
    match launcher {
        Launcher::ExecWrapper => script(
            &dir.join(format!("{name}-wrapper")),
            &format!("#!/bin/sh\nexec {program} \"$@\"\n"),
        ),
        Launcher::Env => format!("env SHMCONF_LAUNCHED=1 {program}"),
        Launcher::ForkingShim => {
            let version = dir.join(format!("{name}-version"));
            std::fs::write(&version, "3.11\n").unwrap();
            script(
                &dir.join(format!("{name}-shim")),
                &format!(
                    "#!/usr/bin/env bash\nset -e\nroot=\"$(dirname \"$0\")\"\nversion=\"$(while read -r v; do echo \
                     \"$v\"; done < {})\"\nprogram=$(command -v -p {program} 2>/dev/null || echo {program})\n\
                     kernel=\"$(uname -s)\"\nexec \"$program\" \"$@\"\n",
                    version.display()
                ),
            )
        }
        Launcher::ExecsTwice => {
            let inner = script(
                &dir.join(format!("{name}-inner")),
                &format!("#!/bin/sh\nexec {program} \"$@\"\n"),
            );
            script(
                &dir.join(format!("{name}-outer")),
                &format!("#!/bin/sh\nexec {inner} \"$@\"\n"),
            )
        }
        Launcher::RunsAndWaits => script(
            &dir.join(format!("{name}-runner")),
            &format!("#!/bin/bash\nhelper=$(echo started)\n{program} \"$@\"\ncode=$?\nexit $code\n"),
        ),
    }
}

fn c_reference(role: &str) -> PathBuf {
    Path::new(env!("SHMCONF_C_REFERENCE_DIR")).join(format!("c-{role}"))
}

/// Both system-call scenarios on `writer`/`reader` launched through
/// `launcher`: shmconf's stdout and exit code.
fn explore(launcher: Launcher, writer: &Path, reader: &Path) -> (String, Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let w = launch(launcher, dir.path(), writer, "writer");
    let r = launch(launcher, dir.path(), reader, "reader");
    let out = shmconf()
        .args(["run", "--jobs", "1", "--writer", &w, "--reader", &r])
        .arg(scenarios().join("orders/syscall-rmid-before-attach.toml"))
        .arg(scenarios().join("orders/syscall-input-in-pieces.toml"))
        .output()
        .unwrap();
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
}

#[rstest]
#[case::exec_wrapper(Launcher::ExecWrapper)]
#[case::env(Launcher::Env)]
#[case::shim_that_forks_before_exec(Launcher::ForkingShim)]
#[case::wrapper_that_execs_twice(Launcher::ExecsTwice)]
#[case::shell_that_runs_and_waits(Launcher::RunsAndWaits)]
fn a_correct_pair_behind_a_launcher_passes_every_order(#[case] launcher: Launcher) {
    let (out, code) = explore(
        launcher,
        &assert_cmd::cargo::cargo_bin("shm-writer"),
        &assert_cmd::cargo::cargo_bin("shm-reader"),
    );
    assert_eq!(code, Some(0), "{out}");
    for id in ["orders/syscall-rmid-before-attach", "orders/syscall-input-in-pieces"] {
        assert!(out.contains(&format!("PASS    {id}")), "{launcher:?}: {out}");
    }
    // Exhaustive, and the same orders as the bare programs (README): the
    // launcher's execs, helpers and waits are no steps.
    assert!(out.contains("every one keeps the properties"), "{out}");
    assert!(!out.contains("not all"), "{out}");
    assert!(out.contains("- 270 orders explored"), "{out}");
    assert!(out.contains("- 737 orders explored"), "{out}");
}

#[rstest]
#[case::exec_wrapper(Launcher::ExecWrapper)]
#[case::env(Launcher::Env)]
#[case::shim_that_forks_before_exec(Launcher::ForkingShim)]
#[case::wrapper_that_execs_twice(Launcher::ExecsTwice)]
#[case::shell_that_runs_and_waits(Launcher::RunsAndWaits)]
fn the_originals_races_are_caught_behind_a_launcher(#[case] launcher: Launcher) {
    let (out, code) = explore(launcher, &c_reference("writer"), &c_reference("reader"));
    assert_eq!(code, Some(1), "{out}");
    for id in ["orders/syscall-rmid-before-attach", "orders/syscall-input-in-pieces"] {
        assert!(out.contains(&format!("FAIL    {id}")), "{launcher:?}: {out}");
    }
    assert!(out.contains("w was killed by SIGSEGV"), "{out}");
    assert!(
        out.contains("r printed part of w's line: \"hel\" of \"hello\" (property whole-lines)"),
        "{out}"
    );
    assert!(!out.contains("SIGTRAP"), "the launcher's exec is no crash: {out}");
}

/// A launcher that starts the program and does not wait for it (the
/// program runs beside it) cannot be explored one task at a time: a SKIP
/// that names the task, never a FAIL and never a PASS; and it costs no
/// waiting once decided.
#[test]
fn a_launcher_that_runs_the_program_beside_itself_is_a_quick_skip() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let background = |name: &str, program: PathBuf| {
        script(
            &dir.path().join(name),
            &format!("#!/bin/bash\n{} \"$@\" &\nexec sleep 0.5\n", program.display()),
        )
    };
    let w = background("writer-bg", assert_cmd::cargo::cargo_bin("shm-writer"));
    let r = background("reader-bg", assert_cmd::cargo::cargo_bin("shm-reader"));
    let started = std::time::Instant::now();
    let out = shmconf()
        .args(["run", "--writer", &w, "--reader", &r])
        .arg(scenarios().join("orders/syscall-rmid-before-attach.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SKIP    orders/syscall-rmid-before-attach"), "{text}");
    assert!(text.contains("follows one task of a run at a time"), "{text}");
    assert!(
        text.contains("(shm-writer)") || text.contains("(bash)"),
        "names the task: {text}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}: {text}",
        started.elapsed()
    );
}
