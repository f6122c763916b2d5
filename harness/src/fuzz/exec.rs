//! The executor: `shmconf fuzz-exec` reads a program (JSON) on stdin,
//! performs its operations in order in whatever IPC namespace it was
//! started in, and writes one JSON line for each: the result and the table
//! after it, read with SHM_INFO and SHM_STAT_ANY (so it needs no procfs and
//! runs the same inside a sandbox). A program of its own, so its
//! attachments are never inherited by a process some other thread forks,
//! and it can be started on any target.

use std::io::{BufRead, Write};

use shmconf::sysv::{self, Attachment, Create, Key, ReadOnly, ReadWrite, Segment};

use super::observe::{Hello, Observation, Outcome, SegState};
use super::program::{CreatePick, Op, Program};

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

fn errno(e: sysv::Error) -> Outcome {
    Outcome::Errno { errno: e.errno as i32 }
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
}

/// The namespace's whole table, by id.
fn table() -> Result<Vec<(i32, SegState)>, ExecError> {
    let info = sysv::shm_info().map_err(ExecError::Table)?;
    let mut rows = Vec::new();
    for index in 0..=info.max_index {
        match Segment::stat_index(index) {
            Ok((seg, stat)) => rows.push((seg.id(), state(&stat))),
            Err(e) if e.errno == sysv::Errno::EINVAL => {}
            Err(e) => return Err(ExecError::Table(e)),
        }
    }
    Ok(rows)
}

/// CAP_IPC_OWNER (bit 15) in the effective set, from /proc/self/status.
fn has_ipc_owner() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 15) != 0)
}

struct Executor {
    gets: Vec<i32>,
    atts: Vec<Option<Held>>,
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

    fn perform(&mut self, op: &Op) -> Outcome {
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
                        Outcome::Id { id: seg.id() }
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
                        Outcome::Attached
                    }
                    Err(e) => errno(e),
                }
            }
            Op::Detach { att } => match self.slot(att).and_then(Option::take) {
                None => Outcome::NotAttached,
                Some(h) => match h.detach() {
                    Ok(()) => Outcome::Done,
                    Err(e) => errno(e),
                },
            },
            Op::Write { att, offset, len, byte } => match self.slot(att).and_then(|s| s.as_ref()) {
                None => Outcome::NotAttached,
                Some(Held::ReadOnly(_)) => Outcome::ReadOnly,
                Some(Held::ReadWrite(a)) => match a.write_at(offset as usize, &vec![byte; len as usize]) {
                    Ok(()) => Outcome::Done,
                    Err(_) => Outcome::OutOfBounds,
                },
            },
            Op::Read { att, offset, len } => {
                let mut data = vec![0u8; len as usize];
                let read = match self.slot(att).and_then(|s| s.as_ref()) {
                    None => return Outcome::NotAttached,
                    Some(Held::ReadOnly(a)) => a.read_at(offset as usize, &mut data),
                    Some(Held::ReadWrite(a)) => a.read_at(offset as usize, &mut data),
                };
                match read {
                    Ok(()) => Outcome::Bytes { data },
                    Err(_) => Outcome::OutOfBounds,
                }
            }
            Op::Stat { seg } => match Segment::from_id(self.id(seg)).stat() {
                Ok(stat) => Outcome::Stat(state(&stat)),
                Err(e) => errno(e),
            },
            Op::Rmid { seg } => match Segment::from_id(self.id(seg)).remove() {
                Ok(()) => Outcome::Done,
                Err(e) => errno(e),
            },
            Op::SetMode { seg, mode } => {
                let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
                match Segment::from_id(self.id(seg)).set(uid, gid, mode) {
                    Ok(()) => Outcome::Done,
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
    line(
        &mut out,
        &Hello {
            ipc_owner: has_ipc_owner(),
        },
    )?;
    let mut executor = Executor {
        gets: Vec::new(),
        atts: Vec::new(),
    };
    for op in &program.ops {
        let outcome = executor.perform(op);
        let table = table()?;
        line(&mut out, &Observation { outcome, table })?;
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
