//! The container backends (Docker, Podman): each IPC namespace of a
//! scenario is a container of our image started with the matching `--ipc`
//! mode, or a member of a pod, and steps run in it with `docker exec` /
//! `podman exec`. The harness reads the kernel's truth directly where it
//! can: it enters each container's IPC namespace (`/proc/PID/ns/ipc`) to
//! read the segment table. A sandbox with a kernel of its own (gVisor's
//! runsc as Podman's OCI runtime) has no host namespace to enter: there the
//! oracle runs inside the container ([`InContainer`]). Every container and
//! pod is labelled or named `shmconf-<run>-...`, noted in the run dir, and
//! removed when its scenario ends, whatever happened (handles' Drop).

use shmconf::sysv::spawn::Launch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use shmconf::ipcns::IpcNamespace;

use super::shared::Ownership;
use super::{Backend, Features, SetUpError, SetupLog, SkipReason, SpawnRequest, World, WorldError};
use crate::engine::oracle::{InContainer, Oracle, ReadError};
use crate::events::{Ending, EventKind, SegRow};
use crate::rundir::EngineObject;
use crate::scenario::files::FileIdentity;
use crate::scenario::IpcMode;
use crate::scenario::{Feature, IpcSysctl, Scenario, ScenarioDir, MAIN_NS};

/// Which container engine runs the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
}

impl EngineKind {
    pub fn program(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
        }
    }
}

/// The project's containers.conf for Podman (`harness/runtimes/podman.conf`),
/// used when neither `--containers-conf` nor `CONTAINERS_CONF` names one.
pub const PODMAN_CONF: &str = include_str!("../../../runtimes/podman.conf");

/// Why a container engine did not give a scenario what it asked.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    RunDir(#[from] crate::rundir::RunDirError),
    /// The project's containers.conf cannot be written into the run's dir.
    #[error("{}: {source}", .path.display())]
    WriteConf {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The engine's client cannot be run.
    #[error("cannot run {program}: {source}")]
    Run {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The engine refused: the line of its stderr that says why.
    #[error("{0}")]
    Refused(String),
    #[error("{program} inspect: {source}")]
    Inspect {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Started, then gone at once (e.g. a runtime that cannot join the
    /// namespaces it was given).
    #[error("the container did not stay up (state: {state})")]
    NotUp { state: String },
    #[error("container {name} (pid {pid}): cannot open its IPC namespace: {source}")]
    IpcNamespace {
        name: String,
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    /// A `local` namespace: the harness's own cannot be held.
    #[error("{0}")]
    HoldLocal(#[source] std::io::Error),
    #[error("namespaces join each other in a cycle: {0:?}")]
    JoinCycle(Vec<String>),
    /// The engine refused a pod the scenario declares (a SKIP: pods are a
    /// feature a runtime may lack).
    #[error("pods: {engine} refused pod {pod:?}: {source}")]
    PodRefused {
        engine: String,
        pod: String,
        #[source]
        source: Box<ContainerError>,
    },
    /// The engine refused the container of a namespace that is a pod's
    /// member (a SKIP, as [`ContainerError::PodRefused`]).
    #[error("pods: {engine} refused the container of namespace {ns:?} ({placement}): {source}")]
    PodMemberRefused {
        engine: String,
        ns: String,
        placement: String,
        #[source]
        source: Box<ContainerError>,
    },
    /// The engine refused the container of a namespace with an IPC mode
    /// that should have worked (BROKEN).
    #[error("{engine} refused the container of namespace {ns:?} ({placement}): {source}")]
    ContainerRefused {
        engine: String,
        ns: String,
        placement: String,
        #[source]
        source: Box<ContainerError>,
    },
    #[error("namespace {ns:?} has no running container")]
    NoContainer { ns: String },
    #[error("cannot enter namespace {ns:?}: {source}")]
    Enter {
        ns: String,
        #[source]
        source: nix::errno::Errno,
    },
    #[error("namespace {ns:?} has no running container to run a process in")]
    NoContainerToRun { ns: String },
    #[error("a container's /proc/sys is read-only")]
    ReadOnlySysctl,
    /// A stop of a namespace without a running container.
    #[error("no container is running for it")]
    NotRunning,
    /// The engine said it removed a container that is still there.
    #[error("{engine} did not remove container {name}")]
    ContainerLeft { engine: String, name: String },
    #[error("{engine} did not remove pod {name}")]
    PodLeft { engine: String, name: String },
    /// `podman stop` failed (its error line).
    #[error("podman could not stop it: {0}")]
    NotStopped(String),
}

/// A runtime without pods is a SKIP that names them; the rest is BROKEN.
impl From<ContainerError> for SetUpError {
    fn from(e: ContainerError) -> SetUpError {
        match e {
            ContainerError::PodRefused { .. } | ContainerError::PodMemberRefused { .. } => {
                SetUpError::Unavailable(Box::new(e))
            }
            _ => SetUpError::Broken(Box::new(e)),
        }
    }
}

/// [`PODMAN_CONF`] as a file (Podman reads a path), written once into the
/// run's dir.
pub fn project_podman_conf() -> Result<PathBuf, ContainerError> {
    static FILE: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut written = FILE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(file) = &*written {
        return Ok(file.clone());
    }
    let file = crate::rundir::current()?.path().join("podman.conf");
    if let Err(source) = std::fs::write(&file, PODMAN_CONF) {
        return Err(ContainerError::WriteConf { path: file, source });
    }
    *written = Some(file.clone());
    Ok(file)
}

/// How the backend reaches its engine.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub engine: EngineKind,
    /// Our image (built from this repository's Dockerfile).
    pub image: String,
    /// Shared by every container and pod name of one run.
    pub run_id: String,
    /// Podman: the OCI runtime (`--runtime`, a name or a path: runc, crun, runsc).
    pub runtime: Option<String>,
    /// Podman: the project's containers.conf (`CONTAINERS_CONF`), not the machine's.
    pub containers_conf: Option<PathBuf>,
    /// Processes and memory of each container (`--max-processes`, `--max-memory`).
    pub bounds: crate::engine::confine::Bounds,
}

impl ContainerConfig {
    pub fn new(engine: EngineKind, image: &str) -> ContainerConfig {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        ContainerConfig {
            engine,
            image: image.into(),
            run_id: format!("{}-{:x}", std::process::id(), nanos % 0xffff_ffff),
            runtime: None,
            containers_conf: None,
            bounds: crate::engine::confine::Bounds::default(),
        }
    }

    /// Does the OCI runtime run a kernel of its own (gVisor)? Then the
    /// container's IPC namespace is not one the host can enter.
    pub fn sandboxed(&self) -> bool {
        self.runtime
            .as_deref()
            .is_some_and(|r| Path::new(r).file_name().is_some_and(|n| n == "runsc"))
    }

    /// The engine's command line up to the subcommand: global flags first.
    pub fn argv(&self) -> Vec<String> {
        let mut v = vec![self.engine.program().to_string()];
        if let (EngineKind::Podman, Some(rt)) = (self.engine, &self.runtime) {
            v.extend(["--runtime".into(), rt.clone()]);
            if self.sandboxed() {
                // gVisor's own network stack needs what a FROM-scratch suite lacks.
                v.extend(["--runtime-flag".into(), "network=none".into()]);
            }
        }
        v
    }

    /// `run` options that confine a backend container as the local backend
    /// confines a program: no capability (`docker exec -u` switches uid
    /// before the process starts, and nothing in a scenario needs one), no
    /// privilege gained through set-uid programs, and the scenario's bounds
    /// on processes and memory (swap included: none beyond the bound).
    pub fn confinement_args(&self) -> Vec<String> {
        let memory = self.bounds.max_memory.to_string();
        vec![
            "--cap-drop".into(),
            "ALL".into(),
            "--security-opt".into(),
            "no-new-privileges".into(),
            "--pids-limit".into(),
            self.bounds.max_processes.to_string(),
            "--memory".into(),
            memory.clone(),
            "--memory-swap".into(),
            memory,
        ]
    }

    /// The engine's command, with its environment.
    pub fn command(&self) -> Command {
        let argv = self.argv();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).stdin(Stdio::null());
        if let Some(conf) = &self.containers_conf {
            cmd.env("CONTAINERS_CONF", conf);
        }
        cmd
    }

    fn remove_args(&self, object: EngineObject, name: &str) -> Vec<String> {
        let mut v: Vec<String> = match (self.engine, object) {
            (EngineKind::Docker, _) => vec!["rm".into(), "-f".into()],
            // -t 0: the container's init ignores SIGTERM; do not wait 10 s for it.
            (EngineKind::Podman, EngineObject::Container) => vec!["rm".into(), "-f".into(), "-t".into(), "0".into()],
            (EngineKind::Podman, EngineObject::Pod) => {
                vec!["pod".into(), "rm".into(), "-f".into(), "-t".into(), "0".into()]
            }
        };
        v.push(name.into());
        v
    }

    fn remove(&self, object: EngineObject, name: &str) {
        let _ = self
            .command()
            .args(self.remove_args(object, name))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Is the engine reachable with our image, and can it start a container
    /// of it with this runtime?
    pub fn probe(&self) -> Result<(), ProbeError> {
        let engine = self.engine.program();
        // Both engines answer `info` only when they (or their daemon) work.
        let mut info = self.command();
        info.arg("info");
        let reachable = unless_interrupted(info).is_ok_and(|o| o.status.success());
        if !reachable {
            return Err(ProbeError::Unusable(format!(
                "`{engine} info` failed: {engine} is not installed or not reachable"
            )));
        }
        // What killed runs left, found by label whatever their TMPDIR was.
        self.sweep_dead_runs();
        let mut inspect = self.command();
        inspect.args(["image", "inspect", &self.image]);
        let image = unless_interrupted(inspect);
        if !image.is_ok_and(|o| o.status.success()) {
            return Err(ProbeError::Unusable(format!(
                "{engine} has no image {:?} (build it: docker/build-dist.sh && {engine} build -t {} .)",
                self.image, self.image
            )));
        }
        let mut start = self.command();
        start
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "--entrypoint",
                "/usr/local/bin/shmconf",
            ])
            .arg(&self.image)
            .arg("--version");
        let out = unless_interrupted(start).map_err(|e| ProbeError::Unusable(format!("cannot run {engine}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ProbeError::CannotStart(format!(
                "{} cannot start a container of {}: {}",
                self.describe(),
                self.image,
                engine_error(&out.stderr)
            )))
        }
    }

    /// Remove the containers (then the pods) whose labels say their run is
    /// gone ([`crate::rundir::labelled_run_is_gone`]).
    pub fn sweep_dead_runs(&self) -> Vec<String> {
        use crate::rundir::{labelled_run_is_gone, LABEL_BOOT, LABEL_MNTNS, LABEL_RUNDIR};
        let label = |k: &str| match self.engine {
            EngineKind::Docker => format!("{{{{.Label \"{k}\"}}}}"),
            EngineKind::Podman => format!("{{{{index .Labels \"{k}\"}}}}"),
        };
        let format = format!(
            "{{{{.Names}}}}\t{}\t{}\t{}",
            label(LABEL_RUNDIR),
            label(LABEL_BOOT),
            label(LABEL_MNTNS)
        );
        let mut kinds = vec![(EngineObject::Container, vec!["ps", "-a"], format.clone())];
        if self.engine == EngineKind::Podman {
            kinds.push((
                EngineObject::Pod,
                vec!["pod", "ps"],
                format.replace("{{.Names}}", "{{.Name}}"),
            ));
        }
        let mut removed = Vec::new();
        for (object, list, format) in kinds {
            let Ok(out) = self
                .command()
                .args(list)
                .args(["--filter", "label=io.shmconf.role=backend", "--format", &format])
                .stderr(Stdio::null())
                .output()
            else {
                continue;
            };
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let fields: Vec<&str> = line.split('\t').collect();
                let [name, rundir, boot, mntns] = fields[..] else {
                    continue;
                };
                // "<no value>": an engine's text for a label the object has not.
                fn value(v: &str) -> &str {
                    if v == "<no value>" {
                        ""
                    } else {
                        v
                    }
                }
                if name.starts_with("shmconf-") && labelled_run_is_gone(value(rundir), value(boot), value(mntns)) {
                    self.remove(object, name);
                    removed.push(name.to_string());
                }
            }
        }
        removed
    }

    /// "docker", "podman (runtime runsc)".
    pub fn describe(&self) -> String {
        match &self.runtime {
            Some(rt) => format!("{} (runtime {rt})", self.engine.program()),
            None => self.engine.program().into(),
        }
    }
}

/// Run an engine command to its end, or until SIGINT, SIGTERM or SIGHUP
/// reaches the run (then it is killed): a probe of a hung engine must not
/// outlast the signal that ends the run.
fn unless_interrupted(mut cmd: Command) -> std::io::Result<std::process::Output> {
    use std::io::Read;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if crate::interrupt::interrupted() {
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Ok(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Why a container backend cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// The user's to fix: no engine, no image (exit 2).
    Unusable(String),
    /// This machine's limit: the runtime cannot start containers here (a
    /// SKIP for every scenario, with this reason).
    CannotStart(String),
}

/// An engine's error from its stderr, in one line: the first line that says
/// "error", else the first line that is neither a hint (Docker follows its
/// error with "Run 'docker run --help'" or "See '...'") nor a log line
/// (Podman's `time="..." level=...`). Docker's "invalid spec: ...: too many
/// colons" says no "error" and is kept, not its hint.
fn engine_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let hint = |l: &str| (l.starts_with("Run '") || l.starts_with("See '")) && l.contains("--help");
    let log = |l: &str| l.starts_with("time=") && l.contains("level=");
    let said: Vec<&str> = lines.iter().copied().filter(|l| !hint(l) && !log(l)).collect();
    said.iter()
        .find(|l| l.to_ascii_lowercase().contains("error"))
        .or(said.first())
        .or(lines.first())
        .map_or_else(|| "(no message)".to_string(), |l| l.to_string())
}

/// A running container of a scenario, removed on drop.
#[derive(Debug)]
pub struct Container {
    pub name: String,
    pub pid: i32,
    /// Keeps the container's IPC namespace reachable for snapshots (none in
    /// a sandbox, whose namespaces live in its own kernel).
    pub ipc: Option<IpcNamespace>,
    cfg: ContainerConfig,
}

/// Where a container's IPC namespace comes from, as the engine is told.
enum Placement {
    /// `--ipc <mode>`.
    Ipc(String),
    /// `--pod <pod>`: a member of this Podman pod.
    Pod(String),
}

impl std::fmt::Display for Placement {
    /// As the log says it: "private", "container:NAME", "pod NAME".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Ipc(mode) => f.write_str(mode),
            Placement::Pod(pod) => write!(f, "pod {pod}"),
        }
    }
}

impl Container {
    /// `run -d` our image in its placement, the scenario dir mounted at the
    /// same path, and `shmconf pid-init` as its process (it waits).
    fn start(
        cfg: &ContainerConfig,
        name: &str,
        placement: &Placement,
        dir: &Path,
    ) -> Result<Container, ContainerError> {
        let d = dir.display().to_string();
        let mut cmd = cfg.command();
        cmd.args(["run", "-d", "--name", name, "--network", "none"]);
        cmd.args(cfg.confinement_args());
        match placement {
            Placement::Ipc(mode) => cmd.args(["--ipc", mode.as_str()]),
            Placement::Pod(pod) => cmd.args(["--pod", pod.as_str()]),
        };
        crate::rundir::note_container(cfg.engine.program(), EngineObject::Container, name);
        // The handle exists before the engine answers: any failure removes
        // what a failed `run` may still have created.
        let mut container = Container {
            name: name.into(),
            pid: 0,
            ipc: None,
            cfg: cfg.clone(),
        };
        let out = cmd
            .args(["--label", "io.shmconf.role=backend", "--label"])
            .arg(format!("io.shmconf.run={}", cfg.run_id))
            .args(crate::rundir::owner_labels())
            .args([
                // Over the image's VOLUME /tmp: an engine tmpfs leaves no
                // anonymous volume behind when the container is removed.
                "--tmpfs",
                "/tmp",
                "-v",
                &format!("{d}:{d}"),
                "-w",
                &d,
                "--entrypoint",
                "/usr/local/bin/shmconf",
            ])
            .arg(&cfg.image)
            .arg("pid-init")
            .output()
            .map_err(|source| ContainerError::Run {
                program: cfg.engine.program(),
                source,
            })?;
        if !out.status.success() {
            return Err(ContainerError::Refused(engine_error(&out.stderr)));
        }
        let inspect = cfg
            .command()
            .args([
                "inspect",
                "-f",
                "{{.State.Pid}} {{.State.Status}} {{.State.ExitCode}}",
                name,
            ])
            .output()
            .map_err(|source| ContainerError::Inspect {
                program: cfg.engine.program(),
                source,
            })?;
        let state = String::from_utf8_lossy(&inspect.stdout).trim().to_string();
        let mut fields = state.split(' ');
        container.pid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if fields.next() != Some("running") || container.pid <= 0 {
            // Started, then gone at once (e.g. a runtime that cannot join
            // the namespaces it was given).
            return Err(ContainerError::NotUp { state });
        }
        if !cfg.sandboxed() {
            container.ipc = Some(
                std::fs::File::open(format!("/proc/{}/ns/ipc", container.pid))
                    .map(IpcNamespace::from_file)
                    .map_err(|source| ContainerError::IpcNamespace {
                        name: name.into(),
                        pid: container.pid,
                        source,
                    })?,
            );
        }
        Ok(container)
    }

    /// The `exec` command line of the oracle inside this container, up to
    /// the container's name. (Not `--privileged`, which would let it read
    /// segments whose mode shuts out root without CAP_IPC_OWNER: Debian's
    /// runsc 20221219 refuses the capability set. Such a segment makes the
    /// table [`crate::engine::oracle::OracleError::Unreadable`].)
    pub fn observer_argv(&self, dir: &Path) -> Vec<String> {
        let mut v = self.cfg.argv();
        v.extend(["exec".into(), "-w".into(), dir.display().to_string()]);
        v.push(self.name.clone());
        v
    }

    /// The `exec` command line that runs `argv` in this container.
    pub fn exec_argv(
        &self,
        dir: &Path,
        uid: Option<u32>,
        gid: Option<u32>,
        env: &BTreeMap<String, String>,
        argv: &[String],
    ) -> Vec<String> {
        let mut v = self.cfg.argv();
        v.extend(["exec".into(), "-i".into(), "-w".into(), dir.display().to_string()]);
        if let Some(uid) = uid {
            v.extend(["-u".into(), format!("{uid}:{}", gid.unwrap_or(uid))]);
        }
        for (k, val) in env {
            v.extend(["-e".into(), format!("{k}={val}")]);
        }
        v.push(self.name.clone());
        if self.cfg.engine == EngineKind::Podman {
            // Podman 4.3's `exec -i` drops the output of a process that
            // exits leaving input unread; the relay always reads it all.
            v.extend(["/usr/local/bin/shmconf".into(), "stdin-relay".into(), "--".into()]);
        }
        v.extend(argv.iter().cloned());
        v
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.cfg.remove(EngineObject::Container, &self.name);
    }
}

/// A Podman pod sharing one IPC namespace, removed (with its members) on drop.
struct Pod {
    name: String,
    cfg: ContainerConfig,
}

impl Pod {
    fn create(cfg: &ContainerConfig, name: &str) -> Result<Pod, ContainerError> {
        crate::rundir::note_container(cfg.engine.program(), EngineObject::Pod, name);
        let pod = Pod {
            name: name.into(),
            cfg: cfg.clone(),
        };
        let out = cfg
            .command()
            .args(["pod", "create", "--name", name, "--share", "ipc", "--network", "none"])
            .args(["--label", "io.shmconf.role=backend"])
            .args(crate::rundir::owner_labels())
            .output()
            .map_err(|source| ContainerError::Run {
                program: EngineKind::Podman.program(),
                source,
            })?;
        if out.status.success() {
            Ok(pod)
        } else {
            Err(ContainerError::Refused(engine_error(&out.stderr)))
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.cfg.remove(EngineObject::Pod, &self.name);
    }
}

/// Does the engine still have a container of this name?
fn exists(cfg: &ContainerConfig, name: &str) -> bool {
    cfg.command()
        .args(["inspect", "-f", "{{.Id}}", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Scenarios that touch the host's IPC namespace (`--ipc host`) run one at a time.
static HOST_NS: Mutex<()> = Mutex::new(());

pub struct ContainerBackend {
    pub config: ContainerConfig,
    /// Why no container can run here at all (probed once): every scenario
    /// that needs one is a SKIP with this reason.
    pub unavailable: Option<String>,
}

impl Backend for ContainerBackend {
    fn name(&self) -> &'static str {
        self.config.engine.program()
    }

    fn features(&self) -> Features {
        if let Some(why) = &self.unavailable {
            return Features::unavailable(SkipReason::Environment(why.clone()));
        }
        Features::all()
            .without(
                Feature::Explore,
                SkipReason::Unsupported(
                    "explores orders, each in a fresh IPC namespace: needs the local backend with namespaces".into(),
                ),
            )
            .without(
                Feature::ReadingBarrier,
                SkipReason::Unsupported(
                    "waits until a process blocks reading its input: a container backend sees the client that relays the input, not the program in the container".into(),
                ),
            )
            .without(
                Feature::Sysctl,
                SkipReason::Sysctl("a container's /proc/sys is read-only (run it with the local backend)".into()),
            )
            .without(
                Feature::DropNamespace,
                SkipReason::Unsupported(
                    "drops a namespace: a container backend's namespaces belong to containers".into(),
                ),
            )
            .without(
                Feature::SetIds,
                SkipReason::SetIds("a container backend's processes hold no capability (--cap-drop ALL)".into()),
            )
            .without(
                Feature::Kill,
                SkipReason::Unsupported(
                    "signals a process: a container backend cannot reach processes inside containers".into(),
                ),
            )
    }

    fn set_up(
        &self,
        scenario: &Scenario,
        dir: &ScenarioDir,
        log: &mut dyn SetupLog,
    ) -> Result<Box<dyn World>, SetUpError> {
        let cfg = &self.config;
        let placements = placements(scenario)?;
        let mut world = ContainerWorld {
            containers: Vec::new(),
            pods: Vec::new(),
            local: BTreeMap::new(),
            host: None,
            host_names: placements
                .iter()
                .filter(|(_, m)| m.touches_host())
                .map(|(n, _)| n.clone())
                .collect(),
            current: String::new(),
            oracles: BTreeMap::new(),
        };
        if placements.iter().any(|(_, m)| m.touches_host()) {
            let lock = HOST_NS.lock().unwrap_or_else(|p| p.into_inner());
            world.host = Some((lock, Ownership::take_baseline()?));
        }
        // Docker has no pods: an infra container per pod, `--ipc shareable`,
        // that the members join (what Kubernetes' dockershim did).
        let mut pods: BTreeMap<String, String> = BTreeMap::new();
        for (name, place) in placements {
            let decl = scenario.namespaces.get(&name);
            let placement = match &place {
                NsPlacement::Ipc(IpcMode::Local) => {
                    let ns = IpcNamespace::current().map_err(ContainerError::HoldLocal)?;
                    log.namespace(&name, ns.inode().unwrap_or(0));
                    world.local.insert(name, ns);
                    continue;
                }
                NsPlacement::Ipc(mode) => Placement::Ipc(mode_arg(cfg, scenario, mode)),
                NsPlacement::Pod(pod) => {
                    if !pods.contains_key(pod) {
                        let pname = container_name(cfg, scenario, &format!("pod-{pod}"));
                        world
                            .start_pod(cfg, &pname, dir.path())
                            .map_err(|e| ContainerError::PodRefused {
                                engine: cfg.describe(),
                                pod: pod.clone(),
                                source: Box::new(e),
                            })?;
                        pods.insert(pod.clone(), pname);
                    }
                    match cfg.engine {
                        EngineKind::Podman => Placement::Pod(pods[pod].clone()),
                        EngineKind::Docker => Placement::Ipc(format!("container:{}", pods[pod])),
                    }
                }
            };
            let placement_text = placement.to_string();
            let cname = container_name(cfg, scenario, &name);
            match Container::start(cfg, &cname, &placement, dir.path()) {
                Ok(c) => {
                    log.namespace(&name, c.ipc.as_ref().and_then(|i| i.inode().ok()).unwrap_or(0));
                    log.event(EventKind::Container {
                        ns: name.clone(),
                        name: cname,
                        ipc: placement_text,
                        pid: c.pid,
                        error: None,
                    });
                    if cfg.sandboxed() {
                        let exec = c.observer_argv(dir.path());
                        world
                            .oracles
                            .insert(name.clone(), InContainer::new(exec, cfg.containers_conf.clone()));
                    }
                    world.containers.push((name, c));
                }
                Err(error) => {
                    log.event(EventKind::Container {
                        ns: name.clone(),
                        name: cname,
                        ipc: placement_text.clone(),
                        pid: 0,
                        error: Some(error.to_string()),
                    });
                    if decl.and_then(|d| d.expect_error.as_ref()).is_none() {
                        let (engine, ns, placement, source) = (cfg.describe(), name, placement_text, Box::new(error));
                        // Pods are an engine feature a runtime may lack
                        // (runsc cannot join a pod's namespaces): a SKIP
                        // that names it, not a verdict on IPC.
                        return Err(match place {
                            NsPlacement::Pod(_) => ContainerError::PodMemberRefused {
                                engine,
                                ns,
                                placement,
                                source,
                            },
                            NsPlacement::Ipc(_) => ContainerError::ContainerRefused {
                                engine,
                                ns,
                                placement,
                                source,
                            },
                        }
                        .into());
                    }
                }
            }
        }
        Ok(Box::new(world))
    }
}

/// The `--ipc` argument of a mode.
fn mode_arg(cfg: &ContainerConfig, scenario: &Scenario, mode: &IpcMode) -> String {
    match mode {
        IpcMode::Private => "private".into(),
        IpcMode::Shareable => "shareable".into(),
        IpcMode::Host => "host".into(),
        IpcMode::None | IpcMode::Local => "none".into(),
        IpcMode::Container(target) => format!("container:{}", container_name(cfg, scenario, target)),
    }
}

struct ContainerWorld {
    /// In start order (joiners after donors), removed in reverse.
    containers: Vec<(String, Container)>,
    /// Podman pods, removed after their members.
    pods: Vec<Pod>,
    /// `local` namespaces: the harness's own.
    local: BTreeMap<String, IpcNamespace>,
    /// Held while the scenario may touch the host's namespace, with what is
    /// the scenario's own there.
    host: Option<(MutexGuard<'static, ()>, Ownership)>,
    /// Namespaces that are the host's own (`host` and `local` modes).
    host_names: std::collections::BTreeSet<String>,
    /// The namespace the thread was last moved into.
    current: String,
    /// Sandboxed containers: the oracle that reads inside each.
    oracles: BTreeMap<String, InContainer>,
}

impl ContainerWorld {
    /// A pod: Podman's own, or Docker's infra container that members join.
    fn start_pod(&mut self, cfg: &ContainerConfig, name: &str, dir: &Path) -> Result<(), ContainerError> {
        match cfg.engine {
            EngineKind::Podman => self.pods.push(Pod::create(cfg, name)?),
            EngineKind::Docker => {
                let infra = Container::start(cfg, name, &Placement::Ipc("shareable".into()), dir)?;
                self.containers.push((format!("(infra of {name})"), infra));
            }
        }
        Ok(())
    }

    fn container(&self, ns: &str) -> Option<&Container> {
        self.containers.iter().find(|(n, _)| n == ns).map(|(_, c)| c)
    }
}

impl World for ContainerWorld {
    fn enter(&mut self, ns: &str) -> Result<(), WorldError> {
        if self.oracles.contains_key(ns) {
            // Read from inside: nothing to enter on the host.
            self.current = ns.to_string();
            return Ok(());
        }
        let handle = match (self.container(ns), self.local.get(ns)) {
            (Some(c), _) => c.ipc.as_ref(),
            (None, Some(l)) => Some(l),
            (None, None) => None,
        }
        .ok_or_else(|| ContainerError::NoContainer { ns: ns.into() })?;
        handle
            .enter()
            .map_err(|source| ContainerError::Enter { ns: ns.into(), source })?;
        self.current = ns.to_string();
        Ok(())
    }

    fn oracle(&self) -> Option<&dyn Oracle> {
        self.oracles.get(&self.current).map(|o| o as &dyn Oracle)
    }

    fn ftok(&mut self, file: &str, proj_id: i32) -> Option<Result<i32, ReadError>> {
        // A sandbox's kernel gives its own st_dev: ftok there, not here.
        self.oracles.get(&self.current).map(|o| o.ftok(file, proj_id))
    }

    fn command(&mut self, req: &SpawnRequest, dir: &ScenarioDir) -> Result<Launch, WorldError> {
        let container = self
            .container(req.ns)
            .ok_or_else(|| ContainerError::NoContainerToRun { ns: req.ns.into() })?;
        let argv = container.exec_argv(dir.path(), req.uid, req.gid, req.env, &req.argv);
        let mut cmd = Launch::new(&argv[0]);
        cmd.args(&argv[1..]).current_dir(dir.path());
        if let Some(conf) = &container.cfg.containers_conf {
            cmd.env("CONTAINERS_CONF", conf);
        }
        Ok(cmd)
    }

    fn ending(&self, ending: Ending) -> Ending {
        from_engine_exec(ending)
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
            Some((_, o)) if self.host_names.contains(&self.current) && !self.oracles.contains_key(&self.current) => {
                o.is_own_by_key(row)
            }
            _ => true,
        }
    }

    fn set_sysctl(&mut self, _ns: &str, _sysctl: IpcSysctl, _value: &str) -> Result<(), WorldError> {
        Err(ContainerError::ReadOnlySysctl.into())
    }

    fn stop(&mut self, ns: &str) -> Result<(), WorldError> {
        let i = self
            .containers
            .iter()
            .position(|(n, _)| n == ns)
            .ok_or(ContainerError::NotRunning)?;
        self.oracles.remove(ns);
        let (name, container) = self.containers.remove(i);
        let cfg = container.cfg.clone();
        match cfg.engine {
            EngineKind::Docker => {
                let cname = container.name.clone();
                drop(container); // `docker rm -f`, joiners or not
                                 // Say so if it is still there: a stop that did not happen
                                 // would pass a persistence check it never made.
                if exists(&cfg, &cname) {
                    return Err(ContainerError::ContainerLeft {
                        engine: EngineKind::Docker.program().into(),
                        name: cname,
                    }
                    .into());
                }
                Ok(())
            }
            EngineKind::Podman => {
                // Podman removes no donor while a joiner uses its namespace:
                // stop it (its processes end) and remove it at tear-down,
                // after its joiners.
                let out = cfg
                    .command()
                    .args(["stop", "-t", "0", &container.name])
                    .output()
                    .map_err(|source| ContainerError::Run {
                        program: EngineKind::Podman.program(),
                        source,
                    })?;
                let stopped = out.status.success();
                let error = engine_error(&out.stderr);
                self.containers.insert(i, (format!("(stopped {name})"), container));
                if stopped {
                    Ok(())
                } else {
                    Err(ContainerError::NotStopped(error).into())
                }
            }
        }
    }

    fn tear_down(&mut self) -> Vec<Result<String, WorldError>> {
        // Joiners before donors, members before pods (Podman refuses otherwise).
        let mut done = Vec::new();
        while let Some((_, c)) = self.containers.pop() {
            let (cfg, name) = (c.cfg.clone(), c.name.clone());
            drop(c);
            if exists(&cfg, &name) {
                let engine = cfg.describe();
                done.push(Err(ContainerError::ContainerLeft { engine, name }.into()));
            }
        }
        while let Some(pod) = self.pods.pop() {
            let (cfg, name) = (pod.cfg.clone(), pod.name.clone());
            drop(pod);
            let left = cfg
                .command()
                .args(["pod", "exists", &name])
                .status()
                .is_ok_and(|s| s.success());
            if left {
                let engine = cfg.describe();
                done.push(Err(ContainerError::PodLeft { engine, name }.into()));
            }
        }
        self.oracles.clear();
        if let Some((_lock, mut o)) = self.host.take() {
            done.extend(o.remove_own_by_key().into_iter().map(|r| r.map_err(WorldError::from)));
        }
        done
    }
}

/// How a scenario namespace gets its IPC namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NsPlacement {
    Ipc(IpcMode),
    Pod(String),
}

impl NsPlacement {
    fn touches_host(&self) -> bool {
        matches!(self, NsPlacement::Ipc(m) if m.touches_host())
    }
}

/// Every namespace of a scenario with its Docker mode (default private),
/// donors before their joiners.
fn placements(scenario: &Scenario) -> Result<Vec<(String, NsPlacement)>, ContainerError> {
    let mut all: Vec<(String, NsPlacement)> = vec![(MAIN_NS.into(), NsPlacement::Ipc(IpcMode::Private))];
    for (name, decl) in &scenario.namespaces {
        let place = match &decl.pod {
            Some(pod) => NsPlacement::Pod(pod.clone()),
            None => NsPlacement::Ipc(decl.docker.clone().unwrap_or(IpcMode::Private)),
        };
        all.push((name.clone(), place));
    }
    // Only namespaces some step uses, or that are joined or expected to fail.
    let main_joined = all
        .iter()
        .any(|(_, m)| *m == NsPlacement::Ipc(IpcMode::Container(MAIN_NS.into())));
    let main_used = scenario.steps().iter().any(|s| s.ns == MAIN_NS);
    all.retain(|(n, _)| n != MAIN_NS || main_used || main_joined);
    let mut ordered = Vec::new();
    while !all.is_empty() {
        let before = all.len();
        let mut i = 0;
        while i < all.len() {
            let ready = match &all[i].1 {
                NsPlacement::Ipc(IpcMode::Container(t)) => ordered.iter().any(|(n, _): &(String, NsPlacement)| n == t),
                _ => true,
            };
            if ready {
                ordered.push(all.remove(i));
            } else {
                i += 1;
            }
        }
        if all.len() == before {
            return Err(ContainerError::JoinCycle(all.into_iter().map(|a| a.0).collect()));
        }
    }
    Ok(ordered)
}

fn container_name(cfg: &ContainerConfig, scenario: &Scenario, ns: &str) -> String {
    // Unique per scenario within the run: the description's hash keeps names short.
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    scenario.description.hash(&mut h);
    std::thread::current().id().hash(&mut h);
    format!("shmconf-{}-{:x}-{ns}", cfg.run_id, h.finish() & 0xffff_ffff)
}

/// `docker exec` and `podman exec` report a signal death as exit code 128+N.
fn from_engine_exec(ending: Ending) -> Ending {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Pods a runtime cannot run are a SKIP that names them; a container an
    /// IPC mode should have given is BROKEN: decided by variant.
    #[test]
    fn refused_pods_are_a_skip_and_refused_containers_broken() {
        let refused = || Box::new(ContainerError::Refused("Error: no pods here".into()));
        let member = ContainerError::PodMemberRefused {
            engine: "podman (runtime runsc)".into(),
            ns: "m".into(),
            placement: "pod shmconf-p".into(),
            source: refused(),
        };
        assert_eq!(
            member.to_string(),
            "pods: podman (runtime runsc) refused the container of namespace \"m\" (pod shmconf-p): Error: no pods here"
        );
        assert!(matches!(SetUpError::from(member), SetUpError::Unavailable(_)));
        let pod = ContainerError::PodRefused {
            engine: "docker".into(),
            pod: "p".into(),
            source: refused(),
        };
        assert_eq!(pod.to_string(), "pods: docker refused pod \"p\": Error: no pods here");
        assert!(matches!(SetUpError::from(pod), SetUpError::Unavailable(_)));
        let ipc = ContainerError::ContainerRefused {
            engine: "docker".into(),
            ns: "j".into(),
            placement: "container:shmconf-d".into(),
            source: refused(),
        };
        assert_eq!(
            ipc.to_string(),
            "docker refused the container of namespace \"j\" (container:shmconf-d): Error: no pods here"
        );
        assert!(matches!(SetUpError::from(ipc), SetUpError::Broken(_)));
        let cycle = ContainerError::JoinCycle(vec!["a".into(), "b".into()]);
        assert_eq!(
            cycle.to_string(),
            "namespaces join each other in a cycle: [\"a\", \"b\"]"
        );
        let left = WorldError::from(ContainerError::ContainerLeft {
            engine: "docker".into(),
            name: "shmconf-x".into(),
        });
        assert_eq!(left.to_string(), "docker did not remove container shmconf-x");
    }

    #[test]
    fn the_engines_error_line_is_kept_not_its_hints_or_logs() {
        let docker = b"docker: Error response from daemon: non-shareable IPC (hint: use IpcMode:shareable for the donor container).\nRun 'docker run --help' for more information\n";
        assert!(
            engine_error(docker).contains("non-shareable IPC"),
            "{}",
            engine_error(docker)
        );
        let podman = b"time=\"x\" level=warning msg=\"y\"\nError: OCI runtime error: crun: cgroups in hybrid mode not supported\n";
        assert_eq!(
            engine_error(podman),
            "Error: OCI runtime error: crun: cgroups in hybrid mode not supported"
        );
        assert_eq!(engine_error(b"just this\n\n"), "just this");
        let colons = b"docker: invalid spec: /tmp/a:b:c:/tmp/a:b:c: too many colons\n\nRun 'docker run --help' for more information\n";
        assert_eq!(
            engine_error(colons),
            "docker: invalid spec: /tmp/a:b:c:/tmp/a:b:c: too many colons"
        );
        let see = b"docker: invalid reference format.\nSee 'docker run --help'.\n";
        assert_eq!(engine_error(see), "docker: invalid reference format.");
        let first = b"Error: first cause\nError: consequence\n";
        assert_eq!(engine_error(first), "Error: first cause");
        assert_eq!(engine_error(b""), "(no message)");
    }

    fn scenario(text: &str) -> Scenario {
        Scenario::parse(Path::new("t.toml"), text).unwrap()
    }

    #[test]
    fn donors_start_before_joiners_and_pod_members_keep_their_pod() {
        let s = scenario(
            r#"
description = "d"
[namespaces]
j = { docker = "container:d" }
d = { docker = "shareable" }
m = { pod = "p" }
[[step]]
run = "writer"
ns = "j"
[[step]]
run = "reader"
ns = "m"
"#,
        );
        let order: Vec<(String, NsPlacement)> = placements(&s).unwrap();
        let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("d") < pos("j"), "{names:?}");
        assert!(!names.contains(&"main"), "main is not used: {names:?}");
        assert_eq!(order[pos("m")].1, NsPlacement::Pod("p".into()));
    }

    #[test]
    fn runsc_is_a_sandbox_and_gets_its_network_flag_on_podman_only() {
        let mut c = ContainerConfig::new(EngineKind::Podman, "img");
        assert!(!c.sandboxed());
        c.runtime = Some("/usr/bin/runsc".into());
        assert!(c.sandboxed());
        assert_eq!(
            c.argv(),
            [
                "podman",
                "--runtime",
                "/usr/bin/runsc",
                "--runtime-flag",
                "network=none"
            ]
        );
        c.runtime = Some("runc".into());
        assert_eq!(c.argv(), ["podman", "--runtime", "runc"]);
        c.bounds = crate::engine::confine::Bounds {
            max_processes: 64,
            max_memory: 128 << 20,
        };
        assert_eq!(
            c.confinement_args().join(" "),
            "--cap-drop ALL --security-opt no-new-privileges --pids-limit 64 --memory 134217728 --memory-swap 134217728"
        );
        assert_eq!(
            c.remove_args(EngineObject::Pod, "shmconf-x"),
            ["pod", "rm", "-f", "-t", "0", "shmconf-x"]
        );
    }
}
