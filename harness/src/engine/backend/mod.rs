//! Where a scenario's namespaces live and how its processes start there.
//!
//! A [`Backend`] declares once, before anything runs, the [`Features`] it
//! lacks here (each with a typed [`SkipReason`]); the plan computes from
//! them which scenarios it skips. It sets up a [`World`] for a scenario on the
//! scenario's own thread: the namespaces (or containers), the way a process
//! is started in one, and what is removed at the end. The step interpreter
//! (`engine`) talks only to these traits, so a new backend is one file here,
//! not branches in the interpreter.

pub mod containers;
pub mod local;
pub mod sandbox;
pub mod shared;

use shmconf::sysv::spawn::Launch;
use std::collections::BTreeMap;

use crate::events::{Ending, SegRow};
use crate::scenario::files::FileIdentity;
use crate::scenario::{Feature, IpcSysctl, Needs, Scenario, ScenarioDir};

/// Why a scenario cannot run on a backend here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// It needs more IPC namespaces than the backend can make.
    Namespaces { needed: usize, why: String },
    /// It sets a sysctl, and the backend cannot do that safely or at all.
    Sysctl(String),
    /// It runs a process as another uid, which needs real root.
    OtherUid,
    /// A process of it switches its own ids (CAP_SETUID and CAP_SETGID),
    /// which the backend cannot give it: why.
    SetIds(String),
    /// It uses container IPC modes or pods, or stops containers.
    NeedsContainers,
    /// The backend cannot do what a step asks (signal, drop a namespace, explore).
    Unsupported(String),
    /// Found out while running (e.g. a filesystem that gives no colliding inodes).
    Environment(String),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Namespaces { needed, why } => write!(f, "needs {needed} IPC namespaces: {why}"),
            SkipReason::Sysctl(why) => write!(f, "sets a sysctl: {why}"),
            SkipReason::OtherUid => f.write_str("runs a process as another uid, which needs real root"),
            SkipReason::SetIds(why) => write!(
                f,
                "a process switches its own uid and gid (seteuid), which needs CAP_SETUID and CAP_SETGID: {why}"
            ),
            SkipReason::NeedsContainers => {
                f.write_str("uses container IPC modes, pods or containers: run it with --backend docker or podman")
            }
            SkipReason::Unsupported(why) | SkipReason::Environment(why) => f.write_str(why),
        }
    }
}

/// What a backend can give here, declared once: every [`Feature`] it
/// lacks with the reason a scenario that needs it is skipped, or nothing at
/// all (`unavailable`: the engine or runtime is missing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    unavailable: Option<SkipReason>,
    lacking: BTreeMap<Feature, SkipReason>,
}

impl Features {
    /// Every feature.
    pub fn all() -> Features {
        Features::default()
    }

    /// Nothing runs here, for this reason.
    pub fn unavailable(why: SkipReason) -> Features {
        Features {
            unavailable: Some(why),
            ..Features::default()
        }
    }

    /// Lacks `feature`, for this reason (the first reason given stays).
    #[must_use]
    pub fn without(mut self, feature: Feature, why: SkipReason) -> Features {
        self.lacking.entry(feature).or_insert(why);
        self
    }

    /// Lacks `feature` when `lacking`.
    #[must_use]
    pub fn without_if(self, lacking: bool, feature: Feature, why: impl FnOnce() -> SkipReason) -> Features {
        if lacking {
            self.without(feature, why())
        } else {
            self
        }
    }

    /// Why a scenario with these needs cannot run here: the backend's
    /// unavailability, else the first needed feature it lacks (in
    /// [`Feature`] order); none when it can run.
    pub fn missing_for(&self, needs: &Needs) -> Option<SkipReason> {
        if let Some(why) = &self.unavailable {
            return Some(why.clone());
        }
        let (feature, why) = needs
            .features()
            .into_iter()
            .find_map(|f| self.lacking.get_key_value(&f))?;
        Some(match (feature, why) {
            // How many namespaces is the scenario's to say.
            (Feature::SeveralNamespaces, SkipReason::Namespaces { why, .. }) => SkipReason::Namespaces {
                needed: needs.namespaces,
                why: why.clone(),
            },
            (_, why) => why.clone(),
        })
    }
}

/// What failed while a world was set up: the typed error of the module
/// that failed (its `Display` is the verdict's message).
pub type SetUpCause = Box<dyn std::error::Error + Send + Sync>;

/// Why a scenario's world could not be set up. Which of the two a module's
/// error is, its variant says (the `From` impls), never its text.
#[derive(Debug, thiserror::Error)]
pub enum SetUpError {
    /// Something that should have worked did not: a BROKEN verdict.
    #[error(transparent)]
    Broken(SetUpCause),
    /// The backend found out only now that it cannot give the scenario what
    /// it needs here (a runtime that cannot run pods): a SKIP with the reason.
    #[error(transparent)]
    Unavailable(SetUpCause),
}

/// The engine's own set-up messages (its scenario dir and key files).
impl From<String> for SetUpError {
    fn from(message: String) -> SetUpError {
        SetUpError::Broken(message.into())
    }
}

impl From<crate::engine::confine::ConfineError> for SetUpError {
    fn from(e: crate::engine::confine::ConfineError) -> SetUpError {
        SetUpError::Broken(Box::new(e))
    }
}

/// The scenario asks for a tmpfs this machine cannot give: a SKIP.
impl From<crate::engine::tmpfs::TmpfsError> for SetUpError {
    fn from(e: crate::engine::tmpfs::TmpfsError) -> SetUpError {
        SetUpError::Unavailable(Box::new(e))
    }
}

/// The segment table (the shared namespace's baseline) cannot be read.
impl From<crate::engine::oracle::ReadError> for SetUpError {
    fn from(e: crate::engine::oracle::ReadError) -> SetUpError {
        SetUpError::Broken(Box::new(e))
    }
}

/// Why a world could not do what a step asked: the step's error, or a
/// BROKEN verdict; at tear-down, something of the scenario's left behind.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// A stop on a backend without containers or sandboxes.
    #[error("namespace {ns:?} has no container to stop on this backend")]
    NoContainerToStop { ns: String },
    /// A drop on a backend whose namespaces the scenario does not hold.
    #[error("namespace {ns:?} cannot be dropped on this backend")]
    CannotDrop { ns: String },
    #[error(transparent)]
    Local(#[from] local::LocalError),
    #[error(transparent)]
    Shared(#[from] shared::SharedError),
    #[error(transparent)]
    Container(#[from] containers::ContainerError),
    /// Confining a program, or undoing the confinement at the end.
    #[error(transparent)]
    Confine(#[from] crate::engine::confine::ConfineError),
}

/// What this process can do, probed once.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// IPC namespaces can be made and entered by handle.
    pub namespaces: bool,
    pub other_uids: bool,
    /// CAP_SETUID and CAP_SETGID are in this process's permitted set, so a
    /// process it starts can keep them.
    pub set_ids: bool,
    /// /proc/sys/kernel is writable (Docker mounts it read-only).
    pub sysctls: bool,
}

impl Capabilities {
    pub fn detect() -> Capabilities {
        // A namespace must be made *and* held by a handle (gVisor lets a
        // thread unshare but has no /proc/thread-self/ns/ipc to hold it by).
        let namespaces = shmconf::ipcns::can_unshare_ipc() && std::fs::File::open("/proc/thread-self/ns/ipc").is_ok();
        // Running as another uid needs real root: root in a user namespace
        // of our own maps a single uid.
        let other_uids = nix::unistd::geteuid().is_root()
            && std::fs::read_to_string("/proc/self/uid_map")
                .map(|m| m.lines().any(|l| l.split_whitespace().nth(2).is_some_and(|n| n != "1")))
                .unwrap_or(false);
        const CAP_SETGID: u64 = 1 << 6;
        const CAP_SETUID: u64 = 1 << 7;
        let permitted = shmconf::sysv::process::CapabilitySets::current().map_or(0, |c| c.permitted);
        let set_ids = permitted & (CAP_SETUID | CAP_SETGID) == CAP_SETUID | CAP_SETGID;
        let sysctls = nix::unistd::access("/proc/sys/kernel/shm_rmid_forced", nix::unistd::AccessFlags::W_OK).is_ok();
        Capabilities {
            namespaces,
            other_uids,
            set_ids,
            sysctls,
        }
    }
}

/// A process as the interpreter wants it started.
pub struct SpawnRequest<'a> {
    pub ns: &'a str,
    pub argv: Vec<String>,
    pub env: &'a BTreeMap<String, String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The capabilities it keeps (see `Spawn::keep`).
    pub keep: crate::scenario::KeptCapabilities,
}

/// Records setup and teardown events of a backend.
pub trait SetupLog {
    fn namespace(&mut self, name: &str, inode: u64);
    fn event(&mut self, kind: crate::events::EventKind);
}

pub trait Backend: Send + Sync {
    /// Name in logs and reports.
    fn name(&self) -> &'static str;

    /// What it cannot give here, declared once (the plan decides from it).
    fn features(&self) -> Features;

    /// How many scenarios may run at once (1 where they share a namespace).
    fn max_parallel(&self) -> Option<usize> {
        None
    }

    /// Make the scenario's namespaces, on the calling thread (the scenario's
    /// own), which the world may move between them.
    fn set_up(
        &self,
        scenario: &Scenario,
        dir: &ScenarioDir,
        log: &mut dyn SetupLog,
    ) -> Result<Box<dyn World>, SetUpError>;
}

/// One scenario's namespaces, alive until [`World::tear_down`] (or drop).
pub trait World {
    /// Move the calling thread into namespace `ns` (where the oracle reads and
    /// where local processes are spawned).
    fn enter(&mut self, ns: &str) -> Result<(), WorldError>;

    /// The oracle for the namespace last entered, where the world has its
    /// own (a sandbox read from inside); none: the engine's oracle, on the
    /// calling thread.
    fn oracle(&self) -> Option<&dyn crate::engine::oracle::Oracle> {
        None
    }

    /// ftok of a scenario file as the namespace last entered computes it,
    /// where that differs from this machine's (a sandbox's kernel has its
    /// own st_dev); none: computed here.
    fn ftok(&mut self, _file: &str, _proj_id: i32) -> Option<Result<i32, crate::engine::oracle::ReadError>> {
        None
    }

    /// The command that starts `req` in its namespace, with the scenario dir
    /// as working directory.
    fn command(&mut self, req: &SpawnRequest, dir: &ScenarioDir) -> Result<Launch, WorldError>;

    /// The PID namespace to start processes in, if the world has one.
    fn pid_namespace(&mut self) -> Option<&mut crate::engine::procs::PidNamespace> {
        None
    }

    /// How the backend's wrapper reports a process's end, mapped back to it
    /// (`docker exec` turns a death by signal into exit 128+N).
    fn ending(&self, ending: Ending) -> Ending {
        ending
    }

    /// Note a process the scenario started (its pid as the oracle shows cpid).
    fn spawned(&mut self, _pid: i32) {}

    /// Note a key the scenario resolved, a segment id it saved (from one of
    /// its own segments), a key file it made. The shared isolation decides
    /// by provenance and takes only ids; the containers' `host` mode, whose
    /// creators run in containers, also takes keys and key files.
    fn claims_key(&mut self, _key: i32) {}
    fn claims_id(&mut self, _shmid: i32) {}
    fn claims_file(&mut self, _file: FileIdentity) {}

    /// Is this row one of the scenario's own? Where the namespace is shared
    /// with other programs, their segments are neither judged nor touched.
    /// (A row once judged own stays own, e.g. after IPC_RMID resets its key.)
    fn is_own(&mut self, _row: &SegRow) -> bool {
        true
    }

    fn set_sysctl(&mut self, ns: &str, sysctl: IpcSysctl, value: &str) -> Result<(), WorldError>;

    /// Remove the container behind `ns` (Docker).
    fn stop(&mut self, ns: &str) -> Result<(), WorldError> {
        Err(WorldError::NoContainerToStop { ns: ns.into() })
    }

    /// Close the world's handle on `ns`, so it lives only as long as its processes.
    fn drop_namespace(&mut self, ns: &str) -> Result<(), WorldError> {
        Err(WorldError::CannotDrop { ns: ns.into() })
    }

    /// Remove what the scenario made that does not go away by itself, after
    /// every process is gone; returns what was removed, for the log, and
    /// what could not be (something of the scenario's left behind).
    fn tear_down(&mut self) -> Vec<Result<String, WorldError>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn capabilities(all: bool) -> Capabilities {
        Capabilities {
            namespaces: true,
            other_uids: all,
            set_ids: all,
            sysctls: all,
        }
    }

    fn needs(features: &[Feature]) -> Needs {
        let has = |f| features.contains(&f);
        Needs {
            containers: has(Feature::Containers),
            explore: has(Feature::Explore),
            namespaces: if has(Feature::SeveralNamespaces) { 3 } else { 1 },
            reading_barrier: has(Feature::ReadingBarrier),
            sysctl: has(Feature::Sysctl),
            drop_ns: has(Feature::DropNamespace),
            other_uid: has(Feature::OtherUid),
            set_ids: has(Feature::SetIds),
            kill: has(Feature::Kill),
            ..Needs::default()
        }
    }

    fn backend(name: &str, all: bool) -> Box<dyn Backend> {
        let confiner = || crate::engine::confine::Confiner::new(Default::default());
        let local = || local::LocalNamespaces {
            capabilities: capabilities(all),
            pid_init: None,
            confiner: confiner(),
        };
        match name {
            "local" => Box::new(local()),
            "shared" => Box::new(shared::SharedNamespace {
                capabilities: capabilities(all),
                pid_init: None,
                confiner: confiner(),
            }),
            "docker" => Box::new(containers::ContainerBackend {
                config: containers::ContainerConfig::new(containers::EngineKind::Docker, "img"),
                unavailable: (!all).then(|| "no daemon".to_string()),
            }),
            "bwrap" => Box::new(sandbox::SandboxBackend {
                kind: sandbox::SandboxKind::Bwrap,
                unavailable: (!all).then(|| "no bwrap".to_string()),
                local: local(),
            }),
            other => panic!("no backend {other}"),
        }
    }

    /// Each backend's declared features, read by the plan: which needs it
    /// runs, and the reason (its words) for the first it lacks, in
    /// `Feature` order when several are lacking.
    #[rstest]
    #[case::local_runs_what_it_can("local", true, &[Feature::SeveralNamespaces, Feature::Explore, Feature::Sysctl, Feature::Kill, Feature::DropNamespace, Feature::ReadingBarrier, Feature::OtherUid, Feature::SetIds], None)]
    #[case::local_has_no_containers("local", true, &[Feature::Kill, Feature::Containers], Some("--backend docker or podman"))]
    #[case::local_without_rights_sysctl_first("local", false, &[Feature::SetIds, Feature::Sysctl, Feature::OtherUid], Some("/proc/sys/kernel is not writable"))]
    #[case::local_without_rights_uid_before_ids("local", false, &[Feature::SetIds, Feature::OtherUid], Some("another uid"))]
    #[case::shared_one_namespace("shared", true, &[Feature::Kill, Feature::ReadingBarrier, Feature::OtherUid], None)]
    #[case::shared_counts_the_namespaces("shared", true, &[Feature::SeveralNamespaces, Feature::Sysctl], Some("needs 3 IPC namespaces: this process cannot create"))]
    #[case::shared_explore_before_namespaces("shared", true, &[Feature::SeveralNamespaces, Feature::Explore], Some("needs 2 IPC namespaces: explores orders"))]
    #[case::shared_explore_alone("shared", true, &[Feature::Explore], Some("needs 2 IPC namespaces: explores orders"))]
    #[case::shared_drop("shared", true, &[Feature::DropNamespace], Some("drops a namespace, which needs"))]
    #[case::shared_without_ids("shared", false, &[Feature::SetIds], Some("does not hold them"))]
    #[case::docker_runs_containers("docker", true, &[Feature::Containers, Feature::SeveralNamespaces, Feature::OtherUid], None)]
    #[case::docker_kill_last("docker", true, &[Feature::Kill, Feature::SetIds], Some("--cap-drop ALL"))]
    #[case::docker_barrier("docker", true, &[Feature::Kill, Feature::ReadingBarrier], Some("relays the input"))]
    #[case::docker_unavailable_says_so_first("docker", false, &[], Some("no daemon"))]
    #[case::bwrap_runs_containers("bwrap", true, &[Feature::Containers, Feature::Kill, Feature::Explore], None)]
    #[case::bwrap_unavailable("bwrap", false, &[Feature::Containers], Some("no bwrap"))]
    fn a_backend_declares_what_it_lacks_and_the_plan_says_the_first(
        #[case] name: &str,
        #[case] all: bool,
        #[case] needed: &[Feature],
        #[case] says: Option<&str>,
    ) {
        let missing = backend(name, all).features().missing_for(&needs(needed));
        match (says, missing) {
            (None, None) => {}
            (Some(words), Some(why)) => assert!(why.to_string().contains(words), "{words:?} in {why}"),
            (expected, got) => panic!("{name}: expected {expected:?}, got {got:?}"),
        }
    }

    /// Needs map onto features one to one (a need forgotten here would
    /// run a scenario on a backend that cannot give it).
    #[test]
    fn every_need_is_a_feature() {
        let all = [
            Feature::Containers,
            Feature::Explore,
            Feature::SeveralNamespaces,
            Feature::ReadingBarrier,
            Feature::Sysctl,
            Feature::DropNamespace,
            Feature::OtherUid,
            Feature::SetIds,
            Feature::Kill,
        ];
        for f in all {
            assert_eq!(needs(&[f]).features().into_iter().collect::<Vec<_>>(), vec![f]);
        }
        assert!(Needs::default().features().is_empty());
    }
}
