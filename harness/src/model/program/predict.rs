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
//! - permissions (ipcperms): the owner's or creator's bits, else the
//!   group's (owner's or creator's gid), else the others'; CAP_IPC_OWNER
//!   overrides them, and holds only while the executor is the uid it
//!   started as (seteuid away from 0 clears the effective capabilities).
//! - IPC_STAT: read permission, else EACCES. IPC_RMID and IPC_SET: the
//!   owner, the creator or CAP_SYS_ADMIN, else EPERM (after the id's
//!   EINVAL); IPC_SET makes the caller the owner.
//! - IPC_RMID: unattached, destroyed at once; else marked SHM_DEST with
//!   its key reset to IPC_PRIVATE, destroyed at its last detach.
//! - a new segment's bytes are zero; a store is seen by every attachment.

use crate::sysv_ops::observe::{Hello, OpResult, SegState, OTHER_ID};
use crate::sysv_ops::{CreatePick, KeyPick, NewOwner, Op};

const EINVAL: i32 = libc::EINVAL;
const ENOENT: i32 = libc::ENOENT;
const EEXIST: i32 = libc::EEXIST;
const EACCES: i32 = libc::EACCES;
const EPERM: i32 = libc::EPERM;

/// The model's answer for one operation. Ids are the model's own segment
/// numbers; the judge binds them to the kernel's ids as they appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Predicted {
    /// A new segment, the model's number `seg`.
    NewId { seg: usize },
    /// An existing segment's id.
    SameId { seg: usize },
    /// Anything else, exactly as the executor reports it.
    Exactly(OpResult),
}

#[derive(Debug, Clone)]
struct Seg {
    state: SegState,
    content: Vec<u8>,
    alive: bool,
    /// Owner and creator (uid, gid): IPC_SET changes the owner.
    owner: (u32, u32),
    creator: (u32, u32),
}

/// The table, the program's results so far, and its attachments.
#[derive(Debug, Clone)]
pub struct Model {
    hello: Hello,
    /// The effective uid and gid now (Become switches them).
    euid: u32,
    egid: u32,
    segs: Vec<Seg>,
    /// The model segment each successful shmget returned, in order.
    gets: Vec<usize>,
    /// Each successful shmat: (segment, read-only), None once detached.
    atts: Vec<Option<(usize, bool)>>,
}

fn err(errno: i32) -> Predicted {
    Predicted::Exactly(OpResult::Errno { errno })
}

impl Model {
    pub fn new(hello: Hello) -> Model {
        Model {
            hello,
            euid: hello.uid,
            egid: hello.gid,
            segs: Vec::new(),
            gets: Vec::new(),
            atts: Vec::new(),
        }
    }

    /// The executor's capabilities hold only while it is the uid it
    /// started as (leaving uid 0 clears the effective set).
    fn capable(&self, cap: bool) -> bool {
        cap && self.euid == self.hello.uid
    }

    /// ipcperms(): the class (owner or creator, then group, then others)
    /// grants every permission asked for, or CAP_IPC_OWNER overrides.
    fn permitted(&self, s: usize, asked: u32) -> bool {
        let seg = &self.segs[s];
        let requested = ((asked >> 6) | (asked >> 3) | asked) & 0o7;
        let perms = seg.state.perms;
        let granted = if self.euid == seg.owner.0 || self.euid == seg.creator.0 {
            perms >> 6
        } else if self.egid == seg.owner.1 || self.egid == seg.creator.1 {
            perms >> 3
        } else {
            perms
        } & 0o7;
        self.capable(self.hello.ipc_owner) || requested & !granted == 0
    }

    /// ipcctl_obtain_check(): IPC_RMID and IPC_SET are for the owner, the
    /// creator, or CAP_SYS_ADMIN.
    fn may_control(&self, s: usize) -> bool {
        let seg = &self.segs[s];
        self.capable(self.hello.sys_admin) || self.euid == seg.owner.0 || self.euid == seg.creator.0
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
            owner: (self.euid, self.egid),
            creator: (self.euid, self.egid),
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
            } => self.get(key, size, create, mode),
            Op::Attach { seg, read_only } => {
                let Some(s) = self.named(seg) else {
                    return err(EINVAL);
                };
                let asked = if read_only { 0o444 } else { 0o666 };
                if !self.permitted(s, asked) {
                    return err(EACCES);
                }
                self.segs[s].state.nattch += 1;
                self.atts.push(Some((s, read_only)));
                Predicted::Exactly(OpResult::Attached)
            }
            Op::Detach { att } => {
                let Some((s, _)) = self.attachment(att) else {
                    return Predicted::Exactly(OpResult::NotAttached);
                };
                let n = self.atts.len();
                self.atts[att as usize % n] = None;
                self.detach_from(s);
                Predicted::Exactly(OpResult::Done)
            }
            Op::Write { att, offset, len, byte } => self.write(att, offset, len, byte),
            Op::Read { att, offset, len } => {
                let Some((s, _)) = self.attachment(att) else {
                    return Predicted::Exactly(OpResult::NotAttached);
                };
                let (start, end) = (offset as usize, offset as usize + len as usize);
                let content = &self.segs[s].content;
                if end > content.len() {
                    return Predicted::Exactly(OpResult::OutOfBounds);
                }
                Predicted::Exactly(OpResult::Bytes {
                    data: content[start..end].to_vec(),
                })
            }
            Op::Stat { seg } => {
                let Some(s) = self.named(seg) else {
                    return err(EINVAL);
                };
                if !self.permitted(s, 0o444) {
                    return err(EACCES);
                }
                Predicted::Exactly(OpResult::Stat(self.segs[s].state))
            }
            Op::Rmid { seg } => self.rmid(seg),
            Op::SetMode { seg, mode, owner } => self.set_mode(seg, mode, owner),
            Op::Become { other: false } => {
                // The ids it started with are its real and saved ones,
                // which any process may take again (seteuid first, so the
                // capabilities are back for setegid).
                self.euid = self.hello.uid;
                self.egid = self.hello.gid;
                Predicted::Exactly(OpResult::Done)
            }
            Op::Become { other: true } => self.become_other(),
        }
    }

    /// shmget: ipc/util.c ipcget_public (an existing key first: IPC_EXCL, the
    /// size against the segment, then permission), or a new segment.
    fn get(&mut self, key: KeyPick, size: u32, create: CreatePick, mode: u32) -> Predicted {
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
                if !self.permitted(s, mode) {
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

    /// A store through an attachment.
    fn write(&mut self, att: u8, offset: u32, len: u8, byte: u8) -> Predicted {
        let Some((s, read_only)) = self.attachment(att) else {
            return Predicted::Exactly(OpResult::NotAttached);
        };
        if read_only {
            return Predicted::Exactly(OpResult::ReadOnly);
        }
        let (start, end) = (offset as usize, offset as usize + len as usize);
        let content = &mut self.segs[s].content;
        if end > content.len() {
            return Predicted::Exactly(OpResult::OutOfBounds);
        }
        content[start..end].fill(byte);
        Predicted::Exactly(OpResult::Done)
    }

    /// IPC_RMID: destroyed now, or marked (key IPC_PRIVATE) until the last detach.
    fn rmid(&mut self, seg: u8) -> Predicted {
        let Some(s) = self.named(seg) else {
            return err(EINVAL);
        };
        if !self.may_control(s) {
            return err(EPERM);
        }
        let seg = &mut self.segs[s];
        if seg.state.nattch == 0 {
            seg.alive = false;
        } else {
            seg.state.dest = true;
            seg.state.key = 0;
        }
        Predicted::Exactly(OpResult::Done)
    }

    /// IPC_SET of the mode, the segment kept or given away.
    fn set_mode(&mut self, seg: u8, mode: u32, owner: NewOwner) -> Predicted {
        let Some(s) = self.named(seg) else {
            return err(EINVAL);
        };
        // The executor's IPC_SET (Segment::set) reads the segment
        // first (IPC_STAT, to keep what it does not change), so a
        // caller who may not read it gets that call's EACCES
        // before IPC_SET's EPERM (found by fuzzing, program 14).
        if !self.permitted(s, 0o444) {
            return err(EACCES);
        }
        if !self.may_control(s) {
            return err(EPERM);
        }
        // ipc_update_perm(): any valid uid and gid, no capability
        // needed to give a segment away; the creator stays.
        self.segs[s].owner = match owner {
            NewOwner::Caller => (self.euid, self.egid),
            NewOwner::Other => (OTHER_ID, OTHER_ID),
            NewOwner::Start => (self.hello.uid, self.hello.gid),
        };
        self.segs[s].state.perms = mode & 0o777;
        Predicted::Exactly(OpResult::Done)
    }

    /// seteuid/setegid(65534).
    fn become_other(&mut self) -> Predicted {
        // setegid, then seteuid (setresgid/setresuid in
        // kernel/sys.c): an id other than the real, effective or
        // saved one needs CAP_SETGID / CAP_SETUID; a process that
        // started as root has them in effect only while its
        // effective uid is 0 (capabilities(7)).
        let capable = self.hello.uid != 0 || self.euid == 0;
        let may = |id: u32, now: u32, start: u32, cap: bool| id == now || id == start || (cap && capable);
        if !may(OTHER_ID, self.egid, self.hello.gid, self.hello.set_gid) {
            return err(EPERM);
        }
        self.egid = OTHER_ID;
        if !may(OTHER_ID, self.euid, self.hello.uid, self.hello.set_uid) {
            return err(EPERM);
        }
        self.euid = OTHER_ID;
        Predicted::Exactly(OpResult::Done)
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
    use crate::sysv_ops::{CreatePick::*, KeyPick::*};

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
        let mut m = Model::new(Hello {
            ipc_owner: true,
            sys_admin: true,
            uid: 0,
            gid: 0,
            set_uid: true,
            set_gid: true,
        });
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
        let mut m = Model::new(Hello {
            ipc_owner: true,
            sys_admin: true,
            uid: 0,
            gid: 0,
            set_uid: true,
            set_gid: true,
        });
        m.apply(&get(Raw(1), 1024, IfMissing));
        assert_eq!(
            m.apply(&Op::Attach {
                seg: 0,
                read_only: false
            }),
            Predicted::Exactly(OpResult::Attached)
        );
        assert_eq!(m.apply(&Op::Rmid { seg: 0 }), Predicted::Exactly(OpResult::Done));
        let Predicted::Exactly(OpResult::Stat(s)) = m.apply(&Op::Stat { seg: 0 }) else {
            panic!("a marked segment is still there by id")
        };
        assert_eq!((s.key, s.dest, s.nattch), (0, true, 1));
        // Attach by id still works (Linux), the key finds nothing.
        assert_eq!(
            m.apply(&Op::Attach {
                seg: 0,
                read_only: true
            }),
            Predicted::Exactly(OpResult::Attached)
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
        let mut m = Model::new(Hello {
            ipc_owner: true,
            sys_admin: true,
            uid: 0,
            gid: 0,
            set_uid: true,
            set_gid: true,
        });
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
        assert_eq!(m.apply(&store), Predicted::Exactly(OpResult::Done));
        assert_eq!(
            m.apply(&Op::Read {
                att: 1,
                offset: 7,
                len: 3
            }),
            Predicted::Exactly(OpResult::Bytes { data: vec![0, 7, 7] })
        );
        assert_eq!(
            m.apply(&Op::Read {
                att: 1,
                offset: 8,
                len: 3
            }),
            Predicted::Exactly(OpResult::OutOfBounds)
        );
        assert_eq!(
            m.apply(&Op::Write {
                att: 1,
                offset: 0,
                len: 1,
                byte: 1
            }),
            Predicted::Exactly(OpResult::ReadOnly)
        );
    }

    #[test]
    fn without_cap_ipc_owner_the_owner_bits_decide() {
        let mut m = Model::new(Hello {
            ipc_owner: false,
            sys_admin: false,
            uid: 0,
            gid: 0,
            set_uid: true,
            set_gid: true,
        });
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
            Predicted::Exactly(OpResult::Attached)
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
        m.apply(&Op::SetMode {
            seg: 0,
            mode: 0o000,
            owner: NewOwner::Caller,
        });
        assert_eq!(m.apply(&Op::Stat { seg: 0 }), err(EACCES));
    }

    #[test]
    fn another_uid_meets_permission_bits_and_may_not_control_what_it_does_not_own() {
        let root = Hello {
            ipc_owner: true,
            sys_admin: true,
            uid: 0,
            gid: 0,
            set_uid: true,
            set_gid: true,
        };
        let mut m = Model::new(root);
        let mode = |m: &mut Model, mode: u32| {
            m.apply(&Op::Get {
                key: Raw(mode as u8),
                size: 64,
                create: Exclusive,
                mode,
            })
        };
        assert_eq!(mode(&mut m, 0o200), Predicted::NewId { seg: 0 });
        assert_eq!(mode(&mut m, 0o604), Predicted::NewId { seg: 1 });
        assert_eq!(m.apply(&Op::Become { other: true }), Predicted::Exactly(OpResult::Done));
        // Write-only for the owner, nothing for others: IPC_SET's own
        // IPC_STAT fails first; readable by others: IPC_SET is EPERM, and
        // so is IPC_RMID; IPC_STAT works through the others' read bit.
        assert_eq!(
            m.apply(&Op::SetMode {
                seg: 0,
                mode: 0o666,
                owner: NewOwner::Caller
            }),
            err(EACCES)
        );
        assert_eq!(
            m.apply(&Op::SetMode {
                seg: 1,
                mode: 0o666,
                owner: NewOwner::Caller
            }),
            err(EPERM)
        );
        assert_eq!(m.apply(&Op::Rmid { seg: 1 }), err(EPERM));
        assert!(matches!(
            m.apply(&Op::Stat { seg: 1 }),
            Predicted::Exactly(OpResult::Stat(_))
        ));
        assert_eq!(
            m.apply(&Op::Attach {
                seg: 1,
                read_only: false
            }),
            err(EACCES)
        );
        // Back as root: capabilities again.
        assert_eq!(
            m.apply(&Op::Become { other: false }),
            Predicted::Exactly(OpResult::Done)
        );
        assert_eq!(m.apply(&Op::Rmid { seg: 0 }), Predicted::Exactly(OpResult::Done));
    }

    /// setegid/seteuid to an id that is none of the process's own needs
    /// CAP_SETGID/CAP_SETUID (kernel/sys.c): without them both are EPERM
    /// and nothing changes; with only CAP_SETGID the gid changes and the
    /// uid step fails; a process that started as root has its capabilities
    /// only while its effective uid is 0.
    #[rstest::rstest]
    #[case::neither(0, false, false, Some((0, 0)))]
    #[case::only_setgid(0, false, true, Some((0, OTHER_ID)))]
    #[case::only_setuid(0, true, false, Some((0, 0)))]
    #[case::both(0, true, true, None)]
    #[case::already_that_uid(OTHER_ID, false, false, None)]
    fn switching_ids_needs_the_capabilities(
        #[case] uid: u32,
        #[case] set_uid: bool,
        #[case] set_gid: bool,
        #[case] refused_at: Option<(u32, u32)>,
    ) {
        let hello = Hello {
            ipc_owner: false,
            sys_admin: false,
            uid,
            gid: uid,
            set_uid,
            set_gid,
        };
        let mut m = Model::new(hello);
        let done = Predicted::Exactly(OpResult::Done);
        match refused_at {
            Some(ids) => {
                assert_eq!(m.apply(&Op::Become { other: true }), err(EPERM));
                assert_eq!((m.euid, m.egid), ids);
            }
            None => {
                assert_eq!(m.apply(&Op::Become { other: true }), done);
                assert_eq!((m.euid, m.egid), (OTHER_ID, OTHER_ID));
            }
        }
        // Back to its own ids is always allowed.
        assert_eq!(m.apply(&Op::Become { other: false }), done);
        assert_eq!((m.euid, m.egid), (uid, uid));
    }

    /// Linux's ipcperms() puts the creator in the owner class whoever
    /// owns the segment now, and lets the owner give it away without a
    /// capability (gVisor refuses the creator: found by fuzzing).
    #[test]
    fn the_creator_keeps_the_owners_class_after_giving_the_segment_away() {
        let root = Hello {
            ipc_owner: true,
            sys_admin: false,
            uid: 0,
            gid: 0,
            set_uid: true,
            set_gid: true,
        };
        let mut m = Model::new(root);
        let done = Predicted::Exactly(OpResult::Done);
        assert_eq!(m.apply(&Op::Become { other: true }), done);
        let get = Op::Get {
            key: Raw(0),
            size: 4096,
            create: IfMissing,
            mode: 0o600,
        };
        assert_eq!(m.apply(&get), Predicted::NewId { seg: 0 });
        let give = |owner| Op::SetMode {
            seg: 0,
            mode: 0o600,
            owner,
        };
        assert_eq!(m.apply(&give(NewOwner::Start)), done);
        assert_eq!(m.segs[0].owner, (0, 0));
        assert_eq!(m.segs[0].creator, (OTHER_ID, OTHER_ID));
        // Not the owner, still the creator: read, write, control.
        assert_eq!(
            m.apply(&Op::Attach {
                seg: 0,
                read_only: false
            }),
            Predicted::Exactly(OpResult::Attached)
        );
        assert_eq!(m.apply(&give(NewOwner::Other)), done);
        assert_eq!(m.segs[0].owner, (OTHER_ID, OTHER_ID));
        // Root without CAP_SYS_ADMIN, neither owner nor creator now: its
        // CAP_IPC_OWNER reads, but it may not control.
        assert_eq!(m.apply(&Op::Become { other: false }), done);
        assert_eq!(m.apply(&give(NewOwner::Caller)), err(EPERM));
        assert_eq!(m.apply(&Op::Rmid { seg: 0 }), err(EPERM));
    }
}
