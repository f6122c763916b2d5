//! Least privilege for programs under test, as sandbox runners (bubblewrap,
//! nsjail, minijail) apply it: what a program may see, change and consume.
//!
//! * **Bounds** on processes and memory per scenario: a cgroup of its own
//!   (v2 where the `pids` and `memory` controllers are on the unified
//!   hierarchy, else v1's `pids` and `memory` hierarchies), a child of a
//!   cgroup the run makes (`shmconf-PID-N`, removed at its end; one left by a
//!   killed run is swept by the next). Without cgroups, rlimits per process
//!   (RLIMIT_AS for memory; RLIMIT_NPROC, which counts every process of the
//!   uid, set to what the uid runs now plus the bound, only where all of
//!   them are visible), said in the run's notes.
//! * **A mount namespace** per scenario, made by the init of its PID
//!   namespace before it execs ([`mount_plan`]): a /proc of that PID
//!   namespace (read-only), every other mount read-only, and the scenario's
//!   dir the one writable place.
//! * **Credentials** ([`shmconf::sysv::spawn::Launch::confine`]): no capability
//!   (no scenario needs one: a uid switch is done by the harness before the
//!   exec), no_new_privs, no user namespace (seccomp), no controlling
//!   terminal. Where there is no PID namespace, the harness is a
//!   child subreaper and kills the orphans that come back ([`Orphans`]).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shmconf::sysv::process::{Confinement, Limit, MountPlan};
use shmconf::sysv::spawn::Launch;

/// Per-scenario bounds on what its programs consume (`--max-processes`,
/// `--max-memory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Processes (and threads: a cgroup's pids count tasks) at once.
    pub max_processes: u64,
    /// Bytes of memory of the scenario's processes together (cgroups), or of
    /// each one's address space (rlimits).
    pub max_memory: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_processes: 256,
            max_memory: 1 << 30,
        }
    }
}

/// Why a `SIZE` (`--max-memory`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("{text:?} is not a size (a number with an optional K, M, G or T)")]
    NotANumber { text: String },
    #[error("{text:?}: unknown unit {unit:?} (K, M, G or T)")]
    UnknownUnit { text: String, unit: String },
    /// 0, or more than 64 bits of bytes.
    #[error("{text:?} is not a size between 1 byte and 16 EiB")]
    OutOfRange { text: String },
}

/// Why a scenario's programs could not be confined, or what confined them
/// not be undone.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("cannot make the scenario's cgroup: {0}")]
    ScenarioCgroup(#[source] std::io::Error),
    /// The file of its cgroup through which a program joins it cannot be opened.
    #[error("{}: {source}", .dir.display())]
    JoinCgroup {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Its members were SIGKILLed for 10 s and these still ran.
    #[error("{} processes would not die: {pids:?}", .pids.len())]
    Survivors { pids: BTreeSet<i32> },
    #[error("cannot remove cgroup {}: {source}", .dir.display())]
    RemoveCgroup {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The init's mount namespace cannot be opened or its handle duplicated.
    #[error("the scenario's mount namespace: {0}")]
    MountNamespace(#[source] std::io::Error),
    #[error("/proc/self/mountinfo: {0}")]
    Mountinfo(#[source] std::io::Error),
    /// A path a C call takes holds a NUL byte.
    #[error("{}: a NUL in the path", .0.display())]
    NulInPath(PathBuf),
}

/// `SIZE`: bytes, or with a K, M, G or T suffix (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| SizeError::NotANumber { text: text.into() })?;
    let shift = match unit.to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => {
            return Err(SizeError::UnknownUnit {
                text: text.into(),
                unit: unit.into(),
            })
        }
    };
    n.checked_mul(1 << shift)
        .filter(|&v| v > 0)
        .ok_or_else(|| SizeError::OutOfRange { text: text.into() })
}

/// Where a run's cgroups live.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hierarchy {
    /// One dir of the unified hierarchy with both controllers.
    V2(PathBuf),
    /// The `pids` and `memory` hierarchies' dirs of this process.
    V1 { pids: PathBuf, memory: PathBuf },
}

impl Hierarchy {
    /// This process's own cgroup dirs, where both controllers can be used.
    fn detect() -> Option<Hierarchy> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        // (mount point, fs type, super options) of each cgroup mount.
        let mounts: Vec<(PathBuf, String, String)> = mountinfo
            .lines()
            .filter_map(|l| {
                let (pre, post) = l.split_once(" - ")?;
                let mount_point = unescape_mountinfo(pre.split(' ').nth(4)?);
                let mut post = post.split(' ');
                let fstype = post.next()?.to_string();
                let super_options = post.nth(1).unwrap_or("").to_string();
                fstype
                    .starts_with("cgroup")
                    .then_some((mount_point, fstype, super_options))
            })
            .collect();
        let own_path = |controller: &str| {
            own.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, list, path) = (f.next()?, f.next()?, f.next()?);
                (list.split(',').any(|c| c == controller)).then(|| path.trim_start_matches('/').to_string())
            })
        };
        let v2_dir = mounts.iter().find(|(_, t, _)| t == "cgroup2").and_then(|(mp, _, _)| {
            let path = own.lines().find_map(|l| l.strip_prefix("0::"))?;
            Some(mp.join(path.trim_start_matches('/')))
        });
        if let Some(dir) = v2_dir {
            let controllers = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
            if has("pids") && has("memory") {
                return Some(Hierarchy::V2(dir));
            }
        }
        let v1 = |controller: &str| {
            let (mp, _, _) = mounts
                .iter()
                .find(|(_, t, o)| t == "cgroup" && o.split(',').any(|x| x == controller))?;
            Some(mp.join(own_path(controller)?))
        };
        Some(Hierarchy::V1 {
            pids: v1("pids")?,
            memory: v1("memory")?,
        })
    }

    fn describe(&self) -> &'static str {
        match self {
            Hierarchy::V2(_) => "cgroup v2",
            Hierarchy::V1 { .. } => "cgroup v1 (pids, memory)",
        }
    }

    /// The file a program writes "0" to, to join a dir of the cgroup
    /// itself. v1: `tasks`, which moves the writing task alone. The child
    /// writing it is a process of one thread (not yet exec'd), so that is
    /// the whole process, and the kernel takes no threadgroup lock for a
    /// task moving itself; `cgroup.procs` takes it for writing, whose first
    /// taker after a quiet spell waits for an RCU grace period: 1-2% of
    /// the spawns of an exploration took 8-18 ms there, a millisecond an
    /// order on average. v2 has no such per-thread file outside threaded
    /// cgroups: `cgroup.procs`.
    fn join_file(&self) -> &'static str {
        match self {
            Hierarchy::V2(_) => "cgroup.procs",
            Hierarchy::V1 { .. } => "tasks",
        }
    }

    fn dirs(&self) -> Vec<&Path> {
        match self {
            Hierarchy::V2(d) => vec![d],
            Hierarchy::V1 { pids, memory } => vec![pids, memory],
        }
    }

    fn join(&self, name: &str) -> Hierarchy {
        match self {
            Hierarchy::V2(d) => Hierarchy::V2(d.join(name)),
            Hierarchy::V1 { pids, memory } => Hierarchy::V1 {
                pids: pids.join(name),
                memory: memory.join(name),
            },
        }
    }

    /// Make the dirs (and, on v2, let the children use both controllers).
    fn create(&self) -> std::io::Result<()> {
        for d in self.dirs() {
            match std::fs::create_dir(d) {
                Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        if let Hierarchy::V2(d) = self {
            std::fs::write(d.join("cgroup.subtree_control"), "+pids +memory")?;
        }
        Ok(())
    }

    fn set_bounds(&self, bounds: Bounds) -> std::io::Result<()> {
        let memory = bounds.max_memory.to_string();
        let pids = bounds.max_processes.to_string();
        match self {
            Hierarchy::V2(d) => {
                std::fs::write(d.join("pids.max"), &pids)?;
                std::fs::write(d.join("memory.max"), &memory)?;
                // Swap would only make the bound slower to reach.
                let _ = std::fs::write(d.join("memory.swap.max"), "0");
            }
            Hierarchy::V1 { pids: p, memory: m } => {
                std::fs::write(p.join("pids.max"), &pids)?;
                std::fs::write(m.join("memory.limit_in_bytes"), &memory)?;
                let _ = std::fs::write(m.join("memory.memsw.limit_in_bytes"), &memory);
            }
        }
        Ok(())
    }

    /// Every process in the dirs (and, on v1, in their children).
    fn members(&self) -> BTreeSet<i32> {
        let mut pids = BTreeSet::new();
        for d in self.dirs() {
            let mut stack = vec![d.to_path_buf()];
            while let Some(dir) = stack.pop() {
                if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                    pids.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
                }
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    stack.extend(
                        entries
                            .filter_map(Result::ok)
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                            .map(|e| e.path()),
                    );
                }
            }
        }
        pids
    }

    /// SIGKILL every member until none is left, then remove the dirs,
    /// children first.
    fn kill_and_remove(&self) -> Result<(), ConfineError> {
        self.kill_members()?;
        self.remove()
    }

    /// SIGKILL every member until none is left (a fork bomb forks while it
    /// is killed, so repeat).
    fn kill_members(&self) -> Result<(), ConfineError> {
        if let Hierarchy::V2(d) = self {
            // Linux 5.14+: the kernel kills the whole subtree at once.
            let _ = std::fs::write(d.join("cgroup.kill"), "1");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let members = self.members();
            if members.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(ConfineError::Survivors { pids: members });
            }
            for &pid in &members {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            // Zombies stay members until reaped by their parent (the
            // harness, the PID namespace's init, or us as subreaper), and
            // a traced one until its tracer has collected it first.
            reap_orphans(&members);
            collect_traced(&members);
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Remove the dirs (and their children).
    fn remove(&self) -> Result<(), ConfineError> {
        // Every dir, even after one fails: a dir left in one hierarchy would
        // outlive the run (the sweep finds it, but only at the next run).
        let mut first_error = Ok(());
        for d in self.dirs() {
            if let Err(e) = remove_tree(d) {
                first_error = first_error.and(Err(e));
            }
        }
        first_error
    }
}

/// Bytes of memory the cgroup is still charged for (v1 `memory.usage_in_bytes`,
/// v2 `memory.current`), none where it cannot be read.
fn memory_charged(cg: &Hierarchy) -> Option<u64> {
    let file = match cg {
        Hierarchy::V2(d) => d.join("memory.current"),
        Hierarchy::V1 { memory, .. } => memory.join("memory.usage_in_bytes"),
    };
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The scenario cgroups of a run that are empty and may be given to its
/// next scenario, so an exploration does not make and remove two cgroup
/// dirs and write three bounds for each of its orders (half a millisecond
/// an order). Only a cgroup whose members are all gone (killed and reaped:
/// its pids count is 0) and whose memory charge is back under
/// [`CgroupPool::REUSE_MAX_CHARGE`] goes back: memory a scenario left
/// charged (its segments, freed with its IPC namespace after a delay) must
/// not lower the next one's bound. Its bounds are the run's, as they were.
#[derive(Default)]
struct CgroupPool {
    free: std::sync::Mutex<Vec<Hierarchy>>,
}

impl CgroupPool {
    /// What an empty cgroup may still be charged for and be used again:
    /// the kernel's own objects its programs left (dentries, inodes), not
    /// a bound's worth of segments.
    const REUSE_MAX_CHARGE: u64 = 4 << 20;

    fn take(&self) -> Option<Hierarchy> {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Keep `cg` (empty: its members were killed and are gone) for the
    /// next scenario, or remove it where it still holds memory.
    fn give_back(&self, cg: Hierarchy) -> Result<(), ConfineError> {
        if memory_charged(&cg).is_some_and(|bytes| bytes <= Self::REUSE_MAX_CHARGE) {
            self.free.lock().unwrap_or_else(|p| p.into_inner()).push(cg);
            Ok(())
        } else {
            cg.remove()
        }
    }
}

/// Remove a cgroup dir and its children (deepest first; a cgroup dir holds
/// only the kernel's files, which rmdir removes with it).
fn remove_tree(dir: &Path) -> Result<(), ConfineError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path())?;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            // EBUSY while the last members are being torn down.
            Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(source) => {
                return Err(ConfineError::RemoveCgroup {
                    dir: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Mount points are written with `\040`-style octal escapes.
fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// How a run confines the programs of its scenarios: made once per run by
/// the local backends.
pub struct Confiner {
    pub bounds: Bounds,
    /// The run's own cgroup (`shmconf-PID-N`), none where cgroups cannot be used.
    run_cgroup: Option<Hierarchy>,
    /// Why not, for the run's notes.
    cgroup_note: Option<String>,
    /// Its scenario cgroups that are empty, for the next scenarios.
    pool: std::sync::Arc<CgroupPool>,
}

/// Name prefix of a run's cgroup; the rest is `PID-N`, the run's pid and
/// the number of its confiner in that process.
const RUN_CGROUP_PREFIX: &str = "shmconf-";

/// Confiners alive in this process.
static LIVE_CONFINERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Confiner {
    pub fn new(bounds: Bounds) -> Confiner {
        let (run_cgroup, cgroup_note) = match Hierarchy::detect() {
            None => (None, Some("no cgroup with the pids and memory controllers".to_string())),
            Some(h) => {
                sweep_stale_run_cgroups(&h);
                // One per confiner: a process may compose several runs (the
                // scenarios test runs two implementations side by side).
                static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let run = h.join(&format!("{RUN_CGROUP_PREFIX}{}-{n}", std::process::id()));
                match run.create() {
                    Ok(()) => (Some(run), None),
                    Err(e) => {
                        let _ = run.kill_and_remove();
                        (None, Some(format!("cannot make a cgroup in {}: {e}", h.describe())))
                    }
                }
            }
        };
        LIVE_CONFINERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Confiner {
            bounds,
            run_cgroup,
            cgroup_note,
            pool: Default::default(),
        }
    }

    /// A line for the run's notes where the bounds are weaker than asked
    /// (no cgroup: rlimits per process); none where cgroups hold them.
    pub fn degraded(&self) -> Option<String> {
        let b = self.bounds;
        if self.run_cgroup.is_some() {
            return None;
        }
        Some(format!(
            "programs under test are bounded by rlimits only ({}): {} MiB of address space per process, {}",
            self.cgroup_note.as_deref().unwrap_or("no cgroups"),
            b.max_memory >> 20,
            if in_initial_pid_namespace() {
                format!("{} more processes of their uid", b.max_processes)
            } else {
                "no bound on processes (RLIMIT_NPROC would count processes this PID namespace cannot see)".into()
            }
        ))
    }

    /// The bounds of one scenario: a cgroup of its own where the run has one.
    pub fn scenario(&self) -> Result<ScenarioConfinement, ConfineError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let reused = self.run_cgroup.as_ref().and_then(|_| self.pool.take());
        let cgroup = match (&self.run_cgroup, reused) {
            (_, Some(free)) => Some(free),
            (Some(run), None) => {
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let cg = run.join(&format!("scenario-{n}"));
                cg.create().and_then(|()| cg.set_bounds(self.bounds)).map_err(|e| {
                    let _ = cg.kill_and_remove();
                    ConfineError::ScenarioCgroup(e)
                })?;
                Some(cg)
            }
            (None, None) => None,
        };
        Ok(ScenarioConfinement {
            bounds: self.bounds,
            cgroup,
            pool: std::sync::Arc::clone(&self.pool),
            mount_ns: None,
            groups: BTreeSet::new(),
        })
    }
}

impl Drop for Confiner {
    /// At the run's end: what is left in its cgroup, and every orphan that
    /// came back to the harness as subreaper (where scenarios ran side by
    /// side without PID namespace or cgroup, an orphan that left its
    /// program's process group could not be told apart at its scenario's end).
    fn drop(&mut self) {
        // The last one: no scenario of another confiner of this process runs.
        if LIVE_CONFINERS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            kill_orphans(|_, _| true);
        }
        if let Some(run) = self.run_cgroup.take() {
            let _ = run.kill_and_remove();
        }
    }
}

/// A run's cgroup whose run is gone (SIGKILLed): what is in it is killed and
/// it is removed. Only dirs of our name form (`shmconf-PID-N`) whose process
/// is gone.
fn sweep_stale_run_cgroups(parent: &Hierarchy) {
    // The names in every hierarchy: a run killed while it removed its dirs
    // (v1: pids, then memory) leaves a dir in some of them only.
    let names: BTreeSet<String> = parent
        .dirs()
        .into_iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|entries| entries.filter_map(Result::ok))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for name in names {
        let Some(pid) = name
            .strip_prefix(RUN_CGROUP_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // Any live process with that pid may be the run (or a test binary
        // that embeds the harness): only a gone one's cgroup is stale.
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = parent.join(&name).kill_and_remove();
        }
    }
}

/// Which orphans that came back to the harness are a scenario's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphans {
    /// None comes back: the scenario's PID namespace has an init of its own.
    NoneComeBack,
    /// Those still in the process groups of its programs (scenarios run
    /// side by side; one that left its group is killed at the run's end).
    OfItsGroups,
    /// Every one (the scenario is the only one running).
    All,
}

/// What confines one scenario's programs, until [`ScenarioConfinement::finish`].
pub struct ScenarioConfinement {
    bounds: Bounds,
    cgroup: Option<Hierarchy>,
    /// Where its cgroup goes once empty.
    pool: std::sync::Arc<CgroupPool>,
    /// The mount namespace its programs enter (that of its PID namespace's init).
    mount_ns: Option<File>,
    /// Process groups (= leader pids) of its programs, to find their orphans
    /// where there is neither a PID namespace nor a cgroup.
    groups: BTreeSet<i32>,
}

impl ScenarioConfinement {
    /// Programs enter this mount namespace from now on.
    pub fn set_mount_namespace(&mut self, init_pid: i32) -> Result<(), ConfineError> {
        let ns = File::open(format!("/proc/{init_pid}/ns/mnt")).map_err(ConfineError::MountNamespace)?;
        self.mount_ns = Some(ns);
        Ok(())
    }

    pub fn has_mount_namespace(&self) -> bool {
        self.mount_ns.is_some()
    }

    /// Confine the program `launch` starts (as `uid`/`gid` where given; the
    /// scenario dir `workdir` as its working directory; with CAP_SETUID and
    /// the capabilities `keep` names and no other).
    pub fn apply(
        &self,
        launch: &mut Launch,
        workdir: &Path,
        uid: Option<u32>,
        gid: Option<u32>,
        keep: crate::scenario::KeptCapabilities,
    ) -> Result<(), ConfineError> {
        let mut cgroups = Vec::new();
        if let Some(cg) = &self.cgroup {
            for d in cg.dirs() {
                let procs = std::fs::OpenOptions::new()
                    .write(true)
                    .open(d.join(cg.join_file()))
                    .map_err(|source| ConfineError::JoinCgroup {
                        dir: d.to_path_buf(),
                        source,
                    })?;
                cgroups.push(procs);
            }
        }
        let mut rlimits = vec![];
        if self.cgroup.is_none() {
            rlimits.push((Limit::AddressSpace, self.bounds.max_memory));
            // RLIMIT_NPROC counts every process of the uid on the machine:
            // only where all of them are visible can the bound be added to
            // what the uid runs already (in a container, the host's root
            // processes would count and every fork would fail).
            if in_initial_pid_namespace() {
                let uid = uid.unwrap_or_else(|| nix::unistd::getuid().as_raw());
                rlimits.push((Limit::Processes, processes_of(uid) + self.bounds.max_processes));
            }
        }
        let mount_ns = match &self.mount_ns {
            Some(ns) => Some(ns.try_clone().map_err(ConfineError::MountNamespace)?),
            None => None,
        };
        let workdir = std::ffi::CString::new(workdir.as_os_str().as_encoded_bytes())
            .map_err(|_| ConfineError::NulInPath(workdir.to_path_buf()))?;
        launch.confine(Confinement {
            cgroups,
            rlimits,
            mount_ns,
            workdir: Some(workdir),
            uid,
            gid,
            keep_capabilities: keep.mask(),
        });
        Ok(())
    }

    /// Note a program started (its process group is its pid: every program
    /// leads one).
    pub fn spawned(&mut self, pid: i32) {
        self.groups.insert(pid);
    }

    /// Kill what the scenario's programs left: every member of its cgroup,
    /// and the orphans `orphans` says are its own among those reparented to
    /// the harness (a subreaper where there is no PID namespace). Then the
    /// cgroup, empty, goes back to the run's pool (see [`CgroupPool`]).
    /// Returns what was done, for the log.
    pub fn finish(&mut self, orphans: Orphans) -> Vec<Result<String, ConfineError>> {
        let mut log = vec![];
        let groups = &self.groups;
        let killed = match orphans {
            Orphans::NoneComeBack => 0,
            Orphans::OfItsGroups => kill_orphans(|_, pgid| groups.contains(&pgid)),
            Orphans::All => kill_orphans(|_, _| true),
        };
        if killed > 0 {
            log.push(Ok(format!("killed {killed} orphaned processes of the scenario")));
        }
        if let Some(cg) = self.cgroup.take() {
            let left = cg.members().len();
            match cg.kill_members() {
                Ok(()) => {
                    if left > 0 {
                        log.push(Ok(format!("killed {left} processes left in the scenario's cgroup")));
                    }
                    if let Err(e) = self.pool.give_back(cg) {
                        log.push(Err(e));
                    }
                }
                Err(e) => {
                    log.push(Err(e));
                    let _ = cg.remove();
                }
            }
        }
        self.mount_ns = None;
        log
    }
}

impl Drop for ScenarioConfinement {
    fn drop(&mut self) {
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.kill_and_remove();
        }
    }
}

/// Is this process in the machine's initial PID namespace (whose inode
/// number is fixed: PROC_PID_INIT_INO of <linux/proc_ns.h>)?
fn in_initial_pid_namespace() -> bool {
    const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
    std::fs::metadata("/proc/self/ns/pid").is_ok_and(|m| m.ino() == PROC_PID_INIT_INO)
}

/// Processes whose real uid is `uid` (what RLIMIT_NPROC counts), approximated
/// by the owners of /proc/PID.
fn processes_of(uid: u32) -> u64 {
    std::fs::read_dir("/proc").map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            })
            .filter(|e| e.metadata().is_ok_and(|m| m.uid() == uid))
            .count() as u64
    })
}

/// Make the harness a child subreaper: orphans of its children (a daemon a
/// program under test started) become its children instead of the machine
/// init's, so they can be found and killed at the scenario's end. For runs
/// without a PID namespace of their own.
pub fn become_subreaper() {
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// Orphans that came back to the subreaper (children of the harness in
/// another process group than the harness's: no program the harness started
/// itself, see `procs::orphan_children`) that `belongs` (given their session
/// and group) says are the scenario's: SIGKILLed and reaped. Returns how
/// many were alive.
fn kill_orphans(belongs: impl Fn(i32, i32) -> bool) -> usize {
    let mut killed = 0;
    for (pid, sid, pgid) in super::procs::orphan_children() {
        if !belongs(sid, pgid) {
            continue;
        }
        let pid = nix::unistd::Pid::from_raw(pid);
        if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
            killed += 1;
        }
        let _ = nix::sys::wait::waitpid(pid, None);
    }
    killed
}

/// Reap those of `pids` that are orphans of ours that ended (zombies of a
/// cgroup stay in it until reaped).
/// Collect, as their tracer, killed tasks that this thread traces but did not
/// start: a traced program's fork that left its process group (a daemon) is
/// followed by the scenario's thread, and until that thread has waited for
/// its exit it stays a zombie that not even its parent (the PID namespace's
/// init) can reap. The harness's own children are left alone: their
/// processes (leaders held as zombies) and `reap_orphans` answer for them.
/// A killed traced task first stops at its exit event and goes on only when
/// its tracer lets it. For a task this thread does not trace, the wait is
/// ECHILD.
fn collect_traced(pids: &BTreeSet<i32>) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let me = std::process::id() as i32;
    for &pid in pids {
        if parent_of(pid).map_or(true, |parent| parent == me) {
            continue;
        }
        let pid = nix::unistd::Pid::from_raw(pid);
        // Held at its exit event (PTRACE_O_TRACEEXIT) or any other stop on
        // its way out: let it go on, to be collected next time.
        if let Ok(WaitStatus::Stopped(..) | WaitStatus::PtraceEvent(..) | WaitStatus::PtraceSyscall(..)) =
            waitpid(pid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG))
        {
            let _ = nix::sys::ptrace::cont(pid, None);
        }
    }
}

/// The parent pid of `pid` (/proc/PID/stat), as this PID namespace numbers it.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn reap_orphans(pids: &BTreeSet<i32>) {
    for (pid, _, _) in super::procs::orphan_children() {
        if pids.contains(&pid) {
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
    }
}

/// The mount namespace of a scenario (made in its PID namespace's init
/// before it execs, see [`shmconf::sysv::spawn::Launch::enter_new_mount_namespace`]):
/// a /proc of that PID namespace, read-only; every other mount of the
/// harness's table read-only; `dir`, the scenario's dir, the one writable
/// place. Programs of the scenario enter it (see [`ScenarioConfinement::apply`]).
pub fn mount_plan(dir: &Path) -> Result<MountPlan, ConfineError> {
    let c_path = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| ConfineError::NulInPath(p.to_path_buf()))
    };
    let mut read_only = Vec::new();
    let mut table = MOUNT_TABLE.lock().unwrap_or_else(|p| p.into_inner());
    for (mount_point, flags) in MountTable::current(&mut table)? {
        // /proc is replaced by the PID namespace's (mounts under the old one
        // are hidden with it); the dir stays writable.
        if mount_point.starts_with(dir) || mount_point.starts_with("/proc") {
            continue;
        }
        read_only.push((c_path(mount_point)?, *flags));
    }
    Ok(MountPlan {
        writable_dir: c_path(dir)?,
        read_only,
    })
}

/// The harness's mount table as [`mount_plan`] needs it: each mount point
/// with the flags a read-only bind remount of it must restate. Read again
/// only when the kernel says the table changed (poll(2) on an open
/// mountinfo reports POLLPRI after every mount or unmount since the last
/// poll), so a mount made between two scenarios (a neighbour's tmpfs) is
/// in the next plan, and a table that did not change is not read and
/// parsed for every scenario (it was a tenth of a millisecond of each
/// exploration order).
struct MountTable {
    file: File,
    mounts: Vec<(PathBuf, libc::c_ulong)>,
}

static MOUNT_TABLE: std::sync::Mutex<Option<MountTable>> = std::sync::Mutex::new(None);

impl MountTable {
    fn current(slot: &mut Option<MountTable>) -> Result<&[(PathBuf, libc::c_ulong)], ConfineError> {
        let changed = match slot {
            None => true,
            Some(table) => table.changed_since_read().map_err(ConfineError::Mountinfo)?,
        };
        if changed {
            // The poll above consumed the change: what is read now is at
            // least as new as it (a change after the read is the next poll's).
            let file = match slot.take() {
                Some(table) => table.file,
                None => File::open("/proc/self/mountinfo").map_err(ConfineError::Mountinfo)?,
            };
            let mounts = read_mounts(&file).map_err(ConfineError::Mountinfo)?;
            *slot = Some(MountTable { file, mounts });
        }
        Ok(slot.as_ref().map_or(&[], |t| t.mounts.as_slice()))
    }

    fn changed_since_read(&self) -> std::io::Result<bool> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLPRI)];
        poll(&mut fds, PollTimeout::ZERO).map_err(std::io::Error::from)?;
        let seen = fds[0].revents().unwrap_or(PollFlags::empty());
        Ok(seen.intersects(PollFlags::POLLPRI | PollFlags::POLLERR))
    }
}

/// Every mount point of an open mountinfo, read from its start, with the
/// flags its bind remount keeps.
fn read_mounts(file: &File) -> std::io::Result<Vec<(PathBuf, libc::c_ulong)>> {
    use std::io::{Read, Seek};
    let mut text = String::new();
    let mut reader = file;
    reader.seek(std::io::SeekFrom::Start(0))?;
    reader.read_to_string(&mut text)?;
    let mut mounts = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(mount_point), Some(options)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        // A bind remount must restate the flags it keeps.
        let mut flags: libc::c_ulong = 0;
        for option in options.split(',') {
            flags |= match option {
                "nosuid" => libc::MS_NOSUID,
                "nodev" => libc::MS_NODEV,
                "noexec" => libc::MS_NOEXEC,
                "noatime" => libc::MS_NOATIME,
                "nodiratime" => libc::MS_NODIRATIME,
                "relatime" => libc::MS_RELATIME,
                _ => 0,
            };
        }
        mounts.push((unescape_mountinfo(mount_point), flags));
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run killed while it removed its cgroup (v1 removes the pids dir,
    /// then the memory one) leaves its dirs in some hierarchies only; the
    /// next run sweeps them from every hierarchy, child dirs too.
    #[rstest::rstest]
    #[case::in_the_first_hierarchy_only(&[0])]
    #[case::in_the_last_hierarchy_only(&[1])]
    #[case::in_every_hierarchy(&[0, 1])]
    fn a_dead_runs_cgroup_left_in_some_hierarchies_is_swept(#[case] left_in: &[usize]) {
        let Some(own) = Hierarchy::detect().filter(|_| nix::unistd::geteuid().is_root()) else {
            eprintln!("skipped: needs root and cgroups with the pids and memory controllers");
            return;
        };
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let stale = own.join(&format!("{RUN_CGROUP_PREFIX}{}-{}", gone.id(), left_in.len()));
        let dirs = stale.dirs();
        let made: Vec<PathBuf> = left_in
            .iter()
            // v2 has one dir: every case makes it.
            .map(|&i| dirs[i.min(dirs.len() - 1)].join("scenario-0"))
            .collect();
        for d in &made {
            std::fs::create_dir_all(d).unwrap();
        }
        let next = Confiner::new(Bounds::default());
        for d in &made {
            assert!(!d.parent().unwrap().exists(), "{} was not swept", d.display());
        }
        drop(next);
    }

    /// A scenario's cgroup, emptied at its end (what its programs left is
    /// killed), is the next scenario's; one still charged for more memory
    /// than [`CgroupPool::REUSE_MAX_CHARGE`] (page cache of a file its
    /// program wrote) is removed and the next scenario gets a new one.
    #[test]
    fn an_emptied_cgroup_is_the_next_scenarios_and_one_still_charged_is_removed() {
        if !nix::unistd::geteuid().is_root() || Hierarchy::detect().is_none() {
            eprintln!("skipped: needs root and cgroups with the pids and memory controllers");
            return;
        }
        let confiner = Confiner::new(Bounds::default());
        if confiner.run_cgroup.is_none() {
            eprintln!("skipped: {}", confiner.cgroup_note.as_deref().unwrap_or("no cgroup"));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let run_in = |scenario: &ScenarioConfinement, script: &str| {
            let mut launch = Launch::new("sh");
            launch.args(["-c", script]);
            scenario
                .apply(&mut launch, dir.path(), None, None, Default::default())
                .unwrap();
            launch.spawn().unwrap().pid
        };
        let mut first = confiner.scenario().unwrap();
        let first_cgroup = first.cgroup.clone().unwrap();
        let left = run_in(&first, "exec sleep 60");
        assert!(first_cgroup.members().contains(&left));
        let log: Vec<String> = first
            .finish(Orphans::NoneComeBack)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(log, ["killed 1 processes left in the scenario's cgroup"]);
        assert!(first_cgroup.members().is_empty());

        let mut second = confiner.scenario().unwrap();
        assert_eq!(
            second.cgroup,
            Some(first_cgroup.clone()),
            "the emptied cgroup is given again"
        );
        let writer = run_in(&second, "head -c 16777216 /dev/zero > page-cache && exec sleep 60");
        let limit = Instant::now() + Duration::from_secs(20);
        while !memory_charged(&first_cgroup).is_some_and(|b| b > CgroupPool::REUSE_MAX_CHARGE) {
            assert!(Instant::now() < limit, "the file's pages were never charged");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(second.finish(Orphans::NoneComeBack).into_iter().all(|r| r.is_ok()));
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(writer),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        assert!(
            first_cgroup.dirs().iter().all(|d| !d.exists()),
            "a cgroup still charged is removed"
        );
        let third = confiner.scenario().unwrap();
        assert!(
            third.cgroup.as_ref().is_some_and(|c| *c != first_cgroup),
            "the next scenario gets a new one"
        );
    }

    #[test]
    fn sizes_take_binary_units_and_refuse_the_rest() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        for bad in ["", "0", "M", "1.5G", "-1G", "1X", "99999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn refusals_say_what_they_said_as_text() {
        assert_eq!(parse_size("M"), Err(SizeError::NotANumber { text: "M".into() }));
        assert_eq!(
            parse_size("M").unwrap_err().to_string(),
            "\"M\" is not a size (a number with an optional K, M, G or T)"
        );
        assert_eq!(
            parse_size("1X").unwrap_err().to_string(),
            "\"1X\": unknown unit \"X\" (K, M, G or T)"
        );
        assert_eq!(
            parse_size("0").unwrap_err().to_string(),
            "\"0\" is not a size between 1 byte and 16 EiB"
        );
        let survivors = ConfineError::Survivors { pids: [7, 8].into() };
        assert_eq!(survivors.to_string(), "2 processes would not die: {7, 8}");
        let nul = ConfineError::NulInPath(PathBuf::from("/a"));
        assert_eq!(nul.to_string(), "/a: a NUL in the path");
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape_mountinfo("/tab\\011x\\134y"), PathBuf::from("/tab\tx\\y"));
        assert_eq!(unescape_mountinfo("/plain"), PathBuf::from("/plain"));
        // A backslash not followed by three octal digits stays as it is.
        assert_eq!(unescape_mountinfo("/x\\09"), PathBuf::from("/x\\09"));
    }

    #[test]
    fn default_bounds_leave_room_for_every_scenario() {
        let b = Bounds::default();
        assert_eq!(b.max_processes, 256);
        assert_eq!(b.max_memory, 1 << 30);
    }

    /// The mount table is read again only when it changed (see
    /// [`MountTable`]): a neighbour's tmpfs mounted after one plan is
    /// read-only in the next, and gone from the one after its unmount.
    #[test]
    fn a_mount_made_or_removed_between_two_plans_is_in_the_second() {
        use nix::mount::{mount, umount, MsFlags};
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to mount");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let in_plan = |neighbour: &Path| {
            let plan = mount_plan(dir.path()).unwrap();
            let wanted = std::ffi::CString::new(neighbour.as_os_str().as_encoded_bytes()).unwrap();
            plan.read_only.iter().any(|(p, _)| *p == wanted)
        };
        for round in 0..3 {
            let neighbour = tempfile::tempdir().unwrap();
            // A plan before the mount: the table is cached from here on.
            assert!(!in_plan(neighbour.path()), "round {round}: not a mount yet");
            if mount(
                Some("tmpfs"),
                neighbour.path(),
                Some("tmpfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .is_err()
            {
                eprintln!("skipped: cannot mount here");
                return;
            }
            let mounted = in_plan(neighbour.path());
            umount(neighbour.path()).unwrap();
            assert!(
                mounted,
                "round {round}: a mount made after the last plan is made read-only too"
            );
            assert!(
                !in_plan(neighbour.path()),
                "round {round}: an unmounted one is gone from the plan"
            );
        }
    }

    /// A neighbour's mount that goes away between reading the mount table and
    /// the program's start (an engine's container layer) does not take the
    /// program's confinement with it: the spawn still makes its read-only
    /// mount namespace.
    #[test]
    fn a_mount_that_goes_away_after_the_plan_does_not_fail_the_spawn() {
        use nix::mount::{mount, umount, MsFlags};
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to mount");
            return;
        }
        let neighbour = tempfile::tempdir().unwrap();
        if mount(
            Some("tmpfs"),
            neighbour.path(),
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .is_err()
        {
            eprintln!("skipped: cannot mount here");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let plan = mount_plan(dir.path());
        umount(neighbour.path()).unwrap();
        let plan = plan.unwrap();
        let mut launch = Launch::new("sh");
        let script = format!(
            "! touch /etc/shmconf-probe 2>/dev/null && touch '{}/writable'",
            dir.path().display()
        );
        launch.args(["-c", &script]).enter_new_mount_namespace(plan);
        let child = launch
            .spawn()
            .expect("the spawn must not fail on a mount that went away");
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child.pid), None).unwrap();
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(child.pid), 0),
            "the rest is read-only and the dir writable"
        );
    }
}
