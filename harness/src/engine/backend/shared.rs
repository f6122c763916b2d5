//! The shared namespace: where no namespace can be made (an unprivileged
//! container), scenarios run one at a time in the harness's own IPC
//! namespace, among whatever other programs keep there.
//!
//! The harness then judges and removes only what is provably the
//! scenario's own ([`Ownership`]): segments created by a process it started,
//! under a key it resolved or of a key file it made, or whose id it saved.
//! Anything else, before or during the scenario, is another program's: it is
//! neither judged nor touched.

use std::collections::BTreeSet;
use std::process::Command;

use shmconf::{Key, Segment};

use super::{Backend, Capabilities, SetUpError, SetupLog, SkipReason, SpawnRequest, World};
use crate::events::SegRow;
use crate::scenario::files::FileIdentity;
use crate::scenario::{IpcSysctl, Needs, Scenario, ScenarioDir};

pub struct SharedNamespace {
    pub capabilities: Capabilities,
    pub confiner: crate::engine::confine::Confiner,
}

impl Backend for SharedNamespace {
    fn name(&self) -> &'static str {
        "shared"
    }

    fn max_parallel(&self) -> Option<usize> {
        Some(1)
    }

    fn cannot_run(&self, needs: &Needs) -> Option<SkipReason> {
        let why = "this process cannot create IPC namespaces (needs root or CAP_SYS_ADMIN, e.g. docker run --cap-add SYS_ADMIN)";
        if needs.containers {
            return Some(SkipReason::NeedsContainers);
        }
        if needs.explore {
            return Some(SkipReason::Namespaces {
                needed: 2,
                why: format!("explores orders, each in a fresh IPC namespace, and {why}"),
            });
        }
        if needs.namespaces > 1 {
            return Some(SkipReason::Namespaces {
                needed: needs.namespaces,
                why: why.into(),
            });
        }
        if needs.sysctl {
            return Some(SkipReason::Sysctl(
                "only safe in an IPC namespace of the scenario's own, and this process cannot create one".into(),
            ));
        }
        if needs.drop_ns {
            return Some(SkipReason::Unsupported(
                "drops a namespace, which needs namespaces of the scenario's own".into(),
            ));
        }
        if needs.other_uid && !self.capabilities.other_uids {
            return Some(SkipReason::OtherUid);
        }
        None
    }

    fn set_up(
        &self,
        scenario: &Scenario,
        dir: &ScenarioDir,
        log: &mut dyn SetupLog,
    ) -> Result<Box<dyn World>, SetUpError> {
        // Its inode, where this kernel shows one (gVisor has no /proc/thread-self/ns).
        let inode = shmconf::ipcns::IpcNamespace::current()
            .and_then(|ns| ns.inode())
            .unwrap_or(0);
        log.namespace(crate::scenario::MAIN_NS, inode);
        let ownership = Ownership::take_baseline()?;
        // No PID namespace here: what a program leaves behind comes back
        // to the harness, which kills it at the scenario's end.
        crate::engine::confine::become_subreaper();
        let confinement = self.confiner.scenario()?;
        // The scenario's key files must not collide with a segment already
        // there: then "its" key would name another program's segment.
        for f in &scenario.files {
            let Ok(id) = dir.identity(f) else { continue };
            if let Some(row) = ownership.row_with_file_key(id)? {
                return Err(format!(
                    "the shared namespace already holds a segment with the key of {f} ({}): cannot run without a namespace of its own",
                    row.key
                )
                .into());
            }
        }
        Ok(Box::new(SharedWorld { ownership, confinement }))
    }
}

/// Which segments of a shared namespace are a scenario's own.
#[derive(Debug, Default)]
pub struct Ownership {
    baseline: BTreeSet<i32>,
    pids: BTreeSet<i32>,
    keys: BTreeSet<i32>,
    /// Low 24 bits of keys made from the scenario's key files (every proj id).
    file_keys: BTreeSet<u32>,
    ids: BTreeSet<i32>,
}

/// The shared namespace's whole table, through the oracle this machine
/// has (procfs, or shmctl where /proc/sysvipc/shm is missing).
fn whole_table() -> Result<Vec<SegRow>, String> {
    use crate::engine::oracle::OracleError;
    match crate::engine::oracle::detect()
        .0
        .table(&crate::engine::oracle::Known::default())
    {
        Ok(rows) => Ok(rows),
        // Other programs' segments we cannot read are ones we never touch.
        Err(OracleError::Unreadable { rows, .. }) => Ok(rows),
        Err(OracleError::Failed(why)) => Err(why),
    }
}

impl Ownership {
    pub fn take_baseline() -> Result<Ownership, String> {
        Ok(Ownership {
            baseline: whole_table()?.iter().map(|r| r.shmid).collect(),
            ..Ownership::default()
        })
    }

    fn row_with_file_key(&self, id: FileIdentity) -> Result<Option<SegRow>, String> {
        let low = shmconf::sysv::ftok_formula(id.dev, id.ino, 0).as_u32() & 0xff_ffff;
        Ok(whole_table()?
            .into_iter()
            .find(|r| r.raw_key != Key::PRIVATE.raw() && r.raw_key as u32 & 0xff_ffff == low))
    }

    pub fn pid(&mut self, pid: i32) {
        self.pids.insert(pid);
    }
    pub fn key(&mut self, key: i32) {
        if key != 0 {
            self.keys.insert(key);
        }
    }
    pub fn id(&mut self, shmid: i32) {
        self.ids.insert(shmid);
    }
    pub fn file(&mut self, id: FileIdentity) {
        self.file_keys
            .insert(shmconf::sysv::ftok_formula(id.dev, id.ino, 0).as_u32() & 0xff_ffff);
    }

    pub fn is_own(&mut self, row: &SegRow) -> bool {
        if self.baseline.contains(&row.shmid) {
            return false;
        }
        let key = row.raw_key;
        let own = self.ids.contains(&row.shmid)
            || row.cpid.is_some_and(|p| self.pids.contains(&p))
            || (key != 0 && (self.keys.contains(&key) || self.file_keys.contains(&(key as u32 & 0xff_ffff))));
        if own {
            self.ids.insert(row.shmid);
        }
        own
    }

    /// IPC_RMID every segment that is the scenario's own; what was removed.
    /// Remove every segment of the scenario's own: Ok what was removed,
    /// Err what could not be (a leak, which the scenario reports).
    pub fn remove_own(&mut self) -> Vec<Result<String, String>> {
        let table = match whole_table() {
            Ok(t) => t,
            Err(e) => return vec![Err(format!("cannot read the segment table to clean up: {e}"))],
        };
        let mut done = Vec::new();
        for r in table.iter().filter(|r| self.is_own(r)) {
            let seg = Segment::from_id(r.shmid);
            let result = match seg.remove() {
                Ok(()) => Ok(()),
                // Root without CAP_SYS_ADMIN (in a container) may not remove
                // another uid's segment; its owner may.
                Err(e) if e.errno == shmconf::sysv::Errno::EPERM => match r.uid {
                    Some(uid) => Segment::from_id(r.shmid).remove_as(uid),
                    None => Err(e.errno),
                },
                Err(e) if matches!(e.errno, shmconf::sysv::Errno::EINVAL | shmconf::sysv::Errno::EIDRM) => Ok(()),
                Err(e) => Err(e.errno),
            };
            done.push(match result {
                Ok(()) => Ok(r.describe()),
                Err(errno) => Err(format!(
                    "cannot remove the scenario's segment ({}): {errno}",
                    r.describe()
                )),
            });
        }
        done
    }
}

struct SharedWorld {
    ownership: Ownership,
    confinement: crate::engine::confine::ScenarioConfinement,
}

impl World for SharedWorld {
    fn enter(&mut self, _ns: &str) -> Result<(), String> {
        // One namespace, the thread's own: no setns (which would need
        // CAP_SYS_ADMIN, exactly what is missing here).
        Ok(())
    }

    fn command(&mut self, req: &SpawnRequest, dir: &ScenarioDir) -> Result<Command, String> {
        super::local::confined_command(req, dir, &self.confinement)
    }

    fn spawned(&mut self, pid: i32) {
        self.confinement.spawned(pid);
        self.ownership.pid(pid);
    }
    fn claims_key(&mut self, key: i32) {
        self.ownership.key(key);
    }
    fn claims_id(&mut self, shmid: i32) {
        self.ownership.id(shmid);
    }
    fn claims_file(&mut self, file: FileIdentity) {
        self.ownership.file(file);
    }
    fn is_own(&mut self, row: &SegRow) -> bool {
        self.ownership.is_own(row)
    }

    fn set_sysctl(&mut self, _ns: &str, _sysctl: IpcSysctl, _value: &str) -> Result<(), String> {
        Err("refused: no namespace of the scenario's own, the sysctl would change the shared one".into())
    }

    fn tear_down(&mut self) -> Vec<Result<String, String>> {
        // One scenario at a time (max_parallel 1): every orphan is its own,
        // killed before its segments are judged gone.
        let mut log = self.confinement.finish(crate::engine::confine::Orphans::All);
        log.extend(self.ownership.remove_own());
        log
    }
}
