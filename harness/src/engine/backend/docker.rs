//! The Docker backend: each IPC namespace of a scenario is a container of our
//! image started with the matching `--ipc` mode, and steps run in it with
//! `docker exec`. The harness still reads the kernel's truth directly: it
//! enters each container's IPC namespace (`/proc/PID/ns/ipc`) to read the
//! segment table. Every container is labelled `io.shmconf.role=backend` and
//! `io.shmconf.run=<run id>` and removed when its scenario ends, whatever
//! happened (its handle's Drop runs `docker rm -f`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use shmconf::ipcns::IpcNamespace;

use super::shared::Ownership;
use super::{Backend, SetupLog, SkipReason, SpawnRequest, World};
use crate::events::{Ending, EventKind, SegRow};
use crate::scenario::files::FileIdentity;
use crate::scenario::{IpcSysctl, Needs, Scenario, ScenarioDir, MAIN_NS};

/// How the backend reaches Docker.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// Our image (built from this repository's Dockerfile).
    pub image: String,
    /// Label value shared by every container of one run.
    pub run_id: String,
}

impl DockerConfig {
    pub fn new(image: &str) -> DockerConfig {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        DockerConfig {
            image: image.into(),
            run_id: format!("{}-{:x}", std::process::id(), nanos % 0xffff_ffff),
        }
    }
}

/// Docker's `--ipc` modes as scenarios name them, plus `local` (the harness's
/// own namespace, no container: where `--ipc host` containers should show up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpcMode {
    Private,
    Shareable,
    /// `container:<container of this scenario namespace>`.
    Container(String),
    Host,
    None,
    Local,
}

impl IpcMode {
    pub fn parse(s: &str) -> Result<IpcMode, String> {
        Ok(match s {
            "private" => IpcMode::Private,
            "shareable" => IpcMode::Shareable,
            "host" => IpcMode::Host,
            "none" => IpcMode::None,
            "local" => IpcMode::Local,
            _ => match s.strip_prefix("container:") {
                Some(ns) if !ns.is_empty() => IpcMode::Container(ns.into()),
                _ => {
                    return Err(format!(
                        "docker mode {s:?}: expected private, shareable, container:NS, host, none or local"
                    ))
                }
            },
        })
    }

    /// Does a scenario in this mode touch the harness's (host's) namespace?
    pub fn touches_host(&self) -> bool {
        matches!(self, IpcMode::Host | IpcMode::Local)
    }
}

/// A running container of a scenario, removed on drop.
#[derive(Debug)]
pub struct Container {
    pub name: String,
    pub pid: i32,
    /// Keeps the container's IPC namespace reachable for snapshots.
    pub ipc: IpcNamespace,
}

impl Container {
    /// `docker run -d` our image with `--ipc <mode>`, the scenario dir mounted
    /// at the same path, and `shmconf pid-init` as its process (it waits).
    pub fn start(cfg: &DockerConfig, name: &str, ipc: &str, dir: &Path) -> Result<Container, String> {
        let d = dir.display().to_string();
        let out = Command::new("docker")
            .args(["run", "-d", "--rm", "--name", name, "--ipc", ipc])
            .args(["--label", "io.shmconf.role=backend", "--label"])
            .arg(format!("io.shmconf.run={}", cfg.run_id))
            .args([
                "-v",
                &format!("{d}:{d}"),
                "-w",
                &d,
                "--entrypoint",
                "/usr/local/bin/shmconf",
            ])
            .arg(&cfg.image)
            .arg("pid-init")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run docker: {e}"))?;
        crate::engine::rundir::note_container(name);
        if !out.status.success() {
            // A failed `docker run` can still leave a created container.
            remove(name);
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        let inspect = Command::new("docker")
            .args(["inspect", "-f", "{{.State.Pid}}", name])
            .output()
            .map_err(|e| format!("docker inspect: {e}"))?;
        let pid: i32 = String::from_utf8_lossy(&inspect.stdout).trim().parse().unwrap_or(0);
        let ipc = std::fs::File::open(format!("/proc/{pid}/ns/ipc"))
            .map(IpcNamespace::from_file)
            .map_err(|e| {
                remove(name);
                format!("container {name} (pid {pid}): cannot open its IPC namespace: {e}")
            })?;
        Ok(Container {
            name: name.into(),
            pid,
            ipc,
        })
    }

    /// The `docker exec` command line that runs `argv` in this container.
    pub fn exec_argv(
        &self,
        dir: &Path,
        uid: Option<u32>,
        gid: Option<u32>,
        env: &std::collections::BTreeMap<String, String>,
        argv: &[String],
    ) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "docker".into(),
            "exec".into(),
            "-i".into(),
            "-w".into(),
            dir.display().to_string(),
        ];
        if let Some(uid) = uid {
            v.extend(["-u".into(), format!("{uid}:{}", gid.unwrap_or(uid))]);
        }
        for (k, val) in env {
            v.extend(["-e".into(), format!("{k}={val}")]);
        }
        v.push(self.name.clone());
        v.extend(argv.iter().cloned());
        v
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        remove(&self.name);
    }
}

fn remove(name: &str) {
    let _ = Command::new("docker")
        .args(["rm", "-f", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Is the Docker engine reachable?
pub fn available() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Scenarios that touch the host's IPC namespace (`--ipc host`) run one at a time.
static HOST_NS: Mutex<()> = Mutex::new(());

pub struct DockerBackend {
    pub config: DockerConfig,
}

impl Backend for DockerBackend {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn cannot_run(&self, needs: &Needs) -> Option<SkipReason> {
        if needs.explore {
            return Some(SkipReason::Unsupported(
                "explores orders, each in a fresh IPC namespace: needs the local backend with namespaces".into(),
            ));
        }
        if needs.sysctl {
            return Some(SkipReason::Sysctl(
                "a container's /proc/sys is read-only (run it with the local backend)".into(),
            ));
        }
        if needs.drop_ns {
            return Some(SkipReason::Unsupported(
                "drops a namespace: the docker backend's namespaces belong to containers".into(),
            ));
        }
        if needs.kill {
            return Some(SkipReason::Unsupported(
                "signals a process: the docker backend cannot reach processes inside containers".into(),
            ));
        }
        None
    }

    fn set_up(&self, scenario: &Scenario, dir: &ScenarioDir, log: &mut dyn SetupLog) -> Result<Box<dyn World>, String> {
        let cfg = &self.config;
        let modes = docker_modes(scenario)?;
        let mut world = DockerWorld {
            containers: BTreeMap::new(),
            local: BTreeMap::new(),
            host: None,
            host_names: modes
                .iter()
                .filter(|(_, m)| m.touches_host())
                .map(|(n, _)| n.clone())
                .collect(),
            current: String::new(),
        };
        if modes.iter().any(|(_, m)| m.touches_host()) {
            let lock = HOST_NS.lock().unwrap_or_else(|p| p.into_inner());
            world.host = Some((lock, Ownership::take_baseline()?));
        }
        for (name, mode) in modes {
            let decl = scenario.namespaces.get(&name);
            let ipc = match &mode {
                IpcMode::Local => {
                    let ns = IpcNamespace::current().map_err(|e| e.to_string())?;
                    log.namespace(&name, ns.inode().unwrap_or(0));
                    world.local.insert(name, ns);
                    continue;
                }
                IpcMode::Private => "private".to_string(),
                IpcMode::Shareable => "shareable".to_string(),
                IpcMode::Host => "host".to_string(),
                IpcMode::None => "none".to_string(),
                IpcMode::Container(target) => format!("container:{}", container_name(cfg, scenario, target)),
            };
            let cname = container_name(cfg, scenario, &name);
            match Container::start(cfg, &cname, &ipc, dir.path()) {
                Ok(c) => {
                    log.namespace(&name, c.ipc.inode().unwrap_or(0));
                    log.event(EventKind::Container {
                        ns: name.clone(),
                        name: cname,
                        ipc,
                        pid: c.pid,
                        error: None,
                    });
                    world.containers.insert(name, c);
                }
                Err(error) => {
                    log.event(EventKind::Container {
                        ns: name.clone(),
                        name: cname,
                        ipc: ipc.clone(),
                        pid: 0,
                        error: Some(error.clone()),
                    });
                    if decl.and_then(|d| d.expect_error.as_ref()).is_none() {
                        return Err(format!(
                            "docker refused the container of namespace {name:?} (--ipc {ipc}): {error}"
                        ));
                    }
                }
            }
        }
        Ok(Box::new(world))
    }
}

struct DockerWorld {
    containers: BTreeMap<String, Container>,
    /// `local` namespaces: the harness's own.
    local: BTreeMap<String, IpcNamespace>,
    /// Held while the scenario may touch the host's namespace, with what is
    /// the scenario's own there.
    host: Option<(MutexGuard<'static, ()>, Ownership)>,
    /// Namespaces that are the host's own (`host` and `local` modes).
    host_names: std::collections::BTreeSet<String>,
    /// The namespace the thread was last moved into.
    current: String,
}

impl World for DockerWorld {
    fn enter(&mut self, ns: &str) -> Result<(), String> {
        let handle = match (self.containers.get(ns), self.local.get(ns)) {
            (Some(c), _) => &c.ipc,
            (None, Some(l)) => l,
            (None, None) => return Err(format!("namespace {ns:?} has no running container")),
        };
        handle
            .enter()
            .map_err(|e| format!("cannot enter namespace {ns:?}: {e}"))?;
        self.current = ns.to_string();
        Ok(())
    }

    fn command(&mut self, req: &SpawnRequest, dir: &ScenarioDir) -> Result<Command, String> {
        let container = self
            .containers
            .get(req.ns)
            .ok_or_else(|| format!("namespace {:?} has no running container to run a process in", req.ns))?;
        let argv = container.exec_argv(dir.path(), req.uid, req.gid, req.env, &req.argv);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(dir.path());
        Ok(cmd)
    }

    fn ending(&self, ending: Ending) -> Ending {
        from_docker_exec(ending)
    }

    fn claims_key(&mut self, key: i32) {
        if let Some((_, o)) = &mut self.host {
            o.key(key);
        }
    }
    fn claims_id(&mut self, shmid: i32) {
        if let Some((_, o)) = &mut self.host {
            o.id(shmid);
        }
    }
    fn claims_file(&mut self, file: FileIdentity) {
        if let Some((_, o)) = &mut self.host {
            o.file(file);
        }
    }
    fn is_own(&mut self, row: &SegRow) -> bool {
        match &mut self.host {
            // Only the host's namespace has other programs' segments; the
            // thread reads it while in a `local` or `host` namespace.
            Some((_, o)) if self.host_names.contains(&self.current) => o.is_own(row),
            _ => true,
        }
    }

    fn set_sysctl(&mut self, _ns: &str, _sysctl: IpcSysctl, _value: &str) -> Result<(), String> {
        Err("a container's /proc/sys is read-only".into())
    }

    fn stop(&mut self, ns: &str) -> Result<(), String> {
        self.containers
            .remove(ns)
            .map(drop)
            .ok_or_else(|| "no container is running for it".to_string())
    }

    fn tear_down(&mut self) -> Vec<String> {
        self.containers.clear(); // each Container's Drop runs `docker rm -f`
        match self.host.take() {
            Some((_lock, mut o)) => o.remove_own(),
            None => vec![],
        }
    }
}

/// Every namespace of a scenario with its Docker mode (default private),
/// donors before their joiners.
fn docker_modes(scenario: &Scenario) -> Result<Vec<(String, IpcMode)>, String> {
    let mut all: Vec<(String, IpcMode)> = vec![(MAIN_NS.into(), IpcMode::Private)];
    for (name, decl) in &scenario.namespaces {
        all.push((name.clone(), decl.docker.clone().unwrap_or(IpcMode::Private)));
    }
    // Only namespaces some step uses, or that are joined or expected to fail.
    let main_joined = all.iter().any(|(_, m)| *m == IpcMode::Container(MAIN_NS.into()));
    let main_used = scenario.steps().iter().any(|s| s.ns == MAIN_NS);
    all.retain(|(n, _)| n != MAIN_NS || main_used || main_joined);
    let mut ordered = Vec::new();
    while !all.is_empty() {
        let before = all.len();
        let mut i = 0;
        while i < all.len() {
            let ready = match &all[i].1 {
                IpcMode::Container(t) => ordered.iter().any(|(n, _): &(String, IpcMode)| n == t),
                _ => true,
            };
            if ready {
                ordered.push(all.remove(i));
            } else {
                i += 1;
            }
        }
        if all.len() == before {
            return Err(format!(
                "namespaces join each other in a cycle: {:?}",
                all.iter().map(|a| &a.0).collect::<Vec<_>>()
            ));
        }
    }
    Ok(ordered)
}

fn container_name(cfg: &DockerConfig, scenario: &Scenario, ns: &str) -> String {
    // Unique per scenario within the run: the description's hash keeps names short.
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    scenario.description.hash(&mut h);
    std::thread::current().id().hash(&mut h);
    format!("shmconf-{}-{:x}-{ns}", cfg.run_id, h.finish() & 0xffff_ffff)
}

/// `docker exec` reports a signal death as exit code 128+N.
fn from_docker_exec(ending: Ending) -> Ending {
    match ending {
        Ending::Exited { code } if (129..=128 + 64).contains(&code) => {
            match nix::sys::signal::Signal::try_from(code - 128) {
                Ok(sig) => Ending::Signaled {
                    signal: sig.as_str().into(),
                },
                Err(_) => Ending::Exited { code },
            }
        }
        other => other,
    }
}
