//! A reference model of SysV shared memory that predicts every result of a
//! generated program, errno precedence included, and the table after it.
//! Where `model/calls.rs` takes results from the kernel and checks the
//! table they imply, this one says what the results must be. Sources:
//! Linux ipc/shm.c (`newseg`, `shm_more_checks`, `do_shmat`,
//! `do_shm_rmid`, `shm_close`/`shm_destroy`), ipc/util.c (`ipcget_public`,
//! `ipcperms`, `ipc_obtain_object_check`), shmget(2), shmat(2), shmctl(2).
//!
//! The rules, in the order the kernel applies them:
//! - shmget, IPC_PRIVATE: a new segment; size 0 is EINVAL (below SHMMIN).
//! - shmget, a key: a live segment that has it (a removed one has key 0):
//!   IPC_CREAT|IPC_EXCL is EEXIST, then a size above its size EINVAL (0
//!   asks nothing), then the permission bits asked for (EACCES, unless
//!   CAP_IPC_OWNER), else its id. No such segment: without IPC_CREAT
//!   ENOENT, size 0 EINVAL, else a new segment with the bits asked for.
//! - an id no live segment has (never made, or destroyed): EINVAL for
//!   shmat and shmctl alike.
//! - shmat: read permission (read and write without SHM_RDONLY), else
//!   EACCES; a segment removed while attached can still be attached by id
//!   (Linux; shmctl(2) NOTES).
//! - IPC_STAT: read permission, else EACCES. IPC_RMID and IPC_SET: the
//!   owner may (the executor made every segment it names).
//! - IPC_RMID: unattached, destroyed at once; else marked SHM_DEST with
//!   its key reset to IPC_PRIVATE, destroyed at its last detach.
//! - a new segment's bytes are zero; a store is seen by every attachment.

use super::observe::{Outcome, SegState};
use super::program::{CreatePick, KeyPick, Op};

const EINVAL: i32 = libc::EINVAL;
const ENOENT: i32 = libc::ENOENT;
const EEXIST: i32 = libc::EEXIST;
const EACCES: i32 = libc::EACCES;

/// The model's answer for one operation. Ids are the model's own segment
/// numbers; the judge binds them to the kernel's ids as they appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Predicted {
    /// A new segment, the model's number `seg`.
    NewId { seg: usize },
    /// An existing segment's id.
    SameId { seg: usize },
    /// Anything else, exactly as the executor reports it.
    Exactly(Outcome),
}

#[derive(Debug, Clone)]
struct Seg {
    state: SegState,
    content: Vec<u8>,
    alive: bool,
}

/// The table, the program's results so far, and its attachments.
#[derive(Debug, Clone)]
pub struct Model {
    ipc_owner: bool,
    segs: Vec<Seg>,
    /// The model segment each successful shmget returned, in order.
    gets: Vec<usize>,
    /// Each successful shmat: (segment, read-only), None once detached.
    atts: Vec<Option<(usize, bool)>>,
}

fn err(errno: i32) -> Predicted {
    Predicted::Exactly(Outcome::Errno { errno })
}

/// ipcperms() for a process that is the segment's owner and creator.
fn permitted(ipc_owner: bool, perms: u32, asked: u32) -> bool {
    let requested = ((asked >> 6) | (asked >> 3) | asked) & 0o7;
    let granted = (perms >> 6) & 0o7;
    ipc_owner || requested & !granted & 0o7 == 0
}

impl Model {
    pub fn new(ipc_owner: bool) -> Model {
        Model {
            ipc_owner,
            segs: Vec::new(),
            gets: Vec::new(),
            atts: Vec::new(),
        }
    }

    /// The live segment a `seg` reference names, if any.
    fn named(&self, seg: u8) -> Option<usize> {
        if self.gets.is_empty() {
            return None;
        }
        let s = self.gets[seg as usize % self.gets.len()];
        self.segs[s].alive.then_some(s)
    }

    /// The attachment an `att` reference names, if still attached.
    fn attachment(&self, att: u8) -> Option<(usize, bool)> {
        if self.atts.is_empty() {
            return None;
        }
        self.atts[att as usize % self.atts.len()]
    }

    fn new_segment(&mut self, key: i32, size: u32, mode: u32) -> Predicted {
        self.segs.push(Seg {
            state: SegState {
                key,
                size: u64::from(size),
                perms: mode & 0o777,
                dest: false,
                nattch: 0,
            },
            content: vec![0; size as usize],
            alive: true,
        });
        let seg = self.segs.len() - 1;
        self.gets.push(seg);
        Predicted::NewId { seg }
    }

    fn detach_from(&mut self, s: usize) {
        let seg = &mut self.segs[s];
        seg.state.nattch -= 1;
        if seg.state.nattch == 0 && seg.state.dest {
            seg.alive = false;
        }
    }

    /// Apply one operation: what it must return.
    pub fn apply(&mut self, op: &Op) -> Predicted {
        match *op {
            Op::Get {
                key,
                size,
                create,
                mode,
            } => {
                let found = match key {
                    KeyPick::Private => None,
                    k => self
                        .segs
                        .iter()
                        .position(|s| s.alive && !s.state.dest && s.state.key == k.raw()),
                };
                match found {
                    Some(s) => {
                        if create == CreatePick::Exclusive {
                            return err(EEXIST);
                        }
                        if u64::from(size) > self.segs[s].state.size {
                            return err(EINVAL);
                        }
                        if !permitted(self.ipc_owner, self.segs[s].state.perms, mode) {
                            return err(EACCES);
                        }
                        self.gets.push(s);
                        Predicted::SameId { seg: s }
                    }
                    None => {
                        if key != KeyPick::Private && create == CreatePick::No {
                            return err(ENOENT);
                        }
                        if size == 0 {
                            return err(EINVAL);
                        }
                        self.new_segment(key.raw(), size, mode)
                    }
                }
            }
            Op::Attach { seg, read_only } => {
                let Some(s) = self.named(seg) else {
                    return err(EINVAL);
                };
                let asked = if read_only { 0o444 } else { 0o666 };
                if !permitted(self.ipc_owner, self.segs[s].state.perms, asked) {
                    return err(EACCES);
                }
                self.segs[s].state.nattch += 1;
                self.atts.push(Some((s, read_only)));
                Predicted::Exactly(Outcome::Attached)
            }
            Op::Detach { att } => {
                let Some((s, _)) = self.attachment(att) else {
                    return Predicted::Exactly(Outcome::NotAttached);
                };
                let n = self.atts.len();
                self.atts[att as usize % n] = None;
                self.detach_from(s);
                Predicted::Exactly(Outcome::Done)
            }
            Op::Write { att, offset, len, byte } => {
                let Some((s, read_only)) = self.attachment(att) else {
                    return Predicted::Exactly(Outcome::NotAttached);
                };
                if read_only {
                    return Predicted::Exactly(Outcome::ReadOnly);
                }
                let (start, end) = (offset as usize, offset as usize + len as usize);
                let content = &mut self.segs[s].content;
                if end > content.len() {
                    return Predicted::Exactly(Outcome::OutOfBounds);
                }
                content[start..end].fill(byte);
                Predicted::Exactly(Outcome::Done)
            }
            Op::Read { att, offset, len } => {
                let Some((s, _)) = self.attachment(att) else {
                    return Predicted::Exactly(Outcome::NotAttached);
                };
                let (start, end) = (offset as usize, offset as usize + len as usize);
                let content = &self.segs[s].content;
                if end > content.len() {
                    return Predicted::Exactly(Outcome::OutOfBounds);
                }
                Predicted::Exactly(Outcome::Bytes {
                    data: content[start..end].to_vec(),
                })
            }
            Op::Stat { seg } => {
                let Some(s) = self.named(seg) else {
                    return err(EINVAL);
                };
                if !permitted(self.ipc_owner, self.segs[s].state.perms, 0o444) {
                    return err(EACCES);
                }
                Predicted::Exactly(Outcome::Stat(self.segs[s].state))
            }
            Op::Rmid { seg } => {
                let Some(s) = self.named(seg) else {
                    return err(EINVAL);
                };
                let seg = &mut self.segs[s];
                if seg.state.nattch == 0 {
                    seg.alive = false;
                } else {
                    seg.state.dest = true;
                    seg.state.key = 0;
                }
                Predicted::Exactly(Outcome::Done)
            }
            Op::SetMode { seg, mode } => {
                let Some(s) = self.named(seg) else {
                    return err(EINVAL);
                };
                self.segs[s].state.perms = mode & 0o777;
                Predicted::Exactly(Outcome::Done)
            }
        }
    }

    /// The live segments, by model number.
    pub fn table(&self) -> Vec<(usize, SegState)> {
        self.segs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.alive)
            .map(|(i, s)| (i, s.state))
            .collect()
    }

    /// Whether model segment `seg` is alive (an id that can be met again).
    pub fn alive(&self, seg: usize) -> bool {
        self.segs.get(seg).is_some_and(|s| s.alive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::program::{CreatePick::*, KeyPick::*};

    fn get(key: KeyPick, size: u32, create: CreatePick) -> Op {
        Op::Get {
            key,
            size,
            create,
            mode: 0o600,
        }
    }

    #[test]
    fn shmget_errors_come_in_the_kernels_order() {
        let mut m = Model::new(true);
        assert_eq!(m.apply(&get(Raw(0), 1024, No)), err(ENOENT));
        assert_eq!(m.apply(&get(Raw(0), 0, IfMissing)), err(EINVAL));
        assert_eq!(m.apply(&get(Raw(0), 1024, IfMissing)), Predicted::NewId { seg: 0 });
        // EEXIST before the size check.
        assert_eq!(m.apply(&get(Raw(0), 4096, Exclusive)), err(EEXIST));
        assert_eq!(m.apply(&get(Raw(0), 1025, IfMissing)), err(EINVAL));
        assert_eq!(m.apply(&get(Raw(0), 0, No)), Predicted::SameId { seg: 0 });
        assert_eq!(m.apply(&get(Private, 0, IfMissing)), err(EINVAL));
        assert_eq!(m.apply(&get(Private, 1, No)), Predicted::NewId { seg: 1 });
    }

    #[test]
    fn a_removed_attached_segment_loses_its_key_but_keeps_its_id() {
        let mut m = Model::new(true);
        m.apply(&get(Raw(1), 1024, IfMissing));
        assert_eq!(
            m.apply(&Op::Attach {
                seg: 0,
                read_only: false
            }),
            Predicted::Exactly(Outcome::Attached)
        );
        assert_eq!(m.apply(&Op::Rmid { seg: 0 }), Predicted::Exactly(Outcome::Done));
        let Predicted::Exactly(Outcome::Stat(s)) = m.apply(&Op::Stat { seg: 0 }) else {
            panic!("a marked segment is still there by id")
        };
        assert_eq!((s.key, s.dest, s.nattch), (0, true, 1));
        // Attach by id still works (Linux), the key finds nothing.
        assert_eq!(
            m.apply(&Op::Attach {
                seg: 0,
                read_only: true
            }),
            Predicted::Exactly(Outcome::Attached)
        );
        assert_eq!(m.apply(&get(Raw(1), 1024, No)), err(ENOENT));
        m.apply(&Op::Detach { att: 0 });
        assert_eq!(m.table().len(), 1);
        m.apply(&Op::Detach { att: 1 });
        assert!(m.table().is_empty(), "destroyed at the last detach");
        assert_eq!(m.apply(&Op::Stat { seg: 0 }), err(EINVAL));
    }

    #[test]
    fn stores_are_seen_through_every_attachment_and_bounded_by_the_size() {
        let mut m = Model::new(true);
        m.apply(&get(Raw(2), 10, IfMissing));
        m.apply(&Op::Attach {
            seg: 0,
            read_only: false,
        });
        m.apply(&Op::Attach {
            seg: 0,
            read_only: true,
        });
        let store = Op::Write {
            att: 0,
            offset: 8,
            len: 2,
            byte: 7,
        };
        assert_eq!(m.apply(&store), Predicted::Exactly(Outcome::Done));
        assert_eq!(
            m.apply(&Op::Read {
                att: 1,
                offset: 7,
                len: 3
            }),
            Predicted::Exactly(Outcome::Bytes { data: vec![0, 7, 7] })
        );
        assert_eq!(
            m.apply(&Op::Read {
                att: 1,
                offset: 8,
                len: 3
            }),
            Predicted::Exactly(Outcome::OutOfBounds)
        );
        assert_eq!(
            m.apply(&Op::Write {
                att: 1,
                offset: 0,
                len: 1,
                byte: 1
            }),
            Predicted::Exactly(Outcome::ReadOnly)
        );
    }

    #[test]
    fn without_cap_ipc_owner_the_owner_bits_decide() {
        let mut m = Model::new(false);
        m.apply(&Op::Get {
            key: Raw(0),
            size: 64,
            create: IfMissing,
            mode: 0o400,
        });
        assert_eq!(
            m.apply(&Op::Attach {
                seg: 0,
                read_only: false
            }),
            err(EACCES)
        );
        assert_eq!(
            m.apply(&Op::Attach {
                seg: 0,
                read_only: true
            }),
            Predicted::Exactly(Outcome::Attached)
        );
        assert_eq!(
            m.apply(&Op::Get {
                key: Raw(0),
                size: 0,
                create: No,
                mode: 0o600
            }),
            err(EACCES)
        );
        m.apply(&Op::SetMode { seg: 0, mode: 0o000 });
        assert_eq!(m.apply(&Op::Stat { seg: 0 }), err(EACCES));
    }
}
