//! Local namespaces: every namespace of a scenario is a fresh IPC namespace
//! of the scenario's thread, and its processes run in a PID namespace of
//! their own whose init (`shmconf pid-init`) takes every one of them down
//! when it dies. When the thread and its processes are gone, the kernel
//! destroys the namespaces with every segment in them: nothing to remove.
//!
//! The programs are confined (see `engine::confine`): the init makes the
//! scenario's mount namespace (a /proc of the PID namespace, everything
//! read-only but the scenario's dir), which every program enters, without
//! capabilities, without the controlling terminal, in the scenario's cgroup.

use shmconf::sysv::spawn::Launch;
use std::collections::BTreeMap;

use shmconf::ipcns::IpcNamespace;

use super::{Backend, Capabilities, Features, SetUpError, SetupLog, SkipReason, SpawnRequest, World, WorldError};
use crate::engine::confine::{ConfineError, Confiner, Orphans, ScenarioConfinement};
use crate::engine::procs::{PidNamespace, Proc};
use crate::scenario::{Feature, IpcSysctl, Scenario, ScenarioDir, MAIN_NS};

/// Why local namespaces could not be made, entered or changed as asked.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot create an IPC namespace: {0}")]
    CreateNamespace(#[source] std::io::Error),
    /// The thread cannot go back to the scenario's main namespace (where
    /// the others are made and the PID namespace's init starts).
    #[error("cannot enter the main namespace: {0}")]
    EnterMain(#[source] nix::errno::Errno),
    #[error("cannot enter namespace {ns:?}: {source}")]
    Enter {
        ns: String,
        #[source]
        source: nix::errno::Errno,
    },
    /// A step names a namespace the world no longer (or never) held.
    #[error("namespace {ns:?} is not set up (dropped?)")]
    NotSetUp { ns: String },
    #[error("namespace {ns:?} was not held")]
    NotHeld { ns: String },
    #[error("namespace {ns:?} has no sandbox to stop")]
    NoSandbox { ns: String },
    /// The sysctl's file cannot be written or read back.
    #[error("{path}: {source}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The kernel took the write and keeps another value.
    #[error("wrote {wrote:?}, reads back {read:?}")]
    SysctlReadBack { wrote: String, read: String },
    #[error("cannot start the PID namespace's init: {0}")]
    PidInit(#[source] std::io::Error),
    /// The init's mount namespace cannot be planned.
    #[error(transparent)]
    Confine(#[from] ConfineError),
}

impl From<LocalError> for SetUpError {
    fn from(e: LocalError) -> SetUpError {
        SetUpError::Broken(Box::new(e))
    }
}

pub struct LocalNamespaces {
    pub capabilities: Capabilities,
    /// `shmconf pid-init`; none: no PID namespace (process groups alone).
    pub pid_init: Option<Vec<String>>,
    pub confiner: Confiner,
}

impl Backend for LocalNamespaces {
    fn name(&self) -> &'static str {
        "namespaces"
    }

    fn features(&self) -> Features {
        features_here(&self.capabilities).without(Feature::Containers, SkipReason::NeedsContainers)
    }

    fn set_up(
        &self,
        scenario: &Scenario,
        dir: &ScenarioDir,
        log: &mut dyn SetupLog,
    ) -> Result<Box<dyn World>, SetUpError> {
        self.world(scenario, dir, log, &mut |_, _| {
            IpcNamespace::unshare_new()
                .map(|ns| (ns, None))
                .map_err(|e| LocalError::CreateNamespace(e).into())
        })
    }
}

/// How a world gets one of its declared namespaces (other than main):
/// a handle, and the process that keeps it (a sandbox's holder), if any,
/// killed with its group when the world lets it go.
pub(super) type NamespaceMaker<'a> =
    dyn FnMut(&str, &crate::scenario::NamespaceDecl) -> Result<(IpcNamespace, Option<Proc>), SetUpError> + 'a;

/// What local namespaces cannot give here, container modes aside (which
/// the sandbox backend gives and this one does not).
pub(super) fn features_here(capabilities: &Capabilities) -> Features {
    Features::all()
        .without_if(!capabilities.sysctls, Feature::Sysctl, || {
            SkipReason::Sysctl(
                "/proc/sys/kernel is not writable here (in Docker: --security-opt systempaths=unconfined)".into(),
            )
        })
        .without_if(!capabilities.other_uids, Feature::OtherUid, || SkipReason::OtherUid)
        .without_if(!capabilities.set_ids, Feature::SetIds, || {
            SkipReason::SetIds("this process does not hold them to pass on".into())
        })
}

impl LocalNamespaces {
    /// A world of local namespaces: main made here, the others by `make`
    /// (called with this thread in main), programs in a PID namespace of the
    /// scenario's own and confined.
    pub(super) fn world(
        &self,
        scenario: &Scenario,
        dir: &ScenarioDir,
        log: &mut dyn SetupLog,
        make: &mut NamespaceMaker,
    ) -> Result<Box<dyn World>, SetUpError> {
        let mut confinement = self.confiner.scenario()?;
        let mut namespaces = BTreeMap::new();
        let mut holders = BTreeMap::new();
        let main = IpcNamespace::unshare_new().map_err(LocalError::CreateNamespace)?;
        log.namespace(MAIN_NS, main.inode().unwrap_or(0));
        namespaces.insert(MAIN_NS.to_string(), main);
        for (name, decl) in scenario.namespaces.iter().filter(|(_, d)| d.share.is_none()) {
            namespaces[MAIN_NS].enter().map_err(LocalError::EnterMain)?;
            let (ns, holder) = make(name, decl)?;
            log.namespace(name, ns.inode().unwrap_or(0));
            namespaces.insert(name.clone(), ns);
            if let Some(holder) = holder {
                holders.insert(name.clone(), holder);
            }
        }
        // The init must not hold a namespace other than main alive (a dropped
        // namespace must die with its last process), so start it from main.
        namespaces[MAIN_NS].enter().map_err(LocalError::EnterMain)?;
        let pid_init = match start_pid_init(self.pid_init.as_deref(), dir)? {
            Some((init, ns, mount_ns)) => {
                if mount_ns {
                    confinement.set_mount_namespace(init.pid)?;
                }
                Some((init, ns))
            }
            None => {
                // Orphans come back to the harness, to be killed at the end.
                crate::engine::confine::become_subreaper();
                None
            }
        };
        Ok(Box::new(LocalWorld {
            confinement,
            namespaces,
            holders,
            aliases: scenario
                .namespaces
                .iter()
                .filter_map(|(n, d)| {
                    d.share
                        .as_ref()
                        .map(|_| (n.clone(), scenario.resolve_ns(n).to_string()))
                })
                .collect(),
            pid_init,
        }))
    }
}

struct LocalWorld {
    confinement: ScenarioConfinement,
    namespaces: BTreeMap<String, IpcNamespace>,
    /// Processes that keep namespaces (sandboxes'), by namespace.
    holders: BTreeMap<String, Proc>,
    aliases: BTreeMap<String, String>,
    /// Init of the PID namespace: killing it kills every process the
    /// scenario started, even one that left its process group (setsid).
    pid_init: Option<(Proc, PidNamespace)>,
}

impl LocalWorld {
    fn handle(&self, ns: &str) -> Result<&IpcNamespace, LocalError> {
        let real = self.aliases.get(ns).map_or(ns, String::as_str);
        self.namespaces
            .get(real)
            .ok_or_else(|| LocalError::NotSetUp { ns: ns.into() })
    }
}

impl World for LocalWorld {
    fn enter(&mut self, ns: &str) -> Result<(), WorldError> {
        self.handle(ns)?
            .enter()
            .map_err(|source| LocalError::Enter { ns: ns.into(), source }.into())
    }

    fn command(&mut self, req: &SpawnRequest, dir: &ScenarioDir) -> Result<Launch, WorldError> {
        Ok(confined_command(req, dir, &self.confinement)?)
    }

    fn spawned(&mut self, pid: i32) {
        self.confinement.spawned(pid);
    }

    fn pid_namespace(&mut self) -> Option<&mut PidNamespace> {
        self.pid_init.as_mut().map(|(_, ns)| ns)
    }

    fn set_sysctl(&mut self, _ns: &str, sysctl: IpcSysctl, value: &str) -> Result<(), WorldError> {
        // The thread is in the step's own IPC namespace (entered before the
        // step), and IPC sysctls are per namespace: the host's stay untouched.
        Ok(write_sysctl(sysctl, value)?)
    }

    fn drop_namespace(&mut self, ns: &str) -> Result<(), WorldError> {
        let real = self.aliases.get(ns).cloned().unwrap_or_else(|| ns.to_string());
        self.namespaces
            .remove(&real)
            .map(drop)
            .ok_or_else(|| LocalError::NotHeld { ns: ns.into() }.into())
    }

    /// A sandbox's end: its holder is killed and the handle closed, so the
    /// namespace lives only as long as the scenario's processes in it.
    fn stop(&mut self, ns: &str) -> Result<(), WorldError> {
        let real = self.aliases.get(ns).cloned().unwrap_or_else(|| ns.to_string());
        let holder = self
            .holders
            .remove(&real)
            .ok_or_else(|| LocalError::NoSandbox { ns: ns.into() })?;
        drop(holder);
        self.drop_namespace(ns)
    }

    fn tear_down(&mut self) -> Vec<Result<String, WorldError>> {
        // Orphans go to the PID namespace's init and die with it; without
        // one, they come back to the harness, and scenarios run side by
        // side here: only this one's.
        let orphans = match self.pid_init.take() {
            Some((mut init, _)) => {
                init.kill_group();
                Orphans::NoneComeBack
            }
            None => Orphans::OfItsGroups,
        };
        self.holders.clear();
        self.namespaces.clear();
        self.confinement
            .finish(orphans)
            .into_iter()
            .map(|r| r.map_err(WorldError::from))
            .collect()
    }
}

/// Write an IPC sysctl of the calling thread's IPC namespace and read it back.
pub fn write_sysctl(sysctl: IpcSysctl, value: &str) -> Result<(), LocalError> {
    let path = sysctl.proc_path();
    let back = std::fs::write(&path, format!("{value}\n"))
        .and_then(|()| std::fs::read_to_string(&path))
        .map_err(|source| LocalError::Sysctl { path, source })?;
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    if norm(&back) == norm(value) {
        Ok(())
    } else {
        Err(LocalError::SysctlReadBack {
            wrote: value.into(),
            read: back.trim().into(),
        })
    }
}

/// `req` as a confined process of this machine (see `engine::confine`), in
/// the calling thread's IPC namespace.
pub fn confined_command(
    req: &SpawnRequest,
    dir: &ScenarioDir,
    confinement: &ScenarioConfinement,
) -> Result<Launch, ConfineError> {
    let mut launch = Launch::new(&req.argv[0]);
    launch.args(&req.argv[1..]).current_dir(dir.path()).envs(req.env);
    // The uid switch is the confinement's: after entering the mount
    // namespace, which takes privileges a switched process has lost.
    confinement.apply(&mut launch, dir.path(), req.uid, req.gid, req.keep)?;
    Ok(launch)
}

/// Put this thread's future children in a new PID namespace whose init is
/// `shmconf pid-init` (a reaper), started in the scenario's mount namespace
/// (`dir` writable; see `confine::mount_plan`). Where PID namespaces cannot
/// be made, process groups (and the harness as subreaper) contain the
/// scenario's processes. Returns the init, its namespace, and whether it has
/// the mount namespace.
pub(super) fn start_pid_init(
    init: Option<&[String]>,
    dir: &ScenarioDir,
) -> Result<Option<(Proc, PidNamespace, bool)>, LocalError> {
    let Some(init) = init else { return Ok(None) };
    let Ok(mut ns) = PidNamespace::new() else {
        return Ok(None);
    };
    let command = || {
        let mut cmd = Launch::new(&init[0]);
        cmd.args(&init[1..]);
        cmd
    };
    let mut confined = command();
    confined.enter_new_mount_namespace(crate::engine::confine::mount_plan(dir.path())?);
    let mount_error = match Proc::spawn("pid-init", confined, Some(&mut ns)) {
        Ok(proc) => return Ok(Some((proc, ns, true))),
        Err(e) => e,
    };
    // Without the mount namespace (a container whose security profile
    // forbids mount), or without a PID namespace at all (EPERM again).
    match Proc::spawn("pid-init", command(), Some(&mut ns)) {
        Ok(proc) => {
            // Programs still run without capabilities, in the scenario's
            // PID namespace and bounds, but see the filesystem and /proc as
            // the harness does: said once per run.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                eprintln!(
                    "shmconf: note: programs under test share the harness's mounts (no mount namespace: {mount_error})"
                )
            });
            Ok(Some((proc, ns, false)))
        }
        Err(e) if shmconf::sysv::spawn::errno_of(&e) == Some(libc::EPERM) => Ok(None),
        Err(e) => Err(LocalError::PidInit(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Needs;

    #[test]
    fn a_world_s_errors_say_what_they_said() {
        let back = LocalError::SysctlReadBack {
            wrote: "1".into(),
            read: "0".into(),
        };
        assert_eq!(WorldError::from(back).to_string(), "wrote \"1\", reads back \"0\"");
        let gone = LocalError::NotSetUp { ns: "b".into() };
        assert_eq!(gone.to_string(), "namespace \"b\" is not set up (dropped?)");
        let stop = WorldError::NoContainerToStop { ns: "b".into() };
        assert_eq!(
            stop.to_string(),
            "namespace \"b\" has no container to stop on this backend"
        );
        let init = LocalError::PidInit(std::io::Error::other("no"));
        assert!(matches!(SetUpError::from(init), SetUpError::Broken(_)));
    }

    fn capabilities(set_ids: bool) -> Capabilities {
        Capabilities {
            namespaces: true,
            other_uids: true,
            set_ids,
            sysctls: true,
        }
    }

    /// A process that switches its own uid runs only where the harness can
    /// pass CAP_SETUID/CAP_SETGID on; otherwise a SKIP that says why.
    #[test]
    fn switching_ids_needs_the_capabilities_to_pass_on() {
        let needs = Needs {
            set_ids: true,
            ..Needs::default()
        };
        assert_eq!(features_here(&capabilities(true)).missing_for(&needs), None);
        let skip = features_here(&capabilities(false)).missing_for(&needs).expect("a SKIP");
        assert!(matches!(skip, SkipReason::SetIds(_)), "{skip:?}");
        assert!(skip.to_string().contains("CAP_SETUID and CAP_SETGID"), "{skip}");
        assert_eq!(features_here(&capabilities(false)).missing_for(&Needs::default()), None);
    }
}
