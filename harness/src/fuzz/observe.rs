//! What the executor reports: each operation's result and the segment
//! table after it, as the kernel gave them (one JSON line each).

use serde::{Deserialize, Serialize};

/// One operation's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
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

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Id { id } => write!(f, "id {id}"),
            Outcome::Attached => write!(f, "attached"),
            Outcome::Done => write!(f, "0"),
            Outcome::Stat(s) => write!(f, "{s}"),
            Outcome::Bytes { data } => write!(f, "bytes {}", crate::events::escape_short(data, 48)),
            Outcome::Errno { errno } => write!(f, "{:?}", nix::errno::Errno::from_raw(*errno)),
            Outcome::OutOfBounds => write!(f, "out of the segment's bounds (not made)"),
            Outcome::NotAttached => write!(f, "no such attachment (nothing done)"),
            Outcome::ReadOnly => write!(f, "read-only attachment (not stored)"),
        }
    }
}

/// The executor's first line: what decides permission checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// CAP_IPC_OWNER in the executor's effective set: permission bits are
    /// not checked.
    pub ipc_owner: bool,
}

/// After each operation: its result and the whole table (id, state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub outcome: Outcome,
    pub table: Vec<(i32, SegState)>,
}
