//! Other clients and other users: `ipcs` (util-linux) sees the segment as the
//! kernel table does, Python's `sysv_ipc` reads what shm-writer wrote and
//! writes what shm-reader reads, and another uid is refused a 0600 segment.
//! What the machine lacks (Python with sysv_ipc, root) shows as an ignored
//! test with the reason; `.ci/run` provides both, and under CI a missing one
//! fails.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use assert_cmd::Command as Cmd;
use common::sandbox;
use libtest_mimic::{Arguments, Completion, Failed, Trial};
use predicates::prelude::*;
use shmconf::sysv::Key;

fn python_with_sysv_ipc() -> Option<String> {
    let python = std::env::var("SHMCONF_PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(&python)
        .args(["-c", "import sysv_ipc"])
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(python)
}

fn ipcs_lists_the_writers_segment_like_the_kernel_table() {
    sandbox(|sb| {
        Cmd::cargo_bin("shm-writer")
            .unwrap()
            .timeout(std::time::Duration::from_secs(60))
            .current_dir(sb.path())
            .write_stdin("hi\n")
            .assert()
            .success();
        let key = Key::ftok(&sb.file("shmfile"), 65).unwrap();
        let out = Command::new("ipcs")
            .arg("-m")
            .output()
            .expect("ipcs (util-linux) is installed");
        let text = String::from_utf8_lossy(&out.stdout);
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with(&key.to_string()))
            .unwrap_or_else(|| panic!("ipcs does not list {key}:\n{text}"))
            .split_whitespace()
            .collect();
        // key shmid owner perms bytes nattch
        assert_eq!((row[3], row[4], row[5]), ("666", "1024", "0"), "{text}");
        Cmd::cargo_bin("shm-reader")
            .unwrap()
            .timeout(std::time::Duration::from_secs(60))
            .current_dir(sb.path())
            .assert()
            .success();
        let out = Command::new("ipcs").arg("-m").output().unwrap();
        assert!(!String::from_utf8_lossy(&out.stdout).contains(&key.to_string()));
    })
}

fn python_sysv_ipc_reads_and_writes_our_segments(python: String) {
    sandbox(|sb| {
        Cmd::cargo_bin("shm-writer")
            .unwrap()
            .timeout(std::time::Duration::from_secs(60))
            .current_dir(sb.path())
            .write_stdin("from rust\n")
            .assert()
            .success();
        let script = r#"
import sysv_ipc
key = sysv_ipc.ftok("shmfile", 65, silence_warning=True)
mem = sysv_ipc.SharedMemory(key)
assert mem.size == 1024 and mem.mode & 0o777 == 0o666, (mem.size, oct(mem.mode))
print(mem.read().split(b"\0")[0].decode())
mem.write(b"from python\0")
mem.detach()
"#;
        let out = Command::new(&python)
            .arg("-c")
            .arg(script)
            .current_dir(sb.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from rust\n");
        Cmd::cargo_bin("shm-reader")
            .unwrap()
            .timeout(std::time::Duration::from_secs(60))
            .current_dir(sb.path())
            .assert()
            .success()
            .stdout("Data read from memory: from python\n");
        assert!(sb.table().is_empty());
    })
}

fn another_uid_on_a_0600_segment_is_eacces_and_segment_survives() {
    sandbox(|sb| {
        std::fs::set_permissions(sb.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        Cmd::cargo_bin("shm-writer")
            .unwrap()
            .current_dir(sb.path())
            .timeout(std::time::Duration::from_secs(60))
            .args(["--mode", "600"])
            .write_stdin("secret\n")
            .assert()
            .success();
        for role in ["shm-writer", "shm-reader"] {
            // The build tree may sit under a private directory: give uid 65534 a copy it can reach.
            let copy = sb.file(role);
            std::fs::copy(assert_cmd::cargo::cargo_bin(role), &copy).unwrap();
            // Another test thread may have forked while the copy's write fd was
            // open; until that child execs, exec of the copy fails with ETXTBSY.
            for _ in 0..100 {
                match std::process::Command::new(&copy).arg("--version").output() {
                    Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                        std::thread::sleep(std::time::Duration::from_millis(10))
                    }
                    _ => break,
                }
            }
            let mut cmd = std::process::Command::new(&copy);
            cmd.current_dir(sb.path()).uid(65534).gid(65534);
            Cmd::from_std(cmd)
                .write_stdin("intruder\n")
                .assert()
                .code(7)
                .stderr(predicate::str::contains("permission denied"));
        }
        let key = Key::ftok(&sb.file("shmfile"), 65).unwrap();
        let seg = shmconf::Segment::get(key, 0, shmconf::Create::No, 0).unwrap();
        assert_eq!(
            seg.attach::<shmconf::ReadOnly>().unwrap().read_c_string_capped(64),
            b"secret"
        );
        assert_eq!(sb.table().find_key(key).unwrap().perms(), 0o600);
    })
}

/// Run `f`, or ignore the test with `missing` where the machine lacks it (a
/// failure under CI, which must provide it). A panic in `f` is the failure.
fn needing(missing: Option<&'static str>, f: impl FnOnce() + std::panic::UnwindSafe) -> Result<Completion, Failed> {
    match missing {
        None => std::panic::catch_unwind(f)
            .map(|()| Completion::Completed)
            .map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
                    .into()
            }),
        Some(what) if std::env::var_os("CI").is_some() => Err(format!("CI must provide {what}").into()),
        Some(what) => Ok(Completion::ignored_with(format!("needs {what}"))),
    }
}

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        Trial::ignorable_test("ipcs_lists_the_writers_segment_like_the_kernel_table", || {
            needing(None, ipcs_lists_the_writers_segment_like_the_kernel_table)
        }),
        Trial::ignorable_test("python_sysv_ipc_reads_and_writes_our_segments", || {
            let python = python_with_sysv_ipc();
            let missing = python.is_none().then_some("a Python with sysv_ipc (SHMCONF_PYTHON)");
            needing(missing, move || {
                python_sysv_ipc_reads_and_writes_our_segments(python.unwrap_or_default())
            })
        }),
        Trial::ignorable_test("another_uid_on_a_0600_segment_is_eacces_and_segment_survives", || {
            let missing = (!nix::unistd::geteuid().is_root()).then_some("root, to run as another uid");
            needing(missing, another_uid_on_a_0600_segment_is_eacces_and_segment_survives)
        }),
    ];
    libtest_mimic::run(&args, trials).exit();
}
