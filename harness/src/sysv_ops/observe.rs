//! What the executor reports: each operation's result and the segment
//! table after it, as the kernel gave them (one JSON line each).

use serde::{Deserialize, Serialize};

/// One operation's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum OpResult {
    /// `shmget` returned this id.
    Id { id: i32 },
    /// `shmat` succeeded.
    Attached,
    /// `shmdt`, IPC_RMID, IPC_SET or a store succeeded.
    Done,
    /// IPC_STAT: what the model can also say.
    Stat(SegState),
    /// A load's bytes.
    Bytes { data: Vec<u8> },
    /// The call failed with this errno.
    Errno { errno: i32 },
    /// A load or store past the segment's size: not made (the attachment
    /// is bounded by the segment's size, as every access of ours is).
    OutOfBounds,
    /// The attachment named is gone (or none was made): nothing done.
    NotAttached,
    /// A store through a read-only attachment: not made (it would be a
    /// SIGSEGV).
    ReadOnly,
}

/// A segment as both the kernel (IPC_STAT, SHM_STAT_ANY) and the model say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegState {
    pub key: i32,
    pub size: u64,
    pub perms: u32,
    /// SHM_DEST: removed while attached.
    pub dest: bool,
    pub nattch: u64,
}

impl std::fmt::Display for SegState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key {:#010x} size {} perms {:03o} nattch {}{}",
            self.key as u32,
            self.size,
            self.perms,
            self.nattch,
            if self.dest { " dest" } else { "" }
        )
    }
}

impl std::fmt::Display for OpResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpResult::Id { id } => write!(f, "id {id}"),
            OpResult::Attached => write!(f, "attached"),
            OpResult::Done => write!(f, "0"),
            OpResult::Stat(s) => write!(f, "{s}"),
            OpResult::Bytes { data } => write!(f, "bytes {}", crate::events::escape_short(data, 48)),
            OpResult::Errno { errno } => write!(f, "{:?}", nix::errno::Errno::from_raw(*errno)),
            OpResult::OutOfBounds => write!(f, "out of the segment's bounds (not made)"),
            OpResult::NotAttached => write!(f, "no such attachment (nothing done)"),
            OpResult::ReadOnly => write!(f, "read-only attachment (not stored)"),
        }
    }
}

/// The kind of an answer: what the fuzzer's coverage counts and what tells
/// one kind of divergence from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Answer {
    Id,
    Attached,
    /// 0: the call succeeded.
    Done,
    Stat,
    StatOfRemoved,
    BytesStoredEarlier,
    ZeroBytes,
    OutOfBounds,
    NotAttached,
    ReadOnly,
    Errno(i32),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Answer::Id => "id",
            Answer::Attached => "attached",
            Answer::Done => "0",
            Answer::Stat => "stat",
            Answer::StatOfRemoved => "stat of a removed segment",
            Answer::BytesStoredEarlier => "bytes stored earlier",
            Answer::ZeroBytes => "zero bytes",
            Answer::OutOfBounds => "out of bounds",
            Answer::NotAttached => "no such attachment",
            Answer::ReadOnly => "read-only attachment",
            Answer::Errno(e) => return write!(f, "{:?}", nix::errno::Errno::from_raw(*e)),
        })
    }
}

impl Answer {
    /// The answers that are not an errno, as they are written.
    pub const NAMED: &'static [Answer] = &[
        Answer::Id,
        Answer::Attached,
        Answer::Done,
        Answer::Stat,
        Answer::StatOfRemoved,
        Answer::BytesStoredEarlier,
        Answer::ZeroBytes,
        Answer::OutOfBounds,
        Answer::NotAttached,
        Answer::ReadOnly,
    ];

    /// The answer `Display` writes as `text` (an errno by its name).
    pub fn named(text: &str) -> Option<Answer> {
        Answer::NAMED
            .iter()
            .copied()
            .chain((1..=133).map(Answer::Errno))
            .find(|a| {
                !matches!(a, Answer::Errno(e) if nix::errno::Errno::from_raw(*e) == nix::errno::Errno::UnknownErrno)
                    && a.to_string() == text
            })
    }
}

impl OpResult {
    /// Its kind.
    pub fn answer(&self) -> Answer {
        match self {
            OpResult::Id { .. } => Answer::Id,
            OpResult::Attached => Answer::Attached,
            OpResult::Done => Answer::Done,
            OpResult::Stat(s) if s.dest => Answer::StatOfRemoved,
            OpResult::Stat(_) => Answer::Stat,
            OpResult::Bytes { data } if data.iter().any(|b| *b != 0) => Answer::BytesStoredEarlier,
            OpResult::Bytes { .. } => Answer::ZeroBytes,
            OpResult::OutOfBounds => Answer::OutOfBounds,
            OpResult::NotAttached => Answer::NotAttached,
            OpResult::ReadOnly => Answer::ReadOnly,
            OpResult::Errno { errno } => Answer::Errno(*errno),
        }
    }
}

/// A kernel whose listing of its segments (SHM_STAT_ANY / SHM_STAT by
/// index, what `ipcs` uses) disagrees with its own count (SHM_INFO) or is
/// refused: the table was then read by id instead (IPC_STAT of every id the
/// program was given: complete, since nothing else makes segments in the
/// executor's namespace). Linux always lists what it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// SHM_INFO's used_ids.
    pub counted: i32,
    /// Segments SHM_STAT(_ANY) listed by index.
    pub listed: usize,
    /// The errno a listing call failed with (other than an unused slot's EINVAL).
    pub refused: Option<i32>,
}

impl std::fmt::Display for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SHM_INFO counts {} segment{}, SHM_STAT_ANY/SHM_STAT by index list {}",
            self.counted,
            if self.counted == 1 { "" } else { "s" },
            self.listed
        )?;
        if let Some(e) = self.refused {
            write!(f, " (refused: {:?})", nix::errno::Errno::from_raw(e))?;
        }
        Ok(())
    }
}

/// The executor's first line: what decides permission checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// CAP_IPC_OWNER in the executor's effective set: permission bits are
    /// not checked.
    pub ipc_owner: bool,
    /// CAP_SYS_ADMIN: IPC_RMID and IPC_SET of segments it does not own.
    #[serde(default)]
    pub sys_admin: bool,
    /// The effective uid and gid it started with (what "become back"
    /// returns to; its capabilities hold only as that uid).
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    /// CAP_SETUID and CAP_SETGID: it may take another effective uid and
    /// gid (a scenario's program step keeps them only when it switches).
    #[serde(default)]
    pub set_uid: bool,
    #[serde(default)]
    pub set_gid: bool,
}

/// The uid and gid a program becomes with "become other".
pub const OTHER_ID: u32 = 65534;

/// After each operation: its result and the whole table (id, state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub outcome: OpResult,
    pub table: Vec<(i32, SegState)>,
    /// Set when the kernel's listing disagreed with its count; `table` was
    /// then read by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<Listing>,
}
