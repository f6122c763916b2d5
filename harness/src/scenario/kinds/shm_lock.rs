//! `shm_lock`: shmctl(2) SHM_LOCK or SHM_UNLOCK of a saved segment, then
//! IPC_STAT, from a process of ours in the step's namespace. The kernel's
//! answer is the step's: the call succeeds and the segment's mode has
//! SHM_LOCKED set (lock) or clear (unlock), or it fails with the errno the
//! step expects.

use schemars::JsonSchema;
use serde::Deserialize;
use shmconf::sysv::{Segment, SHM_DEST, SHM_LOCKED};

use super::{answer, refused, usage, KindError, Lowered, StepKind};

/// shmctl(2) SHM_LOCK (or SHM_UNLOCK) of a segment an earlier `segments`
/// step saved with `save_id`, from a process of ours in the step's
/// namespace, then IPC_STAT: the call must succeed and leave SHM_LOCKED set
/// (cleared, for unlock) in the segment's mode, or fail with
/// `expect_errno`. An unprivileged caller may lock a segment it owns or
/// created, within its RLIMIT_MEMLOCK; others get EPERM (shmctl(2)).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShmLock {
    /// The name an earlier `segments` step saved the segment's id as.
    pub id: String,
    /// SHM_UNLOCK instead of SHM_LOCK.
    #[serde(default)]
    pub unlock: bool,
    /// Make the call as this uid (and gid, the same).
    pub uid: Option<u32>,
    /// The call must fail with this errno (e.g. "EPERM"); default: it succeeds.
    pub expect_errno: Option<String>,
}

/// What shmctl(2) answers SHM_LOCK and SHM_UNLOCK with, besides success.
const ERRNOS: &[&str] = &["EFAULT", "EIDRM", "EINVAL", "ENOMEM", "EPERM"];

impl StepKind for ShmLock {
    fn lower(&self) -> Result<Lowered, KindError> {
        let mut args = vec![format!("{{{}}}", self.id)];
        if self.unlock {
            args.push("--unlock".into());
        }
        // The mode IPC_STAT shows after the call: SHM_LOCKED (02000) set
        // or clear, SHM_DEST (01000) either way.
        let ok = if self.unlock {
            "^ok mode [01][0-7]{3}\\n$"
        } else {
            "^ok mode [23][0-7]{3}\\n$"
        };
        Ok(Lowered {
            args,
            uid: self.uid,
            gid: self.uid,
            expect: answer(ok, self.expect_errno.as_deref(), ERRNOS, "SHM_LOCK")?,
        })
    }

    fn probe(args: &[String]) -> i32 {
        let (id, unlock) = match args {
            [id] => (id, false),
            [id, flag] if flag == "--unlock" => (id, true),
            _ => return usage("shm_lock", "ID [--unlock]", args),
        };
        let Ok(id) = id.parse::<i32>() else {
            return usage("shm_lock", "ID [--unlock]", args);
        };
        // An owner without CAP_IPC_LOCK may lock within RLIMIT_MEMLOCK: the
        // soft limit goes up to the hard one, so the answer is the kernel's
        // rule, not a launcher's soft limit.
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_MEMLOCK) {
            let _ = setrlimit(Resource::RLIMIT_MEMLOCK, hard, hard);
        }
        let segment = Segment::from_id(id);
        match segment.lock(!unlock).and_then(|()| segment.stat()) {
            Ok(st) => {
                println!("ok mode {:04o}", st.mode & (SHM_LOCKED | SHM_DEST | 0o777));
                0
            }
            Err(e) => refused(&e),
        }
    }
}
