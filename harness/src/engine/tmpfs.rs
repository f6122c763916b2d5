//! A tmpfs mounted on a scenario's directory (`filesystem = "tmpfs"`): key
//! files on a device whose number's low byte is not 0, so the byte ftok
//! takes from it shows in the key (the machine's disk often has 0 there, and
//! a program that drops the device would go unseen). The mount is the
//! harness's, under the run's own directory, removed (lazily) when the guard
//! drops, before the directory is.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Tries at a fresh mount: each gets the next anonymous device number, so
/// one whose low byte is 0 (1 in 256) is followed by one that is not.
const ATTEMPTS: usize = 3;

/// Why no tmpfs could be made for the scenario's dir here: said as a SKIP's
/// reason (the scenario needs what this machine cannot give).
#[derive(Debug, thiserror::Error)]
pub enum TmpfsError {
    #[error("the scenario needs its key files on a tmpfs, and mounting one failed here ({0})")]
    Mount(#[source] nix::errno::Errno),
    #[error("cannot stat the scenario's tmpfs: {0}")]
    Stat(#[source] std::io::Error),
    /// Every mount's device number had 0 as its low byte.
    #[error("no tmpfs with a device number whose low byte is not 0 after {ATTEMPTS} mounts")]
    LowByteZero,
}

/// A tmpfs mounted on a directory; unmounted on drop.
#[derive(Debug)]
pub struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    /// Mount a small tmpfs on `dir` (empty, made for the scenario) whose
    /// device's low byte is not 0. Err: why none could be made here, said
    /// as a SKIP's reason.
    pub fn on(dir: &Path) -> Result<TmpfsMount, TmpfsError> {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        for _ in 0..ATTEMPTS {
            mount(Some("tmpfs"), dir, Some("tmpfs"), flags, Some("size=1m,mode=0755")).map_err(TmpfsError::Mount)?;
            let guard = TmpfsMount {
                path: dir.to_path_buf(),
            };
            let dev = std::fs::metadata(dir).map_err(TmpfsError::Stat)?.dev();
            if dev & 0xff != 0 {
                return Ok(guard);
            }
            drop(guard);
        }
        Err(TmpfsError::LowByteZero)
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        // Lazy: a process of the scenario may still hold a file open.
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
    }
}
