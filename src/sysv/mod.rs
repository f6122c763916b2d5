//! Safe wrappers over System V shared memory: `ftok`, `shmget`, `shmat`,
//! `shmdt` and `shmctl`.
//!
//! This is the only module of the project with `unsafe` code (a workspace
//! lint denies it everywhere else; [`process`] holds what runs between a
//! child's start and its exec, [`spawn`] starts it without copying the harness). Each call
//! becomes a typed value whose invariants make the unsafe parts sound:
//!
//! * [`Key`] is a `key_t`, made by [`Key::ftok`], [`Key::from_raw`] or
//!   [`Key::PRIVATE`]; [`ftok_formula`] is the pure formula, tested against
//!   libc's `ftok`.
//! * [`Segment`] is a shmid. It does not own the segment: SysV segments
//!   outlive processes by design, so removal is explicit ([`Segment::remove`]).
//! * [`Attachment`] is a live `shmat` mapping, detached on `Drop`, typed by
//!   its [`Mode`] ([`ReadOnly`] or [`ReadWrite`]: only the latter can write).
//!   Every access is bounded by the segment's real size (`shm_segsz`, read
//!   after attaching), not the page size, and is a byte-wise atomic copy or
//!   compare (SSE2 in inline assembly on x86_64, volatile elsewhere):
//!   another process may write the segment at any time, so no plain Rust
//!   access and no `&[u8]`/`&mut [u8]` into it is ever formed.
//!
//! A read-only attachment has no writing methods, so this does not compile:
//!
//! ```compile_fail
//! use shmconf::sysv::{Create, Key, ReadOnly, Segment};
//! let seg = Segment::get(Key::PRIVATE, 64, Create::IfMissing, 0o600).unwrap();
//! let ro = seg.attach::<ReadOnly>().unwrap();
//! ro.write_at(0, b"x").unwrap();
//! ```
//!
//! Errors are [`Error`]: which call failed, on which key/id/size, and the
//! `Errno` (whose `Display` is the errno text).

// The one module where unsafe code is allowed (the workspace denies it).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fmt;
use std::marker::PhantomData;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

pub mod process;
pub mod spawn;

pub use nix::errno::Errno;

/// `SHM_DEST` in `shm_perm.mode`: the segment is marked for destruction
/// (IPC_RMID while attached) and dies at its last detach.
pub const SHM_DEST: u32 = 0o1000;
/// `SHM_LOCKED` in `shm_perm.mode`.
pub const SHM_LOCKED: u32 = 0o2000;

// shmctl commands of <linux/shm.h> that the libc crate does not define for Linux.
const SHM_STAT: i32 = 13;
const SHM_INFO: i32 = 14;
const SHM_STAT_ANY: i32 = 15;

/// `struct shm_info` of <linux/shm.h>, what SHM_INFO fills.
#[repr(C)]
#[derive(Default)]
struct RawShmInfo {
    used_ids: libc::c_int,
    shm_tot: libc::c_ulong,
    shm_rss: libc::c_ulong,
    shm_swp: libc::c_ulong,
    swap_attempts: libc::c_ulong,
    swap_successes: libc::c_ulong,
}

/// What `shmctl(0, SHM_INFO)` says of the calling thread's IPC namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmInfo {
    /// Segments in use.
    pub used_ids: i32,
    /// Highest slot index in use (-1 when none): enumerate 0..=max_index.
    pub max_index: i32,
    /// Pages allocated to segments.
    pub pages_total: u64,
    pub pages_resident: u64,
}

/// `shmctl(0, SHM_INFO)`: counts of the namespace's segments, without /proc.
// c_ulong is u64 here but not on every target, hence the conversions.
#[allow(clippy::useless_conversion)]
pub fn shm_info() -> Result<ShmInfo> {
    let mut raw = RawShmInfo::default();
    // SAFETY: SHM_INFO writes a struct shm_info, which RawShmInfo mirrors
    // (repr(C)); the kernel writes no more than its size.
    let max_index = unsafe { libc::shmctl(0, SHM_INFO, (&mut raw as *mut RawShmInfo).cast()) };
    if max_index == -1 {
        return Err(Error {
            call: Call::ShmInfo,
            errno: Errno::last(),
        });
    }
    Ok(ShmInfo {
        used_ids: raw.used_ids,
        max_index,
        pages_total: u64::from(raw.shm_tot),
        pages_resident: u64::from(raw.shm_rss),
    })
}

/// A System V IPC key (`key_t`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(libc::key_t);

impl Key {
    /// `IPC_PRIVATE` (0): always a new segment, never found by key. It is also
    /// what the kernel sets a segment's key to after IPC_RMID.
    pub const PRIVATE: Key = Key(libc::IPC_PRIVATE);

    /// The key `ftok` returns on failure. It is an ordinary key to the kernel,
    /// which is why the original programs "worked" without their key file.
    pub const FTOK_FAILURE: Key = Key(-1);

    /// A key from its raw value.
    pub const fn from_raw(raw: libc::key_t) -> Key {
        Key(raw)
    }

    /// The raw `key_t`.
    pub const fn raw(self) -> libc::key_t {
        self.0
    }

    /// The key as the unsigned 32-bit value `ipcs` prints (`0x%08x`).
    pub const fn as_u32(self) -> u32 {
        self.0 as u32
    }

    /// `ftok(path, proj_id)`. Only the low 8 bits of `proj_id` count (so 65
    /// and 321 give the same key), as in glibc. A missing or unreadable file is
    /// an error naming the path instead of the silent key 0xffffffff.
    pub fn ftok(path: &Path, proj_id: i32) -> std::result::Result<Key, FtokError> {
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| FtokError {
            path: path.to_owned(),
            errno: Errno::EINVAL,
        })?;
        // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
        let raw = unsafe { libc::ftok(c_path.as_ptr(), proj_id) };
        if raw == -1 {
            return Err(FtokError {
                path: path.to_owned(),
                errno: Errno::last(),
            });
        }
        Ok(Key(raw))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.as_u32())
    }
}

/// glibc's ftok formula, from a file's `st_dev` and `st_ino`:
/// `(st_ino & 0xffff) | (st_dev & 0xff) << 16 | (proj_id & 0xff) << 24`.
/// Inodes equal modulo 65536 on one device collide, and so do proj_ids equal
/// modulo 256.
pub const fn ftok_formula(st_dev: u64, st_ino: u64, proj_id: i32) -> Key {
    let v = (st_ino as u32 & 0xffff) | ((st_dev as u32 & 0xff) << 16) | ((proj_id as u32 & 0xff) << 24);
    Key(v as libc::key_t)
}

/// `ftok` failed: the key file is missing or cannot be `stat`ed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtokError {
    pub path: PathBuf,
    pub errno: Errno,
}

impl fmt::Display for FtokError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ftok({}) failed: {}", self.path.display(), self.errno.desc())
    }
}

impl std::error::Error for FtokError {}

/// Which SysV call failed, and on what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Shmget {
        key: Key,
        size: usize,
        flags: i32,
    },
    Shmat {
        id: i32,
        read_only: bool,
    },
    Shmdt {
        id: i32,
    },
    IpcStat {
        id: i32,
    },
    IpcRmid {
        id: i32,
    },
    IpcSet {
        id: i32,
    },
    /// SHM_LOCK (`lock`) or SHM_UNLOCK.
    ShmLock {
        id: i32,
        lock: bool,
    },
    ShmInfo,
    ShmStat {
        index: i32,
    },
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Shmget { key, size, flags } => {
                write!(f, "shmget(key {key}, size {size}, flags {})", describe_flags(*flags))
            }
            Call::Shmat { id, read_only } => {
                write!(f, "shmat(id {id}{})", if *read_only { ", SHM_RDONLY" } else { "" })
            }
            Call::Shmdt { id } => write!(f, "shmdt(id {id})"),
            Call::IpcStat { id } => write!(f, "shmctl(id {id}, IPC_STAT)"),
            Call::IpcRmid { id } => write!(f, "shmctl(id {id}, IPC_RMID)"),
            Call::IpcSet { id } => write!(f, "shmctl(id {id}, IPC_SET)"),
            Call::ShmLock { id, lock } => {
                write!(f, "shmctl(id {id}, {})", if *lock { "SHM_LOCK" } else { "SHM_UNLOCK" })
            }
            Call::ShmInfo => write!(f, "shmctl(0, SHM_INFO)"),
            Call::ShmStat { index } => write!(f, "shmctl(index {index}, SHM_STAT_ANY)"),
        }
    }
}

fn describe_flags(flags: i32) -> String {
    let mut s = format!("0{:o}", flags & 0o777);
    if flags & libc::IPC_CREAT != 0 {
        s.push_str("|IPC_CREAT");
    }
    if flags & libc::IPC_EXCL != 0 {
        s.push_str("|IPC_EXCL");
    }
    s
}

/// A failed SysV shared-memory call: the call with its arguments and the errno.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub call: Call,
    pub errno: Errno,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {} ({:?})", self.call, self.errno.desc(), self.errno)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// How [`Segment::get`] treats a missing or existing segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Open an existing segment only (ENOENT if there is none).
    No,
    /// `IPC_CREAT`: open the existing segment or create it.
    IfMissing,
    /// `IPC_CREAT | IPC_EXCL`: create, EEXIST if the key is taken.
    Exclusive,
}

/// A shared-memory segment id. Copyable and not owning: a segment lives
/// until IPC_RMID (or its namespace dies), whatever happens to this value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segment {
    id: i32,
}

impl Segment {
    /// `shmget(key, size, mode | flags)`.
    pub fn get(key: Key, size: usize, create: Create, mode: u32) -> Result<Segment> {
        let flags = (mode & 0o777) as i32
            | match create {
                Create::No => 0,
                Create::IfMissing => libc::IPC_CREAT,
                Create::Exclusive => libc::IPC_CREAT | libc::IPC_EXCL,
            };
        // SAFETY: shmget takes plain integers and touches no memory of ours.
        let id = unsafe { libc::shmget(key.raw(), size, flags) };
        if id == -1 {
            return Err(Error {
                call: Call::Shmget { key, size, flags },
                errno: Errno::last(),
            });
        }
        Ok(Segment { id })
    }

    /// A segment by id (as `ipcs` or `/proc/sysvipc/shm` shows it). Whether it
    /// exists is only known at the first call on it.
    pub const fn from_id(id: i32) -> Segment {
        Segment { id }
    }

    pub const fn id(self) -> i32 {
        self.id
    }

    /// `shmctl(id, IPC_STAT)`.
    pub fn stat(self) -> Result<SegmentStat> {
        let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::zeroed();
        // SAFETY: `ds` is a writable shmid_ds the kernel fills on success.
        let rc = unsafe { libc::shmctl(self.id, libc::IPC_STAT, ds.as_mut_ptr()) };
        if rc == -1 {
            return Err(self.error(Call::IpcStat { id: self.id }));
        }
        // SAFETY: IPC_STAT succeeded, so the kernel initialised `ds`.
        let ds = unsafe { ds.assume_init() };
        Ok(SegmentStat::from_raw(&ds))
    }

    /// `shmctl(id, IPC_RMID)`: destroy now, or, while attached, mark it
    /// SHM_DEST (its key becomes IPC_PRIVATE) and destroy it at the last detach.
    pub fn remove(self) -> Result<()> {
        // SAFETY: IPC_RMID ignores the buffer argument; null is allowed.
        let rc = unsafe { libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) };
        if rc == -1 {
            return Err(self.error(Call::IpcRmid { id: self.id }));
        }
        Ok(())
    }

    /// `shmctl(id, IPC_RMID)` as the given effective uid, from a forked child:
    /// the owner or creator may always remove a segment, while root without
    /// CAP_SYS_ADMIN (a container's) may not remove another uid's. Used to
    /// clean up what a scenario's unprivileged process made. Err: the errno
    /// of the child's setresuid or shmctl, or of the fork.
    pub fn remove_as(self, uid: u32) -> std::result::Result<(), Errno> {
        // SAFETY: the child calls only async-signal-safe functions (raw
        // syscalls and _exit) before it exits, so forking a threaded process
        // is sound; the parent only waits for it.
        let pid = unsafe { libc::fork() };
        if pid == -1 {
            return Err(Errno::last());
        }
        if pid == 0 {
            // SAFETY: raw syscalls on plain integers; setresuid as a raw
            // syscall changes only this (the child's only) thread, and
            // _exit never returns.
            unsafe {
                if libc::syscall(libc::SYS_setresuid, uid, uid, uid) == -1
                    || libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) == -1
                {
                    libc::_exit(*libc::__errno_location());
                }
                libc::_exit(0);
            }
        }
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child; `status` is a valid out pointer.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            if rc == pid {
                break;
            }
            if Errno::last() != Errno::EINTR {
                return Err(Errno::last());
            }
        }
        match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
            (true, 0) => Ok(()),
            (true, errno) => Err(Errno::from_raw(errno)),
            _ => Err(Errno::ECHILD),
        }
    }

    /// `shmctl(id, IPC_SET)` with a new uid, gid and mode (low 9 bits).
    pub fn set(self, uid: u32, gid: u32, mode: u32) -> Result<()> {
        let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::zeroed();
        // SAFETY: IPC_STAT fills `ds`; we check the result before using it.
        if unsafe { libc::shmctl(self.id, libc::IPC_STAT, ds.as_mut_ptr()) } == -1 {
            return Err(self.error(Call::IpcSet { id: self.id }));
        }
        // SAFETY: initialised by the successful IPC_STAT above.
        let mut ds = unsafe { ds.assume_init() };
        ds.shm_perm.uid = uid;
        ds.shm_perm.gid = gid;
        ds.shm_perm.mode = (mode & 0o777) as _;
        // SAFETY: `ds` is a valid shmid_ds; IPC_SET only reads it.
        if unsafe { libc::shmctl(self.id, libc::IPC_SET, &mut ds) } == -1 {
            return Err(self.error(Call::IpcSet { id: self.id }));
        }
        Ok(())
    }

    /// `shmctl(id, SHM_LOCK)` (`lock`) or `shmctl(id, SHM_UNLOCK)`: keep
    /// the segment's pages in memory, SHM_LOCKED in its mode, or let them
    /// be swapped again.
    pub fn lock(self, lock: bool) -> Result<()> {
        let cmd = if lock { libc::SHM_LOCK } else { libc::SHM_UNLOCK };
        // SAFETY: SHM_LOCK and SHM_UNLOCK read and write no buffer.
        if unsafe { libc::shmctl(self.id, cmd, std::ptr::null_mut()) } == -1 {
            return Err(self.error(Call::ShmLock { id: self.id, lock }));
        }
        Ok(())
    }

    /// `shmat(id, NULL, 0 or SHM_RDONLY)`, then IPC_STAT of the attached
    /// segment: while we are attached its id cannot be reused, so the size is
    /// the size of the segment we mapped (the mapping is page-rounded, the
    /// segment is not, and every access stays inside `shm_segsz`).
    pub fn attach<M: Mode>(self) -> Result<Attachment<M>> {
        let call = Call::Shmat {
            id: self.id,
            read_only: M::READ_ONLY,
        };
        let flags = if M::READ_ONLY { libc::SHM_RDONLY } else { 0 };
        // SAFETY: a null address lets the kernel choose a free range, so no
        // existing mapping of ours is replaced.
        let ptr = unsafe { libc::shmat(self.id, std::ptr::null(), flags) };
        if ptr as isize == -1 {
            return Err(self.error(call));
        }
        let Some(ptr) = NonNull::new(ptr.cast::<u8>()) else {
            return Err(Error {
                call,
                errno: Errno::EFAULT,
            });
        };
        let mut attachment = Attachment {
            segment: self,
            ptr,
            len: 0,
            _mode: PhantomData,
        };
        // On error `attachment` drops here, which detaches it.
        attachment.len = self
            .stat()
            .map_err(|e| Error {
                call: call.clone(),
                errno: e.errno,
            })?
            .size;
        Ok(attachment)
    }

    /// A read-only attachment that a child forked meanwhile (by any thread of
    /// this process) does not inherit (`MADV_DONTFORK`): an observer such as
    /// the harness must never show up in a segment's attach count, which a
    /// fork between its `shmat` and `shmdt` would otherwise raise by one
    /// until the child's `exec`.
    pub fn attach_unseen(self) -> Result<Attachment<ReadOnly>> {
        // No fork of this process may copy the mapping between shmat and
        // MADV_DONTFORK: a child would count in nattch until it execs.
        let _no_forks = FORKS.write().unwrap_or_else(|p| p.into_inner());
        let attachment = self.attach::<ReadOnly>()?;
        let mapped = attachment.len.div_ceil(page_size()) * page_size();
        if mapped > 0 {
            // SAFETY: the range is exactly our own shmat mapping (page-aligned
            // start, page-rounded length); MADV_DONTFORK changes only whether
            // fork copies it, never its contents.
            let rc = unsafe { libc::madvise(attachment.ptr.as_ptr().cast(), mapped, libc::MADV_DONTFORK) };
            if rc == -1 {
                return Err(self.error(Call::Shmat {
                    id: self.id,
                    read_only: true,
                }));
            }
        }
        Ok(attachment)
    }
}

/// Forks of this process against [`Segment::attach_unseen`]: a fork holds
/// it shared, the attach exclusively.
static FORKS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Hold while this process forks a child (a `Command` with `pre_exec`,
/// which forks; plain `Command`s use posix_spawn and [`spawn::Launch`] a
/// `CLONE_VM` clone, which copy no mappings and need no guard): an unseen attachment being made in another thread waits, so
/// no child inherits it before it is marked MADV_DONTFORK. (Seen: a reader
/// of the segment table briefly counted the harness's own read as an
/// attachment, nattch 1 instead of 0, a false FAIL in 1 of ~7 runs.)
pub fn fork_guard() -> std::sync::RwLockReadGuard<'static, ()> {
    FORKS.read().unwrap_or_else(|p| p.into_inner())
}

impl Segment {
    /// `shmctl(index, SHM_STAT_ANY)` (Linux >= 4.17; SHM_STAT before, which
    /// needs read permission): the segment at a slot of the kernel's table,
    /// with its id and IPC_STAT view. EINVAL for an unused slot. This is how
    /// a namespace's segments are enumerated without /proc (`ipcs` does it).
    pub fn stat_index(index: i32) -> Result<(Segment, SegmentStat)> {
        let mut ds = std::mem::MaybeUninit::<libc::shmid_ds>::zeroed();
        let mut id = -1;
        for cmd in [SHM_STAT_ANY, SHM_STAT] {
            // SAFETY: `ds` is a writable shmid_ds the kernel fills on success.
            id = unsafe { libc::shmctl(index, cmd, ds.as_mut_ptr()) };
            if id != -1 || Errno::last() != Errno::EINVAL || cmd == SHM_STAT {
                break;
            }
            // EINVAL from SHM_STAT_ANY: an unused slot, or a kernel without it.
        }
        if id == -1 {
            return Err(Error {
                call: Call::ShmStat { index },
                errno: Errno::last(),
            });
        }
        // SAFETY: the call succeeded, so the kernel initialised `ds`.
        let ds = unsafe { ds.assume_init() };
        Ok((Segment { id }, SegmentStat::from_raw(&ds)))
    }

    fn error(self, call: Call) -> Error {
        Error {
            call,
            errno: Errno::last(),
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// How a segment is attached: [`ReadOnly`] (`SHM_RDONLY`) or [`ReadWrite`].
/// Writing methods exist only on `Attachment<ReadWrite>`, so a write through
/// a read-only mapping (a SIGSEGV at run time) does not compile.
pub trait Mode: sealed::Sealed {
    const READ_ONLY: bool;
}

/// `shmat(..., SHM_RDONLY)`.
#[derive(Debug)]
pub enum ReadOnly {}

/// `shmat(..., 0)`.
#[derive(Debug)]
pub enum ReadWrite {}

impl sealed::Sealed for ReadOnly {}
impl sealed::Sealed for ReadWrite {}
impl Mode for ReadOnly {
    const READ_ONLY: bool = true;
}
impl Mode for ReadWrite {
    const READ_ONLY: bool = false;
}

fn page_size() -> usize {
    // SAFETY: sysconf takes an integer and touches no memory of ours.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// A typed view of `struct shmid_ds` as IPC_STAT reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentStat {
    pub key: Key,
    /// `shm_perm.mode`: permission bits plus SHM_DEST / SHM_LOCKED.
    pub mode: u32,
    pub size: usize,
    pub nattch: u64,
    pub cpid: i32,
    pub lpid: i32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub atime: i64,
    pub dtime: i64,
    pub ctime: i64,
}

impl SegmentStat {
    // Field types differ between targets (shmatt_t, time_t), hence the casts.
    #[allow(clippy::unnecessary_cast)]
    fn from_raw(ds: &libc::shmid_ds) -> SegmentStat {
        SegmentStat {
            key: Key(ds.shm_perm.__key),
            mode: ds.shm_perm.mode as u32,
            size: ds.shm_segsz,
            nattch: ds.shm_nattch as u64,
            cpid: ds.shm_cpid,
            lpid: ds.shm_lpid,
            uid: ds.shm_perm.uid,
            gid: ds.shm_perm.gid,
            cuid: ds.shm_perm.cuid,
            cgid: ds.shm_perm.cgid,
            atime: ds.shm_atime,
            dtime: ds.shm_dtime,
            ctime: ds.shm_ctime,
        }
    }

    /// Permission bits only.
    pub fn perms(&self) -> u32 {
        self.mode & 0o777
    }

    /// Marked for destruction (IPC_RMID while attached).
    pub fn is_marked_for_destruction(&self) -> bool {
        self.mode & SHM_DEST != 0
    }

    /// Its pages are kept in memory (SHM_LOCK).
    pub fn is_locked(&self) -> bool {
        self.mode & SHM_LOCKED != 0
    }
}

/// Access past the segment's real size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfBounds {
    pub offset: usize,
    pub len: usize,
    pub segment_size: usize,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes at offset {} do not fit in a {}-byte segment",
            self.len, self.offset, self.segment_size
        )
    }
}

impl std::error::Error for OutOfBounds {}

/// A live `shmat` mapping of a segment, detached (`shmdt`) on drop.
///
/// Other processes may write the segment at any moment, so its bytes are
/// never reachable through a Rust reference (`&[u8]` would promise the
/// compiler they do not change, a data race the compiler may exploit): every
/// access is a byte-wise atomic copy in or out or compare ([`copy_bytes`],
/// [`equal_bytes`]), or a system call that the kernel performs on the
/// memory, bounded by the segment's real size.
#[derive(Debug)]
pub struct Attachment<M: Mode> {
    segment: Segment,
    ptr: NonNull<u8>,
    len: usize,
    _mode: PhantomData<M>,
}

/// Bytes moved per volatile access where alignment allows (non-x86_64).
#[cfg(not(target_arch = "x86_64"))]
type Word = usize;
#[cfg(not(target_arch = "x86_64"))]
const WORD: usize = std::mem::size_of::<Word>();

/// Copy `dst.len()` bytes from shared memory at `src` into `dst` ([`copy_bytes`]).
///
/// # Safety
/// `src` must be valid for reads of `dst.len()` bytes for the whole call.
unsafe fn copy_out(src: *const u8, dst: &mut [u8]) {
    // SAFETY: forwarded from the caller; `dst` is ours and cannot overlap.
    unsafe { copy_bytes(src, dst.as_mut_ptr(), dst.len()) }
}

/// Copy `src` into shared memory at `dst` ([`copy_bytes`]).
///
/// # Safety
/// `dst` must be valid for writes of `src.len()` bytes for the whole call.
unsafe fn copy_in(src: &[u8], dst: *mut u8) {
    // SAFETY: forwarded from the caller; `src` is ours and cannot overlap.
    unsafe { copy_bytes(src.as_ptr(), dst, src.len()) }
}

/// Copy `n` bytes between non-overlapping ranges, one of them shared memory.
///
/// On x86_64: 16-byte SSE2 moves in inline assembly (64 bytes a round), then
/// single bytes. The compiler sees no Rust access to the shared bytes, and
/// every byte the CPU moves is single-copy atomic, so this is a byte-wise
/// atomic memcpy (the semantics C++ proposes for exactly this, P1478) near
/// memcpy's speed. (`rep movsb` measured 5x slower on this project's AMD VMs.)
/// Elsewhere: volatile accesses, a word at a time where aligned.
///
/// # Safety
/// `src` valid for reads and `dst` for writes of `n` bytes for the whole
/// call; the ranges do not overlap.
#[cfg(target_arch = "x86_64")]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, n: usize) {
    let bulk = n / 64 * 64;
    if bulk > 0 {
        // SAFETY: reads [src, src+bulk) and writes [dst, dst+bulk), inside
        // the ranges the caller vouches for; xmm0-3 and the pointer/count
        // registers are declared clobbered; SSE2 is baseline on x86_64.
        unsafe {
            std::arch::asm!(
                "2:",
                "movdqu xmm0, [{s}]",
                "movdqu xmm1, [{s} + 16]",
                "movdqu xmm2, [{s} + 32]",
                "movdqu xmm3, [{s} + 48]",
                "movdqu [{d}], xmm0",
                "movdqu [{d} + 16], xmm1",
                "movdqu [{d} + 32], xmm2",
                "movdqu [{d} + 48], xmm3",
                "add {s}, 64",
                "add {d}, 64",
                "sub {n}, 64",
                "jnz 2b",
                s = inout(reg) src => _,
                d = inout(reg) dst => _,
                n = inout(reg) bulk => _,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                options(nostack)
            );
        }
    }
    for i in bulk..n {
        // SAFETY: i < n, inside both ranges.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, n: usize) {
    // One side is shared memory: volatile on both keeps the rule simple.
    let mut i = 0;
    while i + WORD <= n && (src as usize + i) % WORD == 0 && (dst as usize + i) % WORD == 0 {
        // SAFETY: aligned and inside both ranges.
        unsafe {
            dst.add(i)
                .cast::<Word>()
                .write_volatile(src.add(i).cast::<Word>().read_volatile())
        };
        i += WORD;
    }
    while i < n {
        // SAFETY: inside both ranges.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        i += 1;
    }
}

impl<M: Mode> Attachment<M> {
    pub fn segment(&self) -> Segment {
        self.segment
    }

    /// The segment's real size (`shm_segsz`), the bound of every access.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_read_only(&self) -> bool {
        M::READ_ONLY
    }

    fn check(&self, offset: usize, len: usize) -> std::result::Result<(), OutOfBounds> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(OutOfBounds {
                offset,
                len,
                segment_size: self.len,
            }),
        }
    }

    /// Copy `buf.len()` bytes from `offset` into `buf`: a snapshot of bytes
    /// that other processes may be changing.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> std::result::Result<(), OutOfBounds> {
        self.check(offset, buf.len())?;
        // SAFETY: bounds checked above; the mapping is valid for `self.len`
        // bytes while attached; concurrent writers are why the copy is volatile.
        unsafe { copy_out(self.ptr.as_ptr().add(offset), buf) };
        Ok(())
    }

    /// The first `max` bytes of the segment (or all of it, if smaller), copied.
    pub fn to_vec_capped(&self, max: usize) -> Vec<u8> {
        let mut v = vec![0; self.len.min(max)];
        // In bounds by construction: v.len() <= self.len.
        let _ = self.read_at(0, &mut v);
        v
    }

    /// The bytes before the first NUL, as C's `%s` would print them, but never
    /// past the segment's end (a segment with no NUL yields all of its bytes)
    /// and never more than `max` (memory stays bounded for any segment).
    pub fn read_c_string_capped(&self, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.for_each_c_string_chunk(|chunk| {
            let room = max - out.len();
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if out.len() >= max {
                Err(())
            } else {
                Ok(())
            }
        });
        out
    }

    /// Hand the bytes before the first NUL (bounded by the segment) to `sink`
    /// in chunks of at most 64 KiB, copied one chunk at a time: a reader can
    /// print a segment of any size in bounded memory. Stops at `sink`'s error.
    pub fn for_each_c_string_chunk<E>(
        &self,
        mut sink: impl FnMut(&[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        const CHUNK: usize = 64 * 1024;
        let mut buf = vec![0u8; self.len.min(CHUNK)];
        let mut offset = 0;
        while offset < self.len {
            let n = (self.len - offset).min(CHUNK);
            let chunk = &mut buf[..n];
            // In bounds: offset + n <= self.len.
            let _ = self.read_at(offset, chunk);
            match chunk.iter().position(|&b| b == 0) {
                Some(nul) => return sink(&chunk[..nul]),
                None => sink(chunk)?,
            }
            offset += n;
        }
        Ok(())
    }

    /// `shmdt` now, reporting its error (drop ignores it).
    pub fn detach(self) -> Result<()> {
        let me = std::mem::ManuallyDrop::new(self);
        me.shmdt()
    }

    fn shmdt(&self) -> Result<()> {
        // SAFETY: `ptr` is the address shmat returned and has not been detached
        // (detach consumes self; drop runs once).
        let rc = unsafe { libc::shmdt(self.ptr.as_ptr().cast()) };
        if rc == -1 {
            return Err(self.segment.error(Call::Shmdt { id: self.segment.id }));
        }
        Ok(())
    }

    /// write(2) `len` bytes of the segment at `offset` to `fd` (the "one copy out").
    pub fn write_to(&self, offset: usize, len: usize, fd: &impl std::os::fd::AsRawFd) -> std::io::Result<usize> {
        self.check(offset, len)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the range is inside the mapping, which the kernel only reads;
        // no Rust reference to it is formed.
        let n = unsafe { libc::write(fd.as_raw_fd(), self.ptr.as_ptr().add(offset).cast(), len) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Whether the segment holds exactly `expected` at `offset`, compared in
    /// place ([`equal_bytes`]: no copy out, no Rust reference to the shared
    /// bytes): how a consumer checks data another process wrote.
    pub fn equals_at(&self, offset: usize, expected: &[u8]) -> std::result::Result<bool, OutOfBounds> {
        self.check(offset, expected.len())?;
        // SAFETY: inside the checked range; `expected` is ours.
        Ok(unsafe { equal_bytes(self.ptr.as_ptr().add(offset), expected) })
    }
}

/// Do the `expected.len()` shared bytes at `shared` equal `expected`?
///
/// On x86_64: 16 bytes at a time with SSE2 loads and compares in inline
/// assembly (each byte read single-copy atomic, as in [`copy_bytes`]), then
/// single volatile bytes. Elsewhere: volatile bytes.
///
/// # Safety
/// `shared` must be valid for reads of `expected.len()` bytes for the call.
unsafe fn equal_bytes(shared: *const u8, expected: &[u8]) -> bool {
    let n = expected.len();
    #[cfg(target_arch = "x86_64")]
    let bulk = n / 16 * 16;
    #[cfg(not(target_arch = "x86_64"))]
    let bulk = 0;
    #[cfg(target_arch = "x86_64")]
    if bulk > 0 {
        let mismatch: usize;
        // SAFETY: reads [shared, shared+bulk) and [expected, expected+bulk),
        // both inside their ranges; only registers are written (declared).
        unsafe {
            std::arch::asm!(
                "xor {m:e}, {m:e}",
                "2:",
                "movdqu xmm0, [{a}]",
                "movdqu xmm1, [{b}]",
                "pcmpeqb xmm0, xmm1",
                "pmovmskb {t:e}, xmm0",
                "cmp {t:e}, 0xffff",
                "jne 3f",
                "add {a}, 16",
                "add {b}, 16",
                "sub {n}, 16",
                "jnz 2b",
                "jmp 4f",
                "3:",
                "mov {m:e}, 1",
                "4:",
                a = inout(reg) shared => _,
                b = inout(reg) expected.as_ptr() => _,
                n = inout(reg) bulk => _,
                t = out(reg) _,
                m = out(reg) mismatch,
                out("xmm0") _, out("xmm1") _,
                options(nostack, readonly)
            );
        }
        if mismatch != 0 {
            return false;
        }
    }
    (bulk..n).all(|i| {
        // SAFETY: i < n, inside the range.
        unsafe { shared.add(i).read_volatile() == expected[i] }
    })
}

impl Attachment<ReadWrite> {
    /// Copy `data` into the segment at `offset` (volatile writes).
    pub fn write_at(&self, offset: usize, data: &[u8]) -> std::result::Result<(), OutOfBounds> {
        self.check(offset, data.len())?;
        // SAFETY: bounds checked, writable mapping (the type says ReadWrite),
        // `data` is ours so it cannot overlap.
        unsafe { copy_in(data, self.ptr.as_ptr().add(offset)) };
        Ok(())
    }

    /// The 4 bytes at `offset` as an atomic, for synchronisation between the
    /// processes that share the segment (the ring buffers of the benchmark).
    /// None when out of bounds or not 4-byte aligned. Atomics are the one sound
    /// way to share mutable memory with another process; only a writable
    /// mapping hands them out (a read-only one would fault on the first store).
    pub fn atomic_u32(&self, offset: usize) -> Option<&std::sync::atomic::AtomicU32> {
        self.check(offset, 4).ok()?;
        let ptr = self.ptr.as_ptr().wrapping_add(offset);
        if ptr as usize % std::mem::align_of::<std::sync::atomic::AtomicU32>() != 0 {
            return None;
        }
        // SAFETY: in bounds, aligned, valid while `self` is attached (the
        // borrow ties the reference to it); AtomicU32 has u32's layout and
        // may be accessed concurrently by other processes.
        Some(unsafe { &*(ptr as *const std::sync::atomic::AtomicU32) })
    }

    /// read(2) from `fd` straight into the segment at `offset`, at most `len`
    /// bytes: the kernel copies file data into the shared memory with no
    /// intermediate buffer (the "one copy in" of shared-memory IPC).
    pub fn read_from(&self, offset: usize, len: usize, fd: &impl std::os::fd::AsRawFd) -> std::io::Result<usize> {
        self.check(offset, len)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the range is inside the writable mapping; no Rust reference
        // to it exists, so the kernel writing into it aliases nothing.
        let n = unsafe { libc::read(fd.as_raw_fd(), self.ptr.as_ptr().add(offset).cast(), len) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// FUTEX_WAIT on a word another process may change (a shared, not private,
/// futex): sleep while `*word == expected`, or until woken. Spurious wake-ups
/// happen; callers re-check their condition.
pub fn futex_wait(word: &std::sync::atomic::AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid, aligned u32 for the call's duration; a null
    // timeout means wait without a limit.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// FUTEX_WAKE: wake up to `n` waiters on `word`.
pub fn futex_wake(word: &std::sync::atomic::AtomicU32, n: i32) {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE only reads its address.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n);
    }
}

/// A set of System V semaphores (semget/semop/semctl), by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Semaphores {
    id: i32,
}

impl Semaphores {
    /// A new private set of `n` semaphores, all 0.
    pub fn create_private(n: i32, mode: u32) -> std::result::Result<Semaphores, Errno> {
        // SAFETY: plain integer arguments.
        let id = unsafe { libc::semget(libc::IPC_PRIVATE, n, libc::IPC_CREAT | (mode & 0o777) as i32) };
        Errno::result(id).map(|id| Semaphores { id })
    }

    pub const fn from_id(id: i32) -> Semaphores {
        Semaphores { id }
    }

    pub const fn id(self) -> i32 {
        self.id
    }

    /// semop with one operation: add `delta` to semaphore `num` (blocking while it would go below 0).
    pub fn op(self, num: u16, delta: i16) -> std::result::Result<(), Errno> {
        let mut sop = libc::sembuf {
            sem_num: num,
            sem_op: delta,
            sem_flg: 0,
        };
        loop {
            // SAFETY: `sop` is one valid sembuf.
            let rc = unsafe { libc::semop(self.id, &mut sop, 1) };
            match Errno::result(rc) {
                Err(Errno::EINTR) => continue,
                other => return other.map(drop),
            }
        }
    }

    /// semctl(IPC_RMID).
    pub fn remove(self) -> std::result::Result<(), Errno> {
        // SAFETY: IPC_RMID takes no further argument.
        Errno::result(unsafe { libc::semctl(self.id, 0, libc::IPC_RMID) }).map(drop)
    }
}

/// A System V message queue (msgget/msgsnd/msgrcv/msgctl), by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgQueue {
    id: i32,
}

/// Bytes before the text in a msgsnd/msgrcv buffer (the `long mtype`).
const MTYPE_LEN: usize = std::mem::size_of::<libc::c_long>();

impl MsgQueue {
    pub fn create_private(mode: u32) -> std::result::Result<MsgQueue, Errno> {
        // SAFETY: plain integer arguments.
        let id = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | (mode & 0o777) as i32) };
        Errno::result(id).map(|id| MsgQueue { id })
    }

    pub const fn from_id(id: i32) -> MsgQueue {
        MsgQueue { id }
    }

    pub const fn id(self) -> i32 {
        self.id
    }

    /// msgsnd of `text` with type `mtype` (> 0). `scratch` is reused between
    /// calls to avoid an allocation per message.
    pub fn send(self, mtype: i64, text: &[u8], scratch: &mut Vec<u8>) -> std::result::Result<(), Errno> {
        scratch.clear();
        scratch.extend_from_slice(&(mtype as libc::c_long).to_ne_bytes());
        scratch.extend_from_slice(text);
        loop {
            // SAFETY: `scratch` holds an mtype followed by `text.len()` bytes.
            let rc = unsafe { libc::msgsnd(self.id, scratch.as_ptr().cast(), text.len(), 0) };
            match Errno::result(rc) {
                Err(Errno::EINTR) => continue,
                other => return other.map(drop),
            }
        }
    }

    /// msgrcv of the next message of type `mtype` into `buf`; returns its length.
    pub fn recv(self, mtype: i64, buf: &mut [u8], scratch: &mut Vec<u8>) -> std::result::Result<usize, Errno> {
        scratch.resize(MTYPE_LEN + buf.len(), 0);
        loop {
            // SAFETY: `scratch` has room for an mtype and `buf.len()` bytes of text.
            let rc = unsafe {
                libc::msgrcv(
                    self.id,
                    scratch.as_mut_ptr().cast(),
                    buf.len(),
                    mtype as libc::c_long,
                    0,
                )
            };
            match Errno::result(rc) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
                Ok(n) => {
                    let n = n as usize;
                    buf[..n].copy_from_slice(&scratch[MTYPE_LEN..MTYPE_LEN + n]);
                    return Ok(n);
                }
            }
        }
    }

    /// msgctl(IPC_RMID).
    pub fn remove(self) -> std::result::Result<(), Errno> {
        // SAFETY: IPC_RMID ignores the buffer argument.
        Errno::result(unsafe { libc::msgctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
    }
}

impl<M: Mode> Drop for Attachment<M> {
    fn drop(&mut self) {
        let _ = self.shmdt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn ftok_formula_matches_libc() {
        let dir = tempfile::tempdir().unwrap();
        for (i, proj) in [1, 65, 255, 256, 321, -1, 0x7f, 0x80].into_iter().enumerate() {
            let path = dir.path().join(format!("f{i}"));
            std::fs::write(&path, b"").unwrap();
            let md = std::fs::metadata(&path).unwrap();
            let ours = ftok_formula(md.dev(), md.ino(), proj);
            let libc = Key::ftok(&path, proj).unwrap();
            assert_eq!(ours, libc, "proj_id {proj}");
        }
    }

    #[test]
    fn proj_ids_equal_mod_256_collide() {
        assert_eq!(ftok_formula(3, 77, 65), ftok_formula(3, 77, 321));
        assert_eq!(ftok_formula(3, 77, 65).as_u32(), 0x4103_004d);
        assert_eq!(ftok_formula(3, 77 + 65536, 65), ftok_formula(3, 77, 65));
        assert_ne!(ftok_formula(3, 77, 65), ftok_formula(4, 77, 65));
    }

    #[test]
    fn missing_key_file_is_an_error_naming_the_path() {
        let err = Key::ftok(Path::new("/nonexistent/shmfile"), 65).unwrap_err();
        assert_eq!(err.errno, Errno::ENOENT);
        assert!(err.to_string().contains("/nonexistent/shmfile"), "{err}");
    }

    #[test]
    fn key_displays_like_ipcs() {
        assert_eq!(Key::FTOK_FAILURE.to_string(), "0xffffffff");
        assert_eq!(Key::PRIVATE.to_string(), "0x00000000");
    }

    #[test]
    fn errors_name_call_arguments_and_errno_text() {
        let e = Error {
            call: Call::Shmget {
                key: Key::from_raw(0x41),
                size: 1024,
                flags: 0o666 | libc::IPC_CREAT,
            },
            errno: Errno::EINVAL,
        };
        assert_eq!(
            e.to_string(),
            "shmget(key 0x00000041, size 1024, flags 0666|IPC_CREAT) failed: Invalid argument (EINVAL)"
        );
    }

    /// A child forked while the harness looks at a segment must not count as
    /// an attachment (the cause of a false "nattch 2" under load). Uses an
    /// IPC_PRIVATE segment, which nothing else can reach, removed at the end.
    #[test]
    fn unseen_attachments_are_not_inherited_by_fork() {
        let seg = Segment::get(Key::PRIVATE, 4096, Create::IfMissing, 0o600).unwrap();
        let nattch_with_child = |at: &dyn Fn() -> Box<dyn std::any::Any>| {
            let _held = at();
            // SAFETY: the child only sleeps and _exits (async-signal-safe).
            let child = unsafe { libc::fork() };
            if child == 0 {
                // SAFETY: see above.
                unsafe {
                    libc::usleep(300_000);
                    libc::_exit(0);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            let n = seg.stat().unwrap().nattch;
            let mut status = 0;
            // SAFETY: waits for our own child; `status` is a valid int.
            unsafe { libc::waitpid(child, &mut status, 0) };
            n
        };
        let plain = nattch_with_child(&|| Box::new(seg.attach::<ReadOnly>().unwrap()));
        let unseen = nattch_with_child(&|| Box::new(seg.attach_unseen().unwrap()));
        seg.remove().unwrap();
        assert_eq!(plain, 2, "control: a forked child inherits a plain attachment");
        assert_eq!(unseen, 1, "the child must not inherit an unseen attachment");
    }

    #[test]
    fn shared_copies_and_compares_round_trip_at_every_alignment() {
        let seg = Segment::get(Key::PRIVATE, 256, Create::IfMissing, 0o600).unwrap();
        let at = seg.attach::<ReadWrite>().unwrap();
        seg.remove().unwrap(); // destroyed at our detach
        let data: Vec<u8> = (0..=255u8).collect();
        for start in 0..9 {
            // Lengths around the 16- and 64-byte steps of the x86_64 loops.
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 31, 63, 64, 65, 100, 127, 128, 200] {
                let bytes = &data[start..start + len];
                at.write_at(start, bytes).unwrap();
                let mut back = vec![0; len];
                at.read_at(start, &mut back).unwrap();
                assert_eq!(back, bytes, "start {start} len {len}");
                assert!(at.equals_at(start, bytes).unwrap());
                for flip in [0, len / 2, len.saturating_sub(1)] {
                    if flip < len {
                        let mut other = bytes.to_vec();
                        other[flip] ^= 0xff;
                        assert!(
                            !at.equals_at(start, &other).unwrap(),
                            "start {start} len {len} flip {flip}"
                        );
                    }
                }
            }
        }
    }
}
