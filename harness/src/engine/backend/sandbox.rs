//! Sandboxes that are not container engines: bubblewrap (and the way
//! Flatpak runs it), firejail and util-linux `unshare`. Each claims an IPC
//! mode (its own namespace with a flag, the caller's without), and this
//! backend checks the claim at the SysV level with the catalogue's
//! container scenarios:
//!
//! - a scenario namespace with `docker = "private"` (or `"shareable"`) is a
//!   sandbox started with its isolating flag (`--unshare-ipc`,
//!   `--ipc-namespace`, `--ipc`); `docker = "host"` is one started without
//!   it; `docker = "local"` is the scenario's main namespace;
//! - every sandbox is started from the scenario's main namespace, a fresh
//!   one of its own, which plays the host: the machine's own table is never
//!   touched;
//! - a sandbox runs a holder (`sleep`), and the IPC namespace the holder
//!   ended up in is where the scenario's programs for that namespace start
//!   (entered by handle, as local namespaces are). A sandbox that ignores its
//!   flag leaves the holder in main, and the scenarios that expect isolation
//!   fail; one that isolates without being asked fails those that expect
//!   sharing;
//! - `stop` ends the sandbox: its namespace then lives only as long as the
//!   scenario's processes in it;
//! - joining another sandbox's namespace (`container:NS`), Docker's `none`
//!   and pods have no equivalent here: those scenarios SKIP with the reason.
//!
//! The sandbox program is found on PATH, so a test can put a fake one first.

use shmconf::sysv::spawn::Launch;
use std::process::Command;
use std::time::{Duration, Instant};

use shmconf::ipcns::IpcNamespace;

use super::local::{features_here, LocalError, LocalNamespaces};
use super::{Backend, Features, SetUpError, SetupLog, SkipReason, World};
use crate::engine::procs::Proc;
use crate::events::Ending;
use crate::scenario::{IpcMode, NamespaceDecl, Scenario, ScenarioDir};

/// A sandbox program and how it is asked for an IPC namespace of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxKind {
    /// `bwrap --unshare-ipc` (private) or without it (shared).
    Bwrap,
    /// bubblewrap as `flatpak run` starts an app: new PID, network, UTS
    /// and cgroup namespaces, a fresh /proc and /dev, and `--unshare-ipc`
    /// unless the app has `--share=ipc` (the shared column).
    Flatpak,
    /// `firejail --noprofile --ipc-namespace` (private) or without it.
    Firejail,
    /// `unshare --ipc` (private) or `unshare --uts` (shared).
    Unshare,
    /// `lxc-execute` of an application container on the host's root: its
    /// own IPC namespace by default, the caller's with
    /// `lxc.namespace.share.ipc` (the configuration LXC system containers
    /// use to share one).
    Lxc,
}

impl SandboxKind {
    pub const ALL: [SandboxKind; 5] = [
        SandboxKind::Bwrap,
        SandboxKind::Flatpak,
        SandboxKind::Firejail,
        SandboxKind::Unshare,
        SandboxKind::Lxc,
    ];

    /// The kind `--backend NAME` names.
    pub fn named(name: &str) -> Option<SandboxKind> {
        SandboxKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The Debian package that has its program.
    pub fn package(self) -> &'static str {
        match self {
            SandboxKind::Bwrap | SandboxKind::Flatpak => "bubblewrap",
            SandboxKind::Firejail => "firejail",
            SandboxKind::Unshare => "util-linux",
            SandboxKind::Lxc => "lxc",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SandboxKind::Bwrap => "bwrap",
            SandboxKind::Flatpak => "flatpak",
            SandboxKind::Firejail => "firejail",
            SandboxKind::Unshare => "unshare",
            SandboxKind::Lxc => "lxc",
        }
    }

    /// The program run (the Flatpak shape is bubblewrap's).
    pub fn program(self) -> &'static str {
        match self {
            SandboxKind::Bwrap | SandboxKind::Flatpak => "bwrap",
            SandboxKind::Firejail => "firejail",
            SandboxKind::Unshare => "unshare",
            SandboxKind::Lxc => "lxc-execute",
        }
    }

    /// How it is started, in words, for a run's notes.
    pub fn describe(self, private: bool) -> String {
        match (self, private) {
            (SandboxKind::Lxc, true) => "lxc-execute (its own IPC namespace, LXC's default)".into(),
            (SandboxKind::Lxc, false) => "lxc-execute with lxc.namespace.share.ipc".into(),
            _ => self.argv(private).join(" "),
        }
    }

    /// The sandbox's words before the command it runs, with an IPC
    /// namespace of its own or the caller's.
    pub fn argv(self, private: bool) -> Vec<String> {
        let mut words: Vec<&str> = vec![self.program()];
        match self {
            SandboxKind::Bwrap => {
                words.extend(["--die-with-parent", "--ro-bind", "/", "/"]);
                if private {
                    words.push("--unshare-ipc");
                }
            }
            SandboxKind::Flatpak => {
                words.extend([
                    "--die-with-parent",
                    "--unshare-pid",
                    "--unshare-net",
                    "--unshare-uts",
                    "--unshare-cgroup-try",
                    "--ro-bind",
                    "/",
                    "/",
                    "--proc",
                    "/proc",
                    "--dev",
                    "/dev",
                ]);
                if private {
                    words.push("--unshare-ipc");
                }
            }
            SandboxKind::Firejail => {
                words.extend(["--noprofile", "--quiet"]);
                if private {
                    words.push("--ipc-namespace");
                }
            }
            SandboxKind::Unshare => words.push(if private { "--ipc" } else { "--uts" }),
            // Its name and configuration file follow (see `lxc_config`).
            SandboxKind::Lxc => {}
        }
        if matches!(self, SandboxKind::Bwrap | SandboxKind::Flatpak | SandboxKind::Unshare) {
            words.push("--");
        }
        words.into_iter().map(String::from).collect()
    }
}

/// Why a sandbox backend cannot run, or a sandbox gave no namespace.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// `--backend NAME` whose program cannot be run: the user's to fix.
    #[error("--backend {backend}: cannot run {program}: {source}")]
    NotRunnable {
        backend: &'static str,
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The sandbox (`shown`: its command line) cannot be started.
    #[error("{shown}: {source}")]
    Spawn {
        shown: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{shown}: the holder's IPC namespace: {source}")]
    HolderNamespace {
        shown: String,
        #[source]
        source: std::io::Error,
    },
    /// The sandbox ended before its holder ran (`said`: its stderr).
    #[error("{shown} ended ({ending}) before its holder ran: {said}")]
    EndedEarly {
        shown: String,
        ending: Ending,
        said: String,
    },
    #[error("{shown}: its holder did not start within {} s", START_LIMIT.as_secs())]
    HolderLate { shown: String },
    #[error(transparent)]
    RunDir(#[from] crate::rundir::RunDirError),
    #[error("an LXC configuration: {0}")]
    LxcConfig(#[source] std::io::Error),
    /// A namespace the sandbox has no way to give (a SKIP).
    #[error("namespace {ns:?}: {why}")]
    Unsupported { ns: String, why: &'static str },
    #[error("cannot hold the main namespace: {0}")]
    HoldMain(#[source] std::io::Error),
    /// The sandbox of namespace `ns` gave it no namespace.
    #[error("namespace {ns:?}: {source}")]
    Namespace {
        ns: String,
        #[source]
        source: Box<SandboxError>,
    },
}

/// A namespace the sandbox cannot give is a SKIP; the rest is BROKEN.
impl From<SandboxError> for SetUpError {
    fn from(e: SandboxError) -> SetUpError {
        match e {
            SandboxError::Unsupported { .. } => SetUpError::Unavailable(Box::new(e)),
            _ => SetUpError::Broken(Box::new(e)),
        }
    }
}

/// The command a sandbox holds its namespace with.
const HOLDER: &[&str] = &["sleep", "2147483647"];

/// The longest a sandbox may take to start its holder.
const START_LIMIT: Duration = Duration::from_secs(20);

/// Local namespaces, with each container IPC mode's namespace made by a
/// sandbox of `kind`.
pub struct SandboxBackend {
    pub kind: SandboxKind,
    /// Why no sandbox can start here (every scenario a SKIP with it).
    pub unavailable: Option<String>,
    pub local: LocalNamespaces,
}

impl SandboxBackend {
    /// Whether the sandbox runs here: Err when its program is not there
    /// (the user's mistake), Ok(Some(why)) when it cannot start a sandbox
    /// here (this machine's limit: every scenario SKIPs with its words).
    pub fn probe(kind: SandboxKind) -> Result<Option<String>, SandboxError> {
        if let Err(source) = Command::new(kind.program()).arg("--version").output() {
            return Err(SandboxError::NotRunnable {
                backend: kind.name(),
                program: kind.program(),
                source,
            });
        }
        // A private sandbox around the holder, as a scenario starts one.
        Ok(start_sandbox(kind, true)
            .err()
            .map(|e| format!("{} cannot start a sandbox here: {e}", kind.name())))
    }
}

impl Backend for SandboxBackend {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn features(&self) -> Features {
        if let Some(why) = &self.unavailable {
            return Features::unavailable(SkipReason::Environment(why.clone()));
        }
        if !self.local.capabilities.namespaces {
            return Features::unavailable(SkipReason::Unsupported(
                "sandbox namespaces are entered by handle, which needs IPC namespaces (root or CAP_SYS_ADMIN)".into(),
            ));
        }
        features_here(&self.local.capabilities)
    }

    fn set_up(
        &self,
        scenario: &Scenario,
        dir: &ScenarioDir,
        log: &mut dyn SetupLog,
    ) -> Result<Box<dyn World>, SetUpError> {
        let kind = self.kind;
        self.local
            .world(scenario, dir, log, &mut |name, decl| namespace_of(kind, name, decl))
    }
}

/// The namespace `decl` asks for: a sandbox's, or a plain new one for a
/// namespace without a container mode.
fn namespace_of(
    kind: SandboxKind,
    name: &str,
    decl: &NamespaceDecl,
) -> Result<(IpcNamespace, Option<Proc>), SetUpError> {
    let unsupported = |why: &'static str| Err(SandboxError::Unsupported { ns: name.into(), why }.into());
    if decl.pod.is_some() {
        return unsupported("pods are a container engine's");
    }
    let private = match &decl.docker {
        None => {
            let ns = IpcNamespace::unshare_new().map_err(LocalError::CreateNamespace)?;
            return Ok((ns, None));
        }
        Some(IpcMode::Private | IpcMode::Shareable) => true,
        Some(IpcMode::Host) => false,
        Some(IpcMode::Local) => {
            return IpcNamespace::current()
                .map(|ns| (ns, None))
                .map_err(|e| SandboxError::HoldMain(e).into())
        }
        Some(IpcMode::Container(_)) => return unsupported("a sandbox cannot join another sandbox's IPC namespace"),
        Some(IpcMode::None) => return unsupported("Docker's ipc none has no sandbox equivalent"),
    };
    start_sandbox(kind, private).map_err(|e| {
        SandboxError::Namespace {
            ns: name.into(),
            source: Box::new(e),
        }
        .into()
    })
}

/// Start `kind`'s sandbox around the holder, from the calling thread's
/// IPC namespace, and take a handle on the namespace the holder is in.
fn start_sandbox(kind: SandboxKind, private: bool) -> Result<(IpcNamespace, Option<Proc>), SandboxError> {
    let mut argv = kind.argv(private);
    // LXC takes its IPC mode from a configuration file, read at start.
    let _config = if kind == SandboxKind::Lxc {
        let config = lxc_config(private)?;
        let name = config
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().replace('.', "-"))
            .unwrap_or_default();
        argv.extend(["-n".into(), name, "-f".into(), config.path().display().to_string()]);
        argv.push("--".into());
        Some(config)
    } else {
        None
    };
    let mut cmd = Launch::new(&argv[0]);
    cmd.args(&argv[1..]).args(HOLDER);
    let shown = format!("{} {}", argv.join(" "), HOLDER.join(" "));
    // As every process of a scenario starts: its own group (killed when the
    // world lets it go, or on a signal to the harness), dying with it.
    let sandbox = Proc::spawn("sandbox", cmd, None).map_err(|source| SandboxError::Spawn {
        shown: shown.clone(),
        source,
    })?;
    let start = Instant::now();
    loop {
        if let Some(pid) = holder_pid(sandbox.pid) {
            let ns =
                std::fs::File::open(format!("/proc/{pid}/ns/ipc")).map_err(|source| SandboxError::HolderNamespace {
                    shown: shown.clone(),
                    source,
                })?;
            return Ok((IpcNamespace::from_file(ns), Some(sandbox)));
        }
        if let Some(ending) = sandbox.ending() {
            let stderr = String::from_utf8_lossy(&sandbox.output().1.bytes).into_owned();
            return Err(SandboxError::EndedEarly {
                shown,
                ending,
                said: stderr.trim().into(),
            });
        }
        if start.elapsed() > START_LIMIT {
            return Err(SandboxError::HolderLate { shown });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An LXC application container's configuration: the host's root
/// read-only, no network, and, when not private, the IPC namespace of the
/// calling thread (`lxc.namespace.share.ipc` takes a task id).
fn lxc_config(private: bool) -> Result<tempfile::NamedTempFile, SandboxError> {
    let run = crate::rundir::current()?;
    let mut text = String::from(
        "lxc.rootfs.path = dir:/\nlxc.rootfs.options = ro\nlxc.uts.name = shmconf\nlxc.net.0.type = empty\n\
         lxc.apparmor.profile = unconfined\nlxc.mount.auto = proc:rw sys:ro\n",
    );
    if !private {
        text.push_str(&format!("lxc.namespace.share.ipc = {}\n", nix::unistd::gettid()));
    }
    let mut file = tempfile::Builder::new()
        .prefix("lxc-shmconf-")
        .suffix(".conf")
        .tempfile_in(run.path())
        .map_err(SandboxError::LxcConfig)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(SandboxError::LxcConfig)?;
    Ok(file)
}

/// The holder among `root` and its descendants: the task running `sleep`
/// (a sandbox forks it, or execs it in its own place).
fn holder_pid(root: i32) -> Option<i32> {
    crate::engine::tasks::tree(root)
        .into_iter()
        .map(|(pid, _)| pid)
        .find(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == HOLDER[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_no_sandbox_gives_is_a_skip_and_a_failed_sandbox_broken() {
        let pods = SandboxError::Unsupported {
            ns: "m".into(),
            why: "pods are a container engine's",
        };
        assert_eq!(pods.to_string(), "namespace \"m\": pods are a container engine's");
        assert!(matches!(SetUpError::from(pods), SetUpError::Unavailable(_)));
        let late = SandboxError::Namespace {
            ns: "p".into(),
            source: Box::new(SandboxError::HolderLate {
                shown: "bwrap -- sleep 2147483647".into(),
            }),
        };
        assert_eq!(
            late.to_string(),
            "namespace \"p\": bwrap -- sleep 2147483647: its holder did not start within 20 s"
        );
        assert!(matches!(SetUpError::from(late), SetUpError::Broken(_)));
    }

    #[test]
    fn each_sandbox_asks_for_its_own_namespace_only_when_private() {
        for (kind, flag) in [
            (SandboxKind::Bwrap, "--unshare-ipc"),
            (SandboxKind::Flatpak, "--unshare-ipc"),
            (SandboxKind::Firejail, "--ipc-namespace"),
            (SandboxKind::Unshare, "--ipc"),
        ] {
            assert!(kind.argv(true).iter().any(|w| w == flag), "{kind:?}");
            assert!(!kind.argv(false).iter().any(|w| w == flag), "{kind:?}");
            assert_eq!(kind.argv(false)[0], kind.program());
        }
    }
}
