//! Local namespaces: every namespace of a scenario is a fresh IPC namespace
//! of the scenario's thread, and its processes run in a PID namespace of
//! their own whose init (`shmconf pid-init`) takes every one of them down
//! when it dies. When the thread and its processes are gone, the kernel
//! destroys the namespaces with every segment in them: nothing to remove.

use std::collections::BTreeMap;
use std::process::Command;

use shmconf::ipcns::IpcNamespace;

use super::{Backend, Capabilities, SetUpError, SetupLog, SkipReason, SpawnRequest, World};
use crate::engine::procs::{PidNamespace, Proc};
use crate::scenario::{IpcSysctl, Needs, Scenario, ScenarioDir, MAIN_NS};

pub struct LocalNamespaces {
    pub capabilities: Capabilities,
    /// `shmconf pid-init`; none: no PID namespace (process groups alone).
    pub pid_init: Option<Vec<String>>,
}

impl Backend for LocalNamespaces {
    fn name(&self) -> &'static str {
        "namespaces"
    }

    fn cannot_run(&self, needs: &Needs) -> Option<SkipReason> {
        if needs.containers {
            return Some(SkipReason::NeedsContainers);
        }
        if needs.sysctl && !self.capabilities.sysctls {
            return Some(SkipReason::Sysctl(
                "/proc/sys/kernel is not writable here (in Docker: --security-opt systempaths=unconfined)".into(),
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
        _dir: &ScenarioDir,
        log: &mut dyn SetupLog,
    ) -> Result<Box<dyn World>, SetUpError> {
        let mut namespaces = BTreeMap::new();
        let mut names = vec![MAIN_NS.to_string()];
        names.extend(
            scenario
                .namespaces
                .iter()
                .filter(|(_, d)| d.share.is_none())
                .map(|(n, _)| n.clone()),
        );
        for name in names {
            let ns = IpcNamespace::unshare_new().map_err(|e| format!("cannot create an IPC namespace: {e}"))?;
            log.namespace(&name, ns.inode().unwrap_or(0));
            namespaces.insert(name, ns);
        }
        // The init must not hold a namespace other than main alive (a dropped
        // namespace must die with its last process), so start it from main.
        namespaces[MAIN_NS]
            .enter()
            .map_err(|e| format!("cannot enter the main namespace: {e}"))?;
        let pid_init = start_pid_init(self.pid_init.as_deref())?;
        Ok(Box::new(LocalWorld {
            namespaces,
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
    namespaces: BTreeMap<String, IpcNamespace>,
    aliases: BTreeMap<String, String>,
    /// Init of the PID namespace: killing it kills every process the
    /// scenario started, even one that left its process group (setsid).
    pid_init: Option<(Proc, PidNamespace)>,
}

impl LocalWorld {
    fn handle(&self, ns: &str) -> Result<&IpcNamespace, String> {
        let real = self.aliases.get(ns).map_or(ns, String::as_str);
        self.namespaces
            .get(real)
            .ok_or_else(|| format!("namespace {ns:?} is not set up (dropped?)"))
    }
}

impl World for LocalWorld {
    fn enter(&mut self, ns: &str) -> Result<(), String> {
        self.handle(ns)?
            .enter()
            .map_err(|e| format!("cannot enter namespace {ns:?}: {e}"))
    }

    fn command(&mut self, req: &SpawnRequest, dir: &ScenarioDir) -> Result<Command, String> {
        Ok(super::local_command(req, dir))
    }

    fn pid_namespace(&mut self) -> Option<&mut PidNamespace> {
        self.pid_init.as_mut().map(|(_, ns)| ns)
    }

    fn set_sysctl(&mut self, _ns: &str, sysctl: IpcSysctl, value: &str) -> Result<(), String> {
        // The thread is in the step's own IPC namespace (entered before the
        // step), and IPC sysctls are per namespace: the host's stay untouched.
        write_sysctl(sysctl, value)
    }

    fn drop_namespace(&mut self, ns: &str) -> Result<(), String> {
        let real = self.aliases.get(ns).cloned().unwrap_or_else(|| ns.to_string());
        self.namespaces
            .remove(&real)
            .map(drop)
            .ok_or_else(|| format!("namespace {ns:?} was not held"))
    }

    fn tear_down(&mut self) -> Vec<Result<String, String>> {
        if let Some((mut init, _)) = self.pid_init.take() {
            init.kill_group();
        }
        self.namespaces.clear();
        vec![]
    }
}

/// Write an IPC sysctl of the calling thread's IPC namespace and read it back.
pub fn write_sysctl(sysctl: IpcSysctl, value: &str) -> Result<(), String> {
    let path = sysctl.proc_path();
    std::fs::write(&path, format!("{value}\n"))
        .and_then(|()| std::fs::read_to_string(&path))
        .map_err(|e| format!("{path}: {e}"))
        .and_then(|back| {
            let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            if norm(&back) == norm(value) {
                Ok(())
            } else {
                Err(format!("wrote {value:?}, reads back {:?}", back.trim()))
            }
        })
}

/// Put this thread's future children in a new PID namespace whose init is
/// `shmconf pid-init` (a reaper). Where PID namespaces cannot be made, process
/// groups alone contain the scenario's processes.
pub(super) fn start_pid_init(init: Option<&[String]>) -> Result<Option<(Proc, PidNamespace)>, String> {
    let Some(init) = init else { return Ok(None) };
    let Ok(mut ns) = PidNamespace::new() else {
        return Ok(None);
    };
    let mut cmd = Command::new(&init[0]);
    cmd.args(&init[1..]);
    match Proc::spawn("pid-init", cmd, Some(&mut ns)) {
        Ok(proc) => Ok(Some((proc, ns))),
        // No PID namespaces here (EPERM): process groups alone contain the processes.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(None),
        Err(e) => Err(format!("cannot start the PID namespace's init: {e}")),
    }
}
