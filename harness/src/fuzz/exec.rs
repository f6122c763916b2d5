//! The executor: `shmconf fuzz-exec` reads a program (JSON) on stdin,
//! performs its operations in order in whatever IPC namespace it was
//! started in, and writes one JSON line for each: the result and the table
//! after it, read with SHM_INFO and SHM_STAT_ANY (so it needs no procfs and
//! runs the same inside a sandbox). A program of its own, so its
//! attachments are never inherited by a process some other thread forks,
//! and it can be started on any target.

use std::io::{BufRead, Write};

use shmconf::sysv::{self, Attachment, Create, Key, ReadOnly, ReadWrite, Segment};

use crate::scenario::KeptCapabilities;
use crate::sysv_ops::observe::{Hello, Listing, Observation, OpResult, SegState, OTHER_ID};
use crate::sysv_ops::{CreatePick, NewOwner, Op, Program};

/// An id no segment has (`shmat`/`shmctl` of a reference with no shmget).
const NO_ID: i32 = -1;

enum Held {
    ReadOnly(Attachment<ReadOnly>),
    ReadWrite(Attachment<ReadWrite>),
}

impl Held {
    fn detach(self) -> sysv::Result<()> {
        match self {
            Held::ReadOnly(a) => a.detach(),
            Held::ReadWrite(a) => a.detach(),
        }
    }
}

fn state(stat: &sysv::SegmentStat) -> SegState {
    SegState {
        key: stat.key.raw(),
        size: stat.size as u64,
        perms: stat.perms(),
        dest: stat.is_marked_for_destruction(),
        nattch: stat.nattch,
    }
}

fn errno(e: sysv::Error) -> OpResult {
    OpResult::Errno { errno: e.errno as i32 }
}

/// Why the executor stopped (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("stdin: {0}")]
    Stdin(std::io::Error),
    #[error("the program: {0}")]
    Program(serde_json::Error),
    #[error("the table: {0}")]
    Table(sysv::Error),
    #[error("stdout: {0}")]
    Stdout(std::io::Error),
    #[error("dropping the supplementary groups: {0}")]
    Groups(nix::Error),
    #[error("dropping capabilities: {0}")]
    Capabilities(std::io::Error),
}

/// What the executor keeps of its capabilities: CAP_IPC_OWNER (to read
/// the table by id where the kernel does not list it) and CAP_SETUID and
/// CAP_SETGID (to switch ids), as a scenario's `program` step gives it.
pub const EXECUTOR_CAPABILITIES: KeptCapabilities = KeptCapabilities {
    ipc_owner: true,
    set_ids: true,
};

/// A table by id, and the listing's shortfall where it was read by id.
type Table = (Vec<(i32, SegState)>, Option<Listing>);

/// The namespace's whole table, by id: listed by index (SHM_INFO, then
/// SHM_STAT_ANY/SHM_STAT, as `ipcs` does, so no procfs is needed), held
/// against the kernel's own count. Where the listing falls short of it or
/// is refused (a sandbox's kernel), the table is read by id instead, from
/// every id the program was given (nothing else makes segments in this
/// namespace), and the shortfall is reported with it.
fn table(known: &[i32]) -> Result<Table, ExecError> {
    let info = sysv::shm_info().map_err(ExecError::Table)?;
    let mut rows = Vec::new();
    let mut refused = None;
    for index in 0..=info.max_index {
        match Segment::stat_index(index) {
            Ok((seg, stat)) => rows.push((seg.id(), state(&stat))),
            Err(e) if e.errno == sysv::Errno::EINVAL => {}
            Err(e) => {
                refused = Some(e.errno as i32);
                break;
            }
        }
    }
    if refused.is_none() && rows.len() == usize::try_from(info.used_ids).unwrap_or(usize::MAX) {
        return Ok((rows, None));
    }
    let listing = Listing {
        counted: info.used_ids,
        listed: rows.len(),
        refused,
    };
    let mut ids: Vec<i32> = known.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut by_id = Vec::new();
    for id in ids {
        match Segment::from_id(id).stat() {
            Ok(stat) => by_id.push((id, state(&stat))),
            // Gone (destroyed), or never a valid id.
            Err(e) if matches!(e.errno, sysv::Errno::EINVAL | sysv::Errno::EIDRM) => {}
            Err(e) => return Err(ExecError::Table(e)),
        }
    }
    Ok((by_id, Some(listing)))
}

/// A capability in the effective set, from /proc/self/status
/// (CAP_IPC_OWNER is bit 15, CAP_SYS_ADMIN bit 21).
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;

/// Is capability `bit` in this thread's effective set?
fn has_capability(bit: u32) -> bool {
    shmconf::sysv::process::CapabilitySets::current().is_ok_and(|c| c.effective & (1 << bit) != 0)
}

/// Run `read` as the identity the executor started with (with its
/// capabilities), then return to the current one: the table is read the
/// same whatever uid the program has become.
fn as_start<T>(start: (u32, u32), read: impl FnOnce() -> Result<T, ExecError>) -> Result<T, ExecError> {
    let now = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    if now == start {
        return read();
    }
    let _ = become_user(false, start);
    let result = read();
    let _ = become_user(now.0 == OTHER_ID, start);
    result
}

/// Become uid and gid 65534, or the ones the executor started with: the
/// effective ids only, so it can come back (the kernel clears the
/// effective capabilities when the uid leaves 0 and restores them when it
/// comes back).
fn become_user(other: bool, start: (u32, u32)) -> OpResult {
    use nix::unistd::{setegid, seteuid, Gid, Uid};
    let result = if other {
        setegid(Gid::from_raw(OTHER_ID)).and_then(|()| seteuid(Uid::from_raw(OTHER_ID)))
    } else {
        seteuid(Uid::from_raw(start.0)).and_then(|()| setegid(Gid::from_raw(start.1)))
    };
    match result {
        Ok(()) => OpResult::Done,
        Err(e) => OpResult::Errno { errno: e as i32 },
    }
}

struct Executor {
    gets: Vec<i32>,
    atts: Vec<Option<Held>>,
    /// The effective uid and gid it started with.
    start: (u32, u32),
}

impl Executor {
    fn id(&self, seg: u8) -> i32 {
        if self.gets.is_empty() {
            NO_ID
        } else {
            self.gets[seg as usize % self.gets.len()]
        }
    }

    fn slot(&mut self, att: u8) -> Option<&mut Option<Held>> {
        let n = self.atts.len();
        if n == 0 {
            None
        } else {
            Some(&mut self.atts[att as usize % n])
        }
    }

    fn perform(&mut self, op: &Op) -> OpResult {
        match *op {
            Op::Get {
                key,
                size,
                create,
                mode,
            } => {
                let create = match create {
                    CreatePick::No => Create::No,
                    CreatePick::IfMissing => Create::IfMissing,
                    CreatePick::Exclusive => Create::Exclusive,
                };
                match Segment::get(Key::from_raw(key.raw()), size as usize, create, mode) {
                    Ok(seg) => {
                        self.gets.push(seg.id());
                        OpResult::Id { id: seg.id() }
                    }
                    Err(e) => errno(e),
                }
            }
            Op::Attach { seg, read_only } => {
                let seg = Segment::from_id(self.id(seg));
                let held = if read_only {
                    seg.attach::<ReadOnly>().map(Held::ReadOnly)
                } else {
                    seg.attach::<ReadWrite>().map(Held::ReadWrite)
                };
                match held {
                    Ok(h) => {
                        self.atts.push(Some(h));
                        OpResult::Attached
                    }
                    Err(e) => errno(e),
                }
            }
            Op::Detach { att } => match self.slot(att).and_then(Option::take) {
                None => OpResult::NotAttached,
                Some(h) => match h.detach() {
                    Ok(()) => OpResult::Done,
                    Err(e) => errno(e),
                },
            },
            Op::Write { att, offset, len, byte } => match self.slot(att).and_then(|s| s.as_ref()) {
                None => OpResult::NotAttached,
                Some(Held::ReadOnly(_)) => OpResult::ReadOnly,
                Some(Held::ReadWrite(a)) => match a.write_at(offset as usize, &vec![byte; len as usize]) {
                    Ok(()) => OpResult::Done,
                    Err(_) => OpResult::OutOfBounds,
                },
            },
            Op::Read { att, offset, len } => {
                let mut data = vec![0u8; len as usize];
                let read = match self.slot(att).and_then(|s| s.as_ref()) {
                    None => return OpResult::NotAttached,
                    Some(Held::ReadOnly(a)) => a.read_at(offset as usize, &mut data),
                    Some(Held::ReadWrite(a)) => a.read_at(offset as usize, &mut data),
                };
                match read {
                    Ok(()) => OpResult::Bytes { data },
                    Err(_) => OpResult::OutOfBounds,
                }
            }
            Op::Stat { seg } => match Segment::from_id(self.id(seg)).stat() {
                Ok(stat) => OpResult::Stat(state(&stat)),
                Err(e) => errno(e),
            },
            Op::Rmid { seg } => match Segment::from_id(self.id(seg)).remove() {
                Ok(()) => OpResult::Done,
                Err(e) => errno(e),
            },
            Op::Become { other } => become_user(other, self.start),
            Op::SetMode { seg, mode, owner } => {
                let (uid, gid) = match owner {
                    NewOwner::Caller => (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()),
                    NewOwner::Other => (OTHER_ID, OTHER_ID),
                    NewOwner::Start => self.start,
                };
                match Segment::from_id(self.id(seg)).set(uid, gid, mode) {
                    Ok(()) => OpResult::Done,
                    Err(e) => errno(e),
                }
            }
        }
    }
}

/// `shmconf fuzz-exec`: the program on stdin, observations on stdout.
pub fn serve() -> Result<(), ExecError> {
    let mut text = String::new();
    std::io::stdin().lock().read_line(&mut text).map_err(ExecError::Stdin)?;
    let program: Program = serde_json::from_str(&text).map_err(ExecError::Program)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let start = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    // As another uid the executor must be in no group of root's: its group
    // class is then its own gid alone, as the model has it. Without
    // CAP_SETGID it cannot switch at all (and a scenario's confinement has
    // dropped the supplementary groups already).
    let (set_uid, set_gid) = (has_capability(CAP_SETUID), has_capability(CAP_SETGID));
    if set_gid && !nix::unistd::getgroups().map_err(ExecError::Groups)?.is_empty() {
        nix::unistd::setgroups(&[]).map_err(ExecError::Groups)?;
    }
    // The same privileges wherever it runs (`shmconf fuzz` as root, a
    // scenario's `program` step confined): at most what a program step
    // keeps, so a divergence found by the fuzzer shows again in the
    // scenario written for it.
    shmconf::sysv::process::keep_only_capabilities(EXECUTOR_CAPABILITIES.mask()).map_err(ExecError::Capabilities)?;
    line(
        &mut out,
        &Hello {
            ipc_owner: has_capability(15),
            sys_admin: has_capability(21),
            uid: start.0,
            gid: start.1,
            set_uid,
            set_gid,
        },
    )?;
    let mut executor = Executor {
        gets: Vec::new(),
        atts: Vec::new(),
        start,
    };
    for op in &program.ops {
        let outcome = executor.perform(op);
        let (table, listing) = as_start(executor.start, || table(&executor.gets))?;
        line(
            &mut out,
            &Observation {
                outcome,
                table,
                listing,
            },
        )?;
    }
    // Detached before exit, as any exit would; the namespace's segments go
    // with the namespace.
    for held in executor.atts.into_iter().flatten() {
        let _ = held.detach();
    }
    out.flush().map_err(ExecError::Stdout)
}

/// One JSON line.
fn line<T: serde::Serialize>(out: &mut impl Write, value: &T) -> Result<(), ExecError> {
    serde_json::to_writer(&mut *out, value)
        .map_err(std::io::Error::other)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(ExecError::Stdout)
}
