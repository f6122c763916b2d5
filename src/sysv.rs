//! Safe wrappers over System V shared memory: `ftok`, `shmget`, `shmat`,
//! `shmdt` and `shmctl`.
//!
//! This is the only module of the project with `unsafe` code. Each call
//! becomes a typed value whose invariants make the unsafe parts sound:
//!
//! * [`Key`] is a `key_t`, made by [`Key::ftok`], [`Key::from_raw`] or
//!   [`Key::PRIVATE`]; [`ftok_formula`] is the pure formula, tested against
//!   libc's `ftok`.
//! * [`Segment`] is a shmid. It does not own the segment: SysV segments
//!   outlive processes by design, so removal is explicit ([`Segment::remove`]).
//! * [`Attachment`] is a live `shmat` mapping, detached on `Drop`. Every
//!   access is bounded by the segment's real size (`shm_segsz`), not the page
//!   size, and goes through copies: another process may write the segment at
//!   any time, so no `&[u8]`/`&mut [u8]` into it is ever handed out.
//!
//! Errors are [`Error`]: which call failed, on which key/id/size, and the
//! `Errno` (whose `Display` is the errno text).

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

pub use nix::errno::Errno;

/// `SHM_DEST` in `shm_perm.mode`: the segment is marked for destruction
/// (IPC_RMID while attached) and dies at its last detach.
pub const SHM_DEST: u32 = 0o1000;
/// `SHM_LOCKED` in `shm_perm.mode`.
pub const SHM_LOCKED: u32 = 0o2000;

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
    Shmget { key: Key, size: usize, flags: i32 },
    Shmat { id: i32, read_only: bool },
    Shmdt { id: i32 },
    IpcStat { id: i32 },
    IpcRmid { id: i32 },
    IpcSet { id: i32 },
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

    /// `shmat(id, NULL, 0 or SHM_RDONLY)`. The attachment knows the segment's
    /// real size from IPC_STAT and never reaches past it.
    pub fn attach(self, access: Access) -> Result<Attachment> {
        let read_only = access == Access::ReadOnly;
        let call = Call::Shmat { id: self.id, read_only };
        // IPC_STAT first: the mapping is page-rounded, the segment is not.
        let len = self
            .stat()
            .map_err(|e| Error {
                call: call.clone(),
                errno: e.errno,
            })?
            .size;
        let flags = if read_only { libc::SHM_RDONLY } else { 0 };
        // SAFETY: a null address lets the kernel choose a free range, so no
        // existing mapping of ours is replaced.
        let ptr = unsafe { libc::shmat(self.id, std::ptr::null(), flags) };
        if ptr as isize == -1 {
            return Err(self.error(call));
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).expect("shmat returned NULL without an error");
        Ok(Attachment {
            segment: self,
            ptr,
            len,
            read_only,
        })
    }

    fn error(self, call: Call) -> Error {
        Error {
            call,
            errno: Errno::last(),
        }
    }
}

/// Read-write or read-only attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
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

/// Writing through a read-only attachment (the kernel would SIGSEGV).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    OutOfBounds(OutOfBounds),
    ReadOnly,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::OutOfBounds(e) => e.fmt(f),
            WriteError::ReadOnly => f.write_str("the attachment is read-only (SHM_RDONLY)"),
        }
    }
}

impl std::error::Error for WriteError {}

/// A live `shmat` mapping of a segment, detached (`shmdt`) on drop.
///
/// All access copies bytes in or out, bounded by the segment's real size.
/// The memory is shared with other processes that may write it concurrently,
/// so the bytes read are a snapshot, not a borrow.
#[derive(Debug)]
pub struct Attachment {
    segment: Segment,
    ptr: NonNull<u8>,
    len: usize,
    read_only: bool,
}

impl Attachment {
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
        self.read_only
    }

    /// The mapping's address, for code (benchmarks) that must build its own
    /// synchronisation on the memory. Valid for `len()` bytes while `self` lives.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
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

    /// Copy `buf.len()` bytes from `offset` into `buf`.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> std::result::Result<(), OutOfBounds> {
        self.check(offset, buf.len())?;
        // SAFETY: bounds checked above; the mapping is valid for `self.len`
        // bytes while attached, and `buf` cannot overlap it (it is ours).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// The whole segment, copied.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0; self.len];
        self.read_at(0, &mut v).expect("whole segment is in bounds");
        v
    }

    /// The bytes before the first NUL, as C's `%s` would print them, but never
    /// past the segment's end: a segment with no NUL yields all of its bytes.
    pub fn read_c_string(&self) -> Vec<u8> {
        let mut all = self.to_vec();
        if let Some(nul) = all.iter().position(|&b| b == 0) {
            all.truncate(nul);
        }
        all
    }

    /// Copy `data` into the segment at `offset`.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> std::result::Result<(), WriteError> {
        if self.read_only {
            return Err(WriteError::ReadOnly);
        }
        self.check(offset, data.len()).map_err(WriteError::OutOfBounds)?;
        // SAFETY: bounds checked, writable mapping, `data` is ours so it cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len()) };
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

    /// The 4 bytes at `offset` as an atomic, for synchronisation between the
    /// processes that share the segment (the ring buffers of the benchmark).
    /// None when out of bounds or not 4-byte aligned. Atomics are the one sound
    /// way to share mutable memory with another process.
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
        if self.read_only {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                WriteError::ReadOnly,
            ));
        }
        // SAFETY: the range is inside the writable mapping; no Rust reference
        // to it exists, so the kernel writing into it aliases nothing.
        let n = unsafe { libc::read(fd.as_raw_fd(), self.ptr.as_ptr().add(offset).cast(), len) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// write(2) `len` bytes of the segment at `offset` to `fd` (the "one copy out").
    pub fn write_to(&self, offset: usize, len: usize, fd: &impl std::os::fd::AsRawFd) -> std::io::Result<usize> {
        self.check(offset, len)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the range is inside the mapping, which the kernel only reads.
        let n = unsafe { libc::write(fd.as_raw_fd(), self.ptr.as_ptr().add(offset).cast(), len) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Whether the segment holds exactly `expected` at `offset`, compared in
    /// place (no copy out): how a consumer checks data another process wrote.
    pub fn equals_at(&self, offset: usize, expected: &[u8]) -> std::result::Result<bool, OutOfBounds> {
        self.check(offset, expected.len())?;
        // SAFETY: the range is inside the mapping; memcmp reads through raw
        // pointers, so no Rust reference to the shared bytes is formed.
        let rc = unsafe {
            libc::memcmp(
                self.ptr.as_ptr().add(offset).cast(),
                expected.as_ptr().cast(),
                expected.len(),
            )
        };
        Ok(rc == 0)
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

impl Drop for Attachment {
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

    // Tests that create segments live in tests/sysv.rs, inside a private IPC
    // namespace; the ones here touch no SysV state.
}
