//! Running code inside a fresh, private IPC namespace.
//!
//! Namespaces are per thread on Linux: `unshare(CLONE_NEWIPC)` on a thread
//! moves only that thread, and every process it spawns inherits it, while
//! `/proc/sysvipc/shm` and the `kernel.shm*` sysctls read from it show that
//! namespace. So a thread of its own is a cheap, leak-proof sandbox: when the
//! thread and its children are gone, the kernel destroys every segment made
//! in it (ipc_namespaces(7)).

use std::fs::File;
use std::os::fd::AsFd;

use nix::sched::{setns, unshare, CloneFlags};

pub use nix::errno::Errno;

/// Run `f` on a new thread placed in a new IPC namespace, and wait for it.
/// Fails with the errno of `unshare` (EPERM without CAP_SYS_ADMIN).
pub fn in_private_ipc_ns<T, F>(f: F) -> Result<T, Errno>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWIPC)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Whether this process may create IPC namespaces (probes on a throwaway thread).
pub fn can_unshare_ipc() -> bool {
    in_private_ipc_ns(|| ()).is_ok()
}

/// A handle that keeps an IPC namespace alive and lets a thread enter it.
#[derive(Debug)]
pub struct IpcNamespace {
    fd: File,
}

impl IpcNamespace {
    /// The calling thread's current IPC namespace.
    pub fn current() -> std::io::Result<IpcNamespace> {
        Ok(IpcNamespace {
            fd: File::open("/proc/thread-self/ns/ipc")?,
        })
    }

    /// A namespace from an open `/proc/PID/ns/ipc` file.
    pub fn from_file(fd: File) -> IpcNamespace {
        IpcNamespace { fd }
    }

    /// Move the calling thread into a new IPC namespace and return a handle to it.
    pub fn unshare_new() -> std::io::Result<IpcNamespace> {
        unshare(CloneFlags::CLONE_NEWIPC)?;
        Self::current()
    }

    /// Move the calling thread into this namespace.
    pub fn enter(&self) -> Result<(), Errno> {
        setns(self.fd.as_fd(), CloneFlags::CLONE_NEWIPC)
    }

    /// The namespace's inode, as `/proc/PID/ns/ipc` links show it.
    pub fn inode(&self) -> std::io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.fd.metadata()?.ino())
    }
}
