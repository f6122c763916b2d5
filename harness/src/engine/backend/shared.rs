//! The shared namespace: where no namespace can be made (an unprivileged
//! container), scenarios run one at a time in the harness's own IPC
//! namespace, among whatever other programs keep there.
//!
//! The harness then judges and removes only what is provably the
//! scenario's own ([`Ownership`]), by provenance, never by key: a segment
//! made by a process of the scenario or one of its descendants, or whose id
//! the scenario saved from its own segment. Where a PID namespace can be
//! made (root choosing `--isolation shared`), the scenario's processes run
//! in one, and the kernel itself says which segments they made: `shmctl`
//! translates a segment's creator into the caller's PID namespace, 0 for a
//! process outside it, even after the creator is gone (a helper a program
//! ran through `sh -c` and that exited at once). Without one, a creator is
//! the scenario's when it is a process the scenario started or a live
//! descendant of one (its parent chain, or its process group); a segment
//! whose creator is gone and was never seen is not provably the scenario's
//! and is left alone. Anything else, made before or during the scenario, is
//! another program's: neither judged nor touched.
//!
//! Two shmconf runs in one shared namespace take turns per scenario
//! ([`SharedLock`]): otherwise one's segment under a raw key would be found
//! by the other's programs (which then meet it, not one of their own).

use shmconf::sysv::spawn::Launch;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use shmconf::{Key, Segment};

use super::{Backend, Capabilities, Features, SetUpError, SetupLog, SkipReason, SpawnRequest, World, WorldError};
use crate::engine::oracle::ReadError;
use crate::engine::procs::{PidNamespace, Proc, WaitOutcome};
use crate::events::{Ending, SegRow};
use crate::scenario::files::FileIdentity;
use crate::scenario::{Feature, IpcSysctl, Scenario, ScenarioDir};

/// Why a scenario cannot run (or clean up) in the shared namespace.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("cannot name the shared namespace's lock: {0}")]
    LockName(#[source] std::io::Error),
    #[error("cannot take the shared namespace's lock (@{name}): {source}")]
    Lock {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// A signal to the harness ended the wait for the lock.
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// Another shmconf run held the lock past the wait (a SKIP).
    #[error(
        "another process holds the shared IPC namespace (@{name}) and did not let go: its scenarios and this one would meet under the same keys"
    )]
    LockHeld { name: String },
    /// Another program's segment has the key of a scenario's key file (a SKIP).
    #[error(
        "the shared namespace already holds another program's segment with the key of {file} ({key}, id {shmid}): it needs a namespace of its own"
    )]
    FileKeyTaken { file: String, key: String, shmid: i32 },
    /// A program step needs an empty table and others' segments are there
    /// (a SKIP): `ids`, the first few of the `count`.
    #[error(
        "a program step is judged by a model that starts from an empty table, and the shared namespace holds {count} segment{} of other programs (id {}{}): it needs a namespace of its own",
        if *.count == 1 { "" } else { "s" },
        .ids.iter().map(i32::to_string).collect::<Vec<_>>().join(", "),
        if *.count > .ids.len() { ", ..." } else { "" }
    )]
    NotEmpty { count: usize, ids: Vec<i32> },
    /// Another program's segment is under a raw key the scenario uses (a SKIP).
    #[error(
        "the shared namespace already holds another program's segment under key {key} (id {shmid}), which the scenario uses: it needs a namespace of its own"
    )]
    RawKeyTaken { key: String, shmid: i32 },
    /// At the end, the scenario's PID namespace could not say what it made.
    #[error("cannot tell which segments are the scenario's: {0}")]
    Creators(#[source] CreatorsError),
    #[error("cannot read the segment table to clean up: {0}")]
    CleanUpTable(#[source] ReadError),
    /// A segment of the scenario's stays (`segment`: the row in words).
    #[error("cannot remove the scenario's segment ({segment}): {errno}")]
    Remove {
        segment: String,
        #[source]
        errno: shmconf::sysv::Errno,
    },
    #[error("refused: no namespace of the scenario's own, the sysctl would change the shared one")]
    SysctlRefused,
}

/// What another program holds in the shared namespace is a SKIP (the
/// scenario needs a namespace of its own); the rest is BROKEN.
impl From<SharedError> for SetUpError {
    fn from(e: SharedError) -> SetUpError {
        match e {
            SharedError::LockHeld { .. }
            | SharedError::FileKeyTaken { .. }
            | SharedError::NotEmpty { .. }
            | SharedError::RawKeyTaken { .. } => SetUpError::Unavailable(Box::new(e)),
            _ => SetUpError::Broken(Box::new(e)),
        }
    }
}

/// Why `shmconf kernel-view creators` in the scenario's PID namespace gave
/// no answer.
#[derive(Debug, thiserror::Error)]
pub enum CreatorsError {
    #[error("cannot start shmconf kernel-view in the scenario's PID namespace: {0}")]
    Start(#[source] std::io::Error),
    #[error("shmconf kernel-view creators took longer than {} s", CREATORS_LIMIT.as_secs())]
    TimedOut,
    #[error(transparent)]
    Interrupted(#[from] crate::interrupt::Interrupted),
    /// It ended in failure (`said`: its stderr).
    #[error("shmconf kernel-view creators: {ending}: {said}")]
    Failed { ending: Ending, said: String },
    #[error("shmconf kernel-view creators printed no list: {0}")]
    NoList(#[source] serde_json::Error),
}

pub struct SharedNamespace {
    pub capabilities: Capabilities,
    /// `shmconf pid-init`, whose binary also answers `kernel-view creators`;
    /// none: no PID namespace (provenance by process ancestry alone).
    pub pid_init: Option<Vec<String>>,
    pub confiner: crate::engine::confine::Confiner,
}

/// How long a scenario waits for another shmconf run's scenario in the same
/// shared namespace to end (longer than any scenario's default limit).
const LOCK_WAIT: Duration = Duration::from_secs(120);

/// A wait for the lock has run out in this run.
static LOCK_GIVEN_UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Backend for SharedNamespace {
    fn name(&self) -> &'static str {
        "shared"
    }

    fn max_parallel(&self) -> Option<usize> {
        Some(1)
    }

    fn features(&self) -> Features {
        let why = "this process cannot create IPC namespaces (needs root or CAP_SYS_ADMIN, e.g. docker run --cap-add SYS_ADMIN)";
        Features::all()
            .without(Feature::Containers, SkipReason::NeedsContainers)
            .without(
                Feature::Explore,
                SkipReason::Namespaces {
                    needed: 2,
                    why: format!("explores orders, each in a fresh IPC namespace, and {why}"),
                },
            )
            .without(
                Feature::SeveralNamespaces,
                SkipReason::Namespaces {
                    needed: 2,
                    why: why.into(),
                },
            )
            .without(
                Feature::Sysctl,
                SkipReason::Sysctl(
                    "only safe in an IPC namespace of the scenario's own, and this process cannot create one".into(),
                ),
            )
            .without(
                Feature::DropNamespace,
                SkipReason::Unsupported("drops a namespace, which needs namespaces of the scenario's own".into()),
            )
            .without_if(!self.capabilities.other_uids, Feature::OtherUid, || {
                SkipReason::OtherUid
            })
            .without_if(!self.capabilities.set_ids, Feature::SetIds, || {
                SkipReason::SetIds("this process does not hold them to pass on".into())
            })
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
        // Once a wait has run out (a holder that does not let go), later
        // scenarios of this run do not each wait that long again.
        let wait = if LOCK_GIVEN_UP.load(std::sync::atomic::Ordering::SeqCst) {
            Duration::from_secs(1)
        } else {
            LOCK_WAIT
        };
        let lock = SharedLock::acquire(inode, Instant::now() + wait).inspect_err(|e| {
            if matches!(e, SharedError::LockHeld { .. }) {
                LOCK_GIVEN_UP.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        })?;
        let ownership = Ownership::take_baseline()?;
        let mut confinement = self.confiner.scenario()?;
        // The scenario's key files must not collide with a segment already
        // there: then "its" key would name another program's segment.
        for f in &scenario.files {
            let Ok(id) = dir.identity(f) else { continue };
            if let Some(row) = row_with_file_key(id)? {
                return Err(SharedError::FileKeyTaken {
                    file: f.to_string(),
                    key: row.key,
                    shmid: row.shmid,
                }
                .into());
            }
        }
        // Likewise a raw key the scenario checks: its programs would meet
        // (and write into) the other program's segment under it.
        let table = whole_table()?;
        // A program step's model starts from an empty table: it runs here
        // only while no other program's segment is (a fresh sandbox's or
        // container's namespace), else it would judge the neighbours too.
        if scenario.needs().fresh_namespace && !table.is_empty() {
            return Err(SharedError::NotEmpty {
                count: table.len(),
                ids: table.iter().take(8).map(|r| r.shmid).collect(),
            }
            .into());
        }
        for key in raw_keys(scenario) {
            if let Some(row) = table.iter().find(|r| r.raw_key == key) {
                return Err(SharedError::RawKeyTaken {
                    key: row.key.clone(),
                    shmid: row.shmid,
                }
                .into());
            }
        }
        let pids = match &self.pid_init {
            Some(init) => match super::local::start_pid_init(Some(init), dir)? {
                Some((init_proc, ns, mount_ns)) => {
                    if mount_ns {
                        confinement.set_mount_namespace(init_proc.pid)?;
                    }
                    Some(ScenarioPids {
                        init: init_proc,
                        ns,
                        harness: init[0].clone(),
                        creators: BTreeMap::new(),
                        closed: false,
                    })
                }
                None => None,
            },
            None => None,
        };
        if pids.is_none() {
            // No PID namespace: what a program leaves behind comes back to
            // the harness, which kills it at the scenario's end.
            crate::engine::confine::become_subreaper();
        }
        Ok(Box::new(SharedWorld {
            ownership,
            confinement,
            pids,
            _lock: lock,
        }))
    }
}

/// The raw keys (not IPC_PRIVATE) the scenario's checks and barriers name.
fn raw_keys(scenario: &Scenario) -> BTreeSet<i32> {
    use crate::scenario::{Action, Body, KeySpec, WaitFor};
    let Body::Steps(steps) = &scenario.body else {
        return BTreeSet::new();
    };
    let mut keys = BTreeSet::new();
    for step in steps {
        match &step.action {
            Action::Segments(check) => keys.extend(check.expect.iter().filter_map(|e| match e.key {
                KeySpec::Raw(k) if k != 0 => Some(k),
                _ => None,
            })),
            Action::Wait {
                until: WaitFor::Attached(KeySpec::Raw(k)),
                ..
            } if *k != 0 => {
                keys.insert(*k);
            }
            _ => {}
        }
    }
    keys
}

/// One shmconf scenario at a time in a shared IPC namespace, across every
/// shmconf process: an abstract socket named after the namespace, which the
/// kernel releases when its holder exits however it ends (no file to leave
/// behind, nothing to sweep).
pub struct SharedLock {
    _socket: std::os::unix::net::UnixListener,
}

impl SharedLock {
    pub fn acquire(ipc_ns_inode: u64, deadline: Instant) -> Result<SharedLock, SharedError> {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("shmconf-shared-ipc-{ipc_ns_inode}");
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).map_err(SharedError::LockName)?;
        loop {
            match std::os::unix::net::UnixListener::bind_addr(&addr) {
                Ok(socket) => return Ok(SharedLock { _socket: socket }),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
                Err(source) => return Err(SharedError::Lock { name, source }),
            }
            if crate::interrupt::interrupted() {
                return Err(crate::interrupt::Interrupted::now().into());
            }
            if Instant::now() >= deadline {
                return Err(SharedError::LockHeld { name });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Which segments of a shared namespace are a scenario's own, as decided so
/// far: a decision stays (a segment judged own stays own after IPC_RMID
/// resets its key or its creator is gone).
#[derive(Debug, Default)]
pub struct Ownership {
    baseline: BTreeSet<i32>,
    /// Processes the scenario started (each leads a process group).
    pids: BTreeSet<i32>,
    own: BTreeSet<i32>,
    /// Judged another program's, with the creator seen then (an id the
    /// kernel reuses for a segment of another creator is judged afresh).
    foreign: BTreeSet<(i32, i32)>,
    /// Keys the scenario resolved, and low 24 bits of keys of its key files
    /// (every proj id): only for [`Ownership::is_own_by_key`].
    keys: BTreeSet<i32>,
    file_keys: BTreeSet<u32>,
}

/// The shared namespace's whole table, through the oracle this machine
/// has (procfs, or shmctl where /proc/sysvipc/shm is missing).
fn whole_table() -> Result<Vec<SegRow>, ReadError> {
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

fn row_with_file_key(id: FileIdentity) -> Result<Option<SegRow>, ReadError> {
    let low = shmconf::sysv::ftok_formula(id.dev, id.ino, 0).as_u32() & 0xff_ffff;
    Ok(whole_table()?
        .into_iter()
        .find(|r| r.raw_key != Key::PRIVATE.raw() && r.raw_key as u32 & 0xff_ffff == low))
}

impl Ownership {
    pub fn take_baseline() -> Result<Ownership, ReadError> {
        Ok(Ownership {
            baseline: whole_table()?.iter().map(|r| r.shmid).collect(),
            ..Ownership::default()
        })
    }

    pub fn pid(&mut self, pid: i32) {
        self.pids.insert(pid);
    }

    /// A segment id the scenario took from one of its own segments.
    pub fn id(&mut self, shmid: i32) {
        self.own.insert(shmid);
    }

    pub fn key(&mut self, key: i32) {
        if key != 0 {
            self.keys.insert(key);
        }
    }

    pub fn file(&mut self, id: FileIdentity) {
        self.file_keys
            .insert(shmconf::sysv::ftok_formula(id.dev, id.ino, 0).as_u32() & 0xff_ffff);
    }

    /// The containers backend's `host` mode, whose creators run inside
    /// containers (their pids are not ones the harness started, and it has
    /// no view of their descendants): a segment made by a process it
    /// started, under a key it resolved or of one of its key files, or whose
    /// id it saved. Weaker than provenance, hence serialised by that
    /// backend against its own scenarios.
    pub fn is_own_by_key(&mut self, row: &SegRow) -> bool {
        if let Some(decided) = self.decided(row) {
            return decided;
        }
        let key = row.raw_key;
        let own = row.cpid.is_some_and(|p| self.pids.contains(&p))
            || (key != 0 && (self.keys.contains(&key) || self.file_keys.contains(&(key as u32 & 0xff_ffff))));
        if own {
            self.own.insert(row.shmid);
        }
        own
    }

    /// Remove every segment of the scenario's own (by [`Ownership::is_own_by_key`]).
    pub fn remove_own_by_key(&mut self) -> Vec<Result<String, SharedError>> {
        match whole_table() {
            Ok(table) => {
                let own: Vec<SegRow> = table.into_iter().filter(|r| self.is_own_by_key(r)).collect();
                Ownership::remove(&own)
            }
            Err(e) => vec![Err(SharedError::CleanUpTable(e))],
        }
    }

    /// What is already decided about `row`: there before the scenario, or judged.
    fn decided(&self, row: &SegRow) -> Option<bool> {
        if self.baseline.contains(&row.shmid) {
            return Some(false);
        }
        if self.own.contains(&row.shmid) {
            return Some(true);
        }
        let creator = row.cpid.unwrap_or(0);
        self.foreign.contains(&(row.shmid, creator)).then_some(false)
    }

    fn record(&mut self, row: &SegRow, own: bool) {
        if own {
            self.own.insert(row.shmid);
        } else {
            self.foreign.insert((row.shmid, row.cpid.unwrap_or(0)));
        }
    }

    /// Is live process `pid` one the scenario started or a descendant of
    /// one (by its parent chain, or by the process group it inherited)?
    /// None where /proc has no such process (gone, or never ours to see).
    fn descends_from_scenario(&self, pid: i32) -> Option<bool> {
        let (_, pgrp) = parent_and_group(pid)?;
        if self.pids.contains(&pgrp) {
            return Some(true);
        }
        let mut at = pid;
        for _ in 0..4096 {
            if self.pids.contains(&at) {
                return Some(true);
            }
            match parent_and_group(at) {
                Some((parent, _)) if parent > 1 => at = parent,
                _ => return Some(false),
            }
        }
        Some(false)
    }

    /// IPC_RMID `rows` (the scenario's own): Ok what was removed, Err what
    /// could not be (a leak, which the scenario reports).
    fn remove(rows: &[SegRow]) -> Vec<Result<String, SharedError>> {
        let mut done = Vec::new();
        for r in rows {
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
                Err(errno) => Err(SharedError::Remove {
                    segment: r.describe(),
                    errno,
                }),
            });
        }
        done
    }
}

/// Parent pid and process group of a live (not zombie) process.
fn parent_and_group(pid: i32) -> Option<(i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" of the command: state ppid pgrp ...
    let rest = stat.rsplit_once(')')?.1;
    let mut f = rest.split_whitespace();
    let state = f.next()?;
    let parent = f.next()?.parse().ok()?;
    let group = f.next()?.parse().ok()?;
    (state != "Z").then_some((parent, group))
}

/// The scenario's PID namespace, asked which segments its processes made.
struct ScenarioPids {
    init: Proc,
    ns: PidNamespace,
    /// The shmconf binary, which serves `kernel-view creators`.
    harness: String,
    /// The last answer: shmid -> creator as seen inside (0: made outside).
    creators: BTreeMap<i32, i32>,
    /// Its init is gone: nothing can be started in it any more.
    closed: bool,
}

/// Longest a `kernel-view creators` inside the namespace may take.
const CREATORS_LIMIT: Duration = Duration::from_secs(10);

impl ScenarioPids {
    /// Did a process of the namespace make segment `shmid`? None: the
    /// namespace cannot say (the segment is newer than its last answer and
    /// the namespace is gone, or asking failed).
    fn made_inside(&mut self, shmid: i32) -> Option<bool> {
        if !self.creators.contains_key(&shmid) && !self.closed {
            if let Ok(creators) = self.ask(false) {
                self.creators = creators;
            }
        }
        self.creators.get(&shmid).map(|&creator| creator != 0)
    }

    /// Run `shmconf kernel-view creators` in the namespace; with
    /// `end_others`, it first kills every other process there but the init,
    /// so no segment can be made after its answer.
    fn ask(&mut self, end_others: bool) -> Result<BTreeMap<i32, i32>, CreatorsError> {
        let mut cmd = Launch::new(&self.harness);
        cmd.args(["kernel-view", "creators"]);
        if end_others {
            cmd.arg("--end-others");
        }
        let mut helper = Proc::spawn("kernel-view creators", cmd, Some(&mut self.ns)).map_err(CreatorsError::Start)?;
        let ending = match helper.wait_exit(Instant::now() + CREATORS_LIMIT) {
            WaitOutcome::Done((ending, _)) => ending,
            WaitOutcome::TimedOut => return Err(CreatorsError::TimedOut),
            WaitOutcome::Interrupted => return Err(crate::interrupt::Interrupted::now().into()),
        };
        let (stdout, stderr) = helper.output();
        if ending != (Ending::Exited { code: 0 }) {
            return Err(CreatorsError::Failed {
                ending,
                said: stderr.shown(),
            });
        }
        let pairs: Vec<(i32, i32)> = serde_json::from_slice(&stdout.bytes).map_err(CreatorsError::NoList)?;
        Ok(pairs.into_iter().collect())
    }
}

/// Why `kernel-view creators --end-others` did not end every other process
/// of its PID namespace.
#[derive(Debug, thiserror::Error)]
pub enum EndOthersError {
    /// Its parent is visible: kill(-1) here would reach the machine.
    #[error("refused: not in a PID namespace of its own (its parent is visible)")]
    NotInOwnPidNamespace,
    #[error("kill(-1): {0}")]
    Kill(#[source] nix::errno::Errno),
    #[error("processes of the scenario's PID namespace did not die within 5 s")]
    Survivors,
}

/// `kernel-view creators --end-others`: SIGKILL every process of this PID
/// namespace but its init and this one (kill(-1) reaches no further than
/// the caller's PID namespace), until none is left. Refused unless this
/// process is in a PID namespace below its parent's (its parent pid reads
/// 0): kill(-1) elsewhere would reach every process of the machine.
pub fn end_other_processes_of_this_pid_namespace() -> Result<(), EndOthersError> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::{getppid, Pid};
    if getppid().as_raw() != 0 {
        return Err(EndOthersError::NotInOwnPidNamespace);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match kill(Pid::from_raw(-1), Signal::SIGKILL) {
            Err(nix::errno::Errno::ESRCH) => return Ok(()),
            Err(e) => return Err(EndOthersError::Kill(e)),
            // Zombies count as signalled until their parent (the harness,
            // or the init) reaps them: try again shortly.
            Ok(()) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(()) => return Err(EndOthersError::Survivors),
        }
    }
}

struct SharedWorld {
    ownership: Ownership,
    confinement: crate::engine::confine::ScenarioConfinement,
    /// The scenario's PID namespace, where one can be made.
    pids: Option<ScenarioPids>,
    _lock: SharedLock,
}

impl SharedWorld {
    /// Was `row` made by the scenario? None: cannot be told now.
    fn provenance(&mut self, row: &SegRow) -> Option<bool> {
        let creator = row.cpid?;
        if self.ownership.pids.contains(&creator) {
            return Some(true);
        }
        if let Some(pids) = &mut self.pids {
            if let Some(inside) = pids.made_inside(row.shmid) {
                return Some(inside);
            }
        }
        self.ownership.descends_from_scenario(creator)
    }
}

impl World for SharedWorld {
    fn enter(&mut self, _ns: &str) -> Result<(), WorldError> {
        // One namespace, the thread's own: no setns (which would need
        // CAP_SYS_ADMIN, exactly what is missing here).
        Ok(())
    }

    fn command(&mut self, req: &SpawnRequest, dir: &ScenarioDir) -> Result<Launch, WorldError> {
        Ok(super::local::confined_command(req, dir, &self.confinement)?)
    }

    fn pid_namespace(&mut self) -> Option<&mut PidNamespace> {
        self.pids.as_mut().map(|p| &mut p.ns)
    }

    fn spawned(&mut self, pid: i32) {
        self.confinement.spawned(pid);
        self.ownership.pid(pid);
    }
    fn claims_id(&mut self, shmid: i32) {
        self.ownership.id(shmid);
    }
    fn is_own(&mut self, row: &SegRow) -> bool {
        if let Some(decided) = self.ownership.decided(row) {
            return decided;
        }
        match self.provenance(row) {
            Some(own) => {
                self.ownership.record(row, own);
                own
            }
            // Not provably the scenario's: left alone, and asked again later.
            None => false,
        }
    }

    fn set_sysctl(&mut self, _ns: &str, _sysctl: IpcSysctl, _value: &str) -> Result<(), WorldError> {
        Err(SharedError::SysctlRefused.into())
    }

    fn tear_down(&mut self) -> Vec<Result<String, WorldError>> {
        let mut done = Vec::new();
        if let Some(pids) = &mut self.pids {
            // Whatever of the scenario still runs (a daemon that left its
            // group) is killed first, so the answer is final; then the
            // namespace goes with its init.
            match pids.ask(true) {
                Ok(creators) => pids.creators = creators,
                Err(e) => done.push(Err(SharedError::Creators(e).into())),
            }
            pids.closed = true;
            pids.init.kill_group();
        }
        // One scenario at a time here: without a PID namespace every orphan
        // that came back to the harness is this scenario's.
        let orphans = match self.pids {
            Some(_) => crate::engine::confine::Orphans::NoneComeBack,
            None => crate::engine::confine::Orphans::All,
        };
        done.extend(
            self.confinement
                .finish(orphans)
                .into_iter()
                .map(|r| r.map_err(WorldError::from)),
        );
        let table = match whole_table() {
            Ok(t) => t,
            Err(e) => {
                done.push(Err(SharedError::CleanUpTable(e).into()));
                return done;
            }
        };
        let own: Vec<SegRow> = table.into_iter().filter(|r| self.is_own(r)).collect();
        done.extend(Ownership::remove(&own).into_iter().map(|r| r.map_err(WorldError::from)));
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What another program holds makes a SKIP, what fails a BROKEN, by
    /// variant; the words are the ones the reports always had.
    #[test]
    fn others_segments_are_a_skip_and_failures_broken_in_the_same_words() {
        let one = SharedError::NotEmpty { count: 1, ids: vec![5] };
        assert_eq!(
            one.to_string(),
            "a program step is judged by a model that starts from an empty table, and the shared namespace holds 1 segment of other programs (id 5): it needs a namespace of its own"
        );
        assert!(matches!(SetUpError::from(one), SetUpError::Unavailable(_)));
        let many = SharedError::NotEmpty {
            count: 9,
            ids: (0..8).collect(),
        };
        assert!(
            many.to_string()
                .contains(" holds 9 segments of other programs (id 0, 1, 2, 3, 4, 5, 6, 7, ...): "),
            "{many}"
        );
        let key = SharedError::RawKeyTaken {
            key: "0x00000041".into(),
            shmid: 3,
        };
        assert!(matches!(SetUpError::from(key), SetUpError::Unavailable(_)));
        let lock = SharedError::LockName(std::io::Error::other("no"));
        assert_eq!(lock.to_string(), "cannot name the shared namespace's lock: no");
        assert!(matches!(SetUpError::from(lock), SetUpError::Broken(_)));
        let left = SharedError::Remove {
            segment: "key 0x41 id 3".into(),
            errno: shmconf::sysv::Errno::EPERM,
        };
        assert_eq!(
            WorldError::from(left).to_string(),
            "cannot remove the scenario's segment (key 0x41 id 3): EPERM: Operation not permitted"
        );
        let late = SharedError::Creators(CreatorsError::TimedOut);
        assert_eq!(
            late.to_string(),
            "cannot tell which segments are the scenario's: shmconf kernel-view creators took longer than 10 s"
        );
        let signal = Some(nix::sys::signal::Signal::SIGTERM);
        let stopped = SharedError::from(crate::interrupt::Interrupted(signal));
        assert_eq!(stopped.to_string(), "interrupted by SIGTERM");
    }

    fn row(shmid: i32, cpid: i32) -> SegRow {
        SegRow {
            key: "0x00000000".into(),
            shmid,
            mode: "0600".into(),
            size: 1,
            nattch: 0,
            cpid: Some(cpid),
            lpid: None,
            uid: None,
            raw_key: 0,
            raw_mode: 0o600,
        }
    }

    #[test]
    fn ending_every_process_of_the_pid_namespace_is_refused_outside_one_of_its_own() {
        // The test's parent is visible: kill(-1) here would reach the machine.
        let e = end_other_processes_of_this_pid_namespace().unwrap_err();
        assert!(matches!(e, EndOthersError::NotInOwnPidNamespace), "{e}");
        assert!(e.to_string().starts_with("refused: "), "{e}");
    }

    #[test]
    fn a_segment_there_before_the_scenario_is_never_its_own_and_decisions_stay() {
        let mut o = Ownership {
            baseline: [7].into(),
            ..Ownership::default()
        };
        o.pid(100);
        assert_eq!(o.decided(&row(7, 100)), Some(false), "in the baseline, whoever made it");
        assert_eq!(o.decided(&row(8, 100)), None);
        o.record(&row(8, 100), true);
        assert_eq!(o.decided(&row(8, 0)), Some(true), "own stays own (its creator gone)");
        o.record(&row(9, 55), false);
        assert_eq!(o.decided(&row(9, 55)), Some(false));
        assert_eq!(
            o.decided(&row(9, 56)),
            None,
            "a reused id of another creator is judged afresh"
        );
    }

    #[test]
    fn a_live_descendant_of_a_started_process_is_the_scenarios_and_a_stranger_is_not() {
        use std::io::BufRead;
        // sh (started by the scenario) -> sh (a subshell) -> sleep, which
        // reports its pid: a grandchild, in the started process's group.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "(sleep 5 & echo $!; wait)"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        let mut o = Ownership::default();
        assert_eq!(
            o.descends_from_scenario(grandchild),
            Some(false),
            "not started by the scenario"
        );
        o.pid(child.id() as i32);
        assert_eq!(o.descends_from_scenario(grandchild), Some(true));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(grandchild),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        // Gone: nothing to tell by (with a PID namespace, the kernel tells).
        let deadline = Instant::now() + Duration::from_secs(5);
        while parent_and_group(grandchild).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(o.descends_from_scenario(grandchild), None);
    }

    #[test]
    fn a_second_holder_of_the_shared_lock_waits_and_gives_up_at_its_deadline() {
        let inode = 0xdead_0000 + u64::from(std::process::id());
        let first = SharedLock::acquire(inode, Instant::now()).unwrap();
        let start = Instant::now();
        let second = SharedLock::acquire(inode, Instant::now() + Duration::from_millis(100));
        let Err(e) = second else { panic!("a second holder") };
        assert!(matches!(e, SharedError::LockHeld { .. }), "{e}");
        assert!(matches!(SetUpError::from(e), SetUpError::Unavailable(_)), "a SKIP");
        assert!(start.elapsed() >= Duration::from_millis(100));
        drop(first);
        assert!(
            SharedLock::acquire(inode, Instant::now()).is_ok(),
            "released with its holder"
        );
    }
}
