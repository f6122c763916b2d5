//! Test sandbox: a temp dir holding a key file, and a private IPC namespace so
//! nothing a test creates can reach the host's segment table.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use shmconf::ipcns;

#[path = "turn.rs"]
pub mod turn;
use shmconf::SegTable;

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn table(&self) -> SegTable {
        SegTable::read().expect("read /proc/sysvipc/shm")
    }
}

/// Run `f` with a fresh temp dir (holding an empty `shmfile`) inside a
/// private IPC namespace. Where namespaces cannot be made (no privilege),
/// fall back to the host namespace one test at a time, removing the
/// segments the test made (created by this process, or under its key
/// file's key), even when it panics, and no other program's.
///
/// (No `serial_test`: every test has a namespace of its own, so none needs
/// to share the host's by design; the fallback takes its turn here, and
/// `#[file_serial]` fits only test functions, not this helper.)
pub fn sandbox<T: Send>(f: impl FnOnce(&Sandbox) -> T + Send) -> T {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shmfile"), b"").unwrap();
    let sb = Sandbox { dir };
    if ipcns::can_unshare_ipc() {
        return ipcns::in_private_ipc_ns(|| f(&sb)).unwrap();
    }
    let _turn = turn::exclusive("host-ipc-namespace");
    let before: Vec<i32> = SegTable::read().unwrap().rows.iter().map(|r| r.shmid).collect();
    let file_key = shmconf::Key::ftok(&sb.file("shmfile"), 0).map_or(0, |k| k.as_u32() & 0xff_ffff);
    struct Cleanup(Vec<i32>, u32);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let me = std::process::id() as i32;
            for row in SegTable::read().map(|t| t.rows).unwrap_or_default() {
                let ours = row.cpid == Some(me) || (row.key.as_u32() != 0 && row.key.as_u32() & 0xff_ffff == self.1);
                if !self.0.contains(&row.shmid) && ours {
                    let _ = shmconf::Segment::from_id(row.shmid).remove();
                }
            }
        }
    }
    let _cleanup = Cleanup(before, file_key);
    f(&sb)
}
