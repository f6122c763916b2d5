//! The system calls a traced program is stopped before, as the log, the
//! model and the timeline name them (decoded from registers by the tracer,
//! `engine::trace`).

/// The call a role is stopped before, decoded from its registers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum TracedCall {
    /// Not started yet: stopped at its exec.
    Start,
    ShmGet {
        key: i32,
        size: u64,
        flags: i32,
    },
    ShmAt {
        id: i32,
    },
    ShmDt {
        addr: u64,
    },
    ShmCtl {
        id: i32,
        cmd: i32,
    },
    /// read or readv of fd 0.
    ReadStdin,
    /// write or writev of fd 1 or 2.
    Write {
        fd: i32,
        len: u64,
    },
    Exit {
        code: i32,
    },
}

impl TracedCall {
    /// As the timeline and the order labels show it.
    pub fn describe(&self) -> String {
        match self {
            TracedCall::Start => "start".into(),
            TracedCall::ShmGet { key, size, flags } => {
                format!("shmget({:#x}, {size}, {:#o})", *key as u32, flags)
            }
            TracedCall::ShmAt { id } => format!("shmat({id})"),
            TracedCall::ShmDt { addr } => format!("shmdt({addr:#x})"),
            TracedCall::ShmCtl { id, cmd } => match *cmd {
                libc::IPC_RMID => format!("shmctl({id}, IPC_RMID)"),
                libc::IPC_STAT => format!("shmctl({id}, IPC_STAT)"),
                c => format!("shmctl({id}, {c})"),
            },
            TracedCall::ReadStdin => "read(0)".into(),
            TracedCall::Write { fd, len } => format!("write({fd}, {len} bytes)"),
            TracedCall::Exit { code } => format!("exit({code})"),
        }
    }

    /// What it returned, as a timeline shows it after the call (" = 0",
    /// " = 0x7f...", " = -1 EINVAL"); empty when not known.
    pub fn describe_result(&self, result: Option<i64>) -> String {
        match (result, self) {
            (Some(r), _) if r < 0 => format!(" = -1 {}", nix::errno::Errno::from_raw((-r) as i32)),
            (Some(r), TracedCall::ShmAt { .. }) => format!(" = {r:#x}"),
            (Some(r), _) => format!(" = {r}"),
            (None, _) => String::new(),
        }
    }

    /// What the call does to the segment table: None (not a table call),
    /// Some(false) it only reads it (IPC_STAT, SHM_STAT, a lookup without
    /// IPC_CREAT), Some(true) it may change it (a creation, an attach or
    /// detach, a removal). Reads of the table commute with each other.
    pub fn table_access(&self) -> Option<bool> {
        const STATS: [i32; 4] = [libc::IPC_STAT, 13, 14, 15]; // SHM_STAT, SHM_INFO, SHM_STAT_ANY
        match self {
            TracedCall::ShmGet { flags, .. } => Some(flags & libc::IPC_CREAT != 0),
            TracedCall::ShmCtl { cmd, .. } => Some(!STATS.contains(cmd)),
            TracedCall::ShmAt { .. } | TracedCall::ShmDt { .. } => Some(true),
            _ => None,
        }
    }
}
