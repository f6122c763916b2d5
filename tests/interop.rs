//! Other well-known SysV clients agree with our writer and reader: `ipcs`
//! (util-linux) sees the segment as the kernel table does, and Python's
//! `sysv_ipc` reads what shm-writer wrote and writes what shm-reader reads.
//! `.ci/run` installs sysv_ipc in a venv and points SHMCONF_PYTHON at it;
//! elsewhere the Python half is skipped with a note, but never under CI.

mod common;

use std::process::Command;

use assert_cmd::Command as Cmd;
use common::sandbox;
use shmconf::sysv::Key;

fn python_with_sysv_ipc() -> Option<String> {
    let python = std::env::var("SHMCONF_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import sysv_ipc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide sysv_ipc (SHMCONF_PYTHON={python})"
    );
    eprintln!("skipped: no Python with sysv_ipc (set SHMCONF_PYTHON)");
    None
}

#[test]
fn ipcs_lists_the_writers_segment_like_the_kernel_table() {
    sandbox(|sb| {
        Cmd::cargo_bin("shm-writer")
            .unwrap()
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
            .current_dir(sb.path())
            .assert()
            .success();
        let out = Command::new("ipcs").arg("-m").output().unwrap();
        assert!(!String::from_utf8_lossy(&out.stdout).contains(&key.to_string()));
    })
}

#[test]
fn python_sysv_ipc_reads_and_writes_our_segments() {
    let Some(python) = python_with_sysv_ipc() else { return };
    sandbox(|sb| {
        Cmd::cargo_bin("shm-writer")
            .unwrap()
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
            .current_dir(sb.path())
            .assert()
            .success()
            .stdout("Data read from memory: from python\n");
        assert!(sb.table().is_empty());
    })
}
