//! The one composition root: from what the user chose (or what the test
//! harness chooses) to a [`Runner`]: implementation, backend, oracle,
//! limits, expectations. `main.rs` and `harness/tests/scenarios.rs` both
//! build their runner here, so tests run exactly what the CLI runs.

use std::path::PathBuf;

use crate::engine::backend::containers::{ContainerBackend, ContainerConfig, EngineKind, ProbeError};
use crate::engine::backend::local::LocalNamespaces;
use crate::engine::backend::sandbox::SandboxBackend;
pub use crate::engine::backend::sandbox::SandboxKind;
use crate::engine::backend::shared::SharedNamespace;
use crate::engine::backend::{Backend, Capabilities};
use crate::engine::oracle::{self, CrossCheck, Oracle, Procfs, Syscalls};
use crate::engine::Limits;
use crate::impls::Implementation;
use crate::outcome::Expectations;
use crate::runner::Runner;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImplChoice {
    Builtin(String),
    /// `--impl-file`: commands, options and deviations in one file.
    File(PathBuf),
    Custom {
        name: String,
        writer: String,
        reader: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Namespaces where this process can make them, else the shared namespace.
    Auto,
    Namespaces,
    Shared,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChoice {
    Local(Isolation),
    /// Every scenario namespace a container (or pod member) of `image`.
    Containers {
        engine: EngineKind,
        image: String,
        /// Podman's OCI runtime (runc, crun, runsc).
        runtime: Option<String>,
        /// Podman: the project's containers.conf.
        containers_conf: Option<PathBuf>,
    },
    /// Local namespaces, each scenario namespace with a container IPC mode
    /// a sandbox of this kind (bubblewrap, firejail, unshare).
    Sandbox(SandboxKind),
}

/// How the kernel's view is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OracleChoice {
    /// /proc/sysvipc/shm where it exists, else shmctl (with a note).
    Auto,
    Procfs,
    Syscalls,
    /// Both, compared on every read.
    CrossCheck,
}

#[derive(Debug, Clone)]
pub struct Choices {
    pub implementation: ImplChoice,
    pub backend: BackendChoice,
    pub oracle: OracleChoice,
    pub limits: Limits,
    pub jobs: usize,
    pub expectations: Option<PathBuf>,
    pub replay_order: Option<String>,
}

/// Without root, become root of a user namespace of our own so IPC
/// namespaces can be made. Call while the process is single-threaded
/// (unshare(CLONE_NEWUSER) requires it): first thing in `main`.
pub fn enter_user_namespace_if_unprivileged() {
    use nix::sched::{unshare, CloneFlags};
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    if uid.is_root() || unshare(CloneFlags::CLONE_NEWUSER).is_err() {
        return;
    }
    let _ = std::fs::write("/proc/self/setgroups", "deny");
    let _ = std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"));
    let _ = std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"));
}

/// The implementation chosen, checked where its programs run on this
/// machine, with its known deviations.
fn implementation(
    choice: &ImplChoice,
    docker: bool,
) -> Result<(Implementation, Expectations), crate::impls::ImplError> {
    Ok(match choice {
        ImplChoice::File(path) => {
            let (mut imp, file_deviations) = crate::impls::ImplFile::load(path)?;
            if !docker {
                crate::impls::check_program("writer", &imp.writer)?;
                crate::impls::check_program("reader", &imp.reader)?;
                imp = imp.staged();
            }
            (imp, file_deviations)
        }
        ImplChoice::Custom { name, writer, reader } => {
            let mut imp = Implementation::custom(name, writer, reader)?;
            // Commands run on this machine: check they can start. (In a
            // container they name the container's files, not ours.)
            if !docker {
                crate::impls::check_program("--writer", &imp.writer)?;
                crate::impls::check_program("--reader", &imp.reader)?;
                imp = imp.staged();
            }
            (imp, Expectations::default())
        }
        ImplChoice::Builtin(name) => {
            if docker {
                Implementation::in_image(name)?
            } else {
                Implementation::builtin(name)?
            }
        }
    })
}

/// Why the runner cannot be built: one line for the user (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(transparent)]
    Implementation(#[from] crate::impls::ImplError),
    /// `--expectations FILE` (file:line:col where it is the content).
    #[error(transparent)]
    Expectations(crate::scenario::LoadError),
    #[error("--runtime is for --backend podman (Docker's runtimes are the daemon's: see docs/runtimes.md)")]
    RuntimeWithDocker,
    #[error("--containers-conf {}: no such file", .0.display())]
    NoContainersConf(PathBuf),
    #[error("--containers-conf {}: {source}", .path.display())]
    ContainersConf {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Container(#[from] crate::engine::backend::containers::ContainerError),
    /// The engine is not there, or has no image: the user's to fix.
    #[error("--backend {program}: {why}")]
    EngineUnusable { program: &'static str, why: String },
    #[error(transparent)]
    Sandbox(#[from] crate::engine::backend::sandbox::SandboxError),
    #[error("--isolation namespaces: this process cannot create IPC namespaces (needs root or CAP_SYS_ADMIN)")]
    NoNamespaces,
}

/// A container engine's backend, probed: an engine that is not there is
/// an error, a runtime that cannot start containers here a SKIP reason.
fn container_backend(
    c: &Choices,
    engine: EngineKind,
    image: &str,
    runtime: &Option<String>,
    containers_conf: &Option<PathBuf>,
    notes: &mut Vec<String>,
) -> Result<Box<dyn Backend>, ComposeError> {
    let program = engine.program();
    if runtime.is_some() && engine == EngineKind::Docker {
        return Err(ComposeError::RuntimeWithDocker);
    }
    let mut config = ContainerConfig::new(engine, image);
    config.runtime = runtime.clone();
    config.bounds = c.limits.bounds;
    // Given, or the environment's, taken from the folder shmconf was
    // started in (Podman resolves a relative one from wherever it
    // runs); else, for Podman, the project's own, as `matrix` uses,
    // never the machine's.
    let given = containers_conf
        .clone()
        .or_else(|| std::env::var_os("CONTAINERS_CONF").map(PathBuf::from));
    config.containers_conf = match (given, engine) {
        (Some(conf), _) => {
            if !conf.is_file() {
                return Err(ComposeError::NoContainersConf(conf));
            }
            Some(
                std::path::absolute(&conf).map_err(|source| ComposeError::ContainersConf {
                    path: conf.clone(),
                    source,
                })?,
            )
        }
        (None, EngineKind::Podman) => Some(crate::engine::backend::containers::project_podman_conf()?),
        (None, _) => None,
    };
    // An engine that is not there at all is the user's mistake; a
    // runtime that cannot start containers here is this machine's
    // limit: every scenario a SKIP with its reason.
    let unavailable = match config.probe() {
        Ok(()) => None,
        Err(ProbeError::Unusable(why)) => return Err(ComposeError::EngineUnusable { program, why }),
        Err(ProbeError::CannotStart(why)) => Some(why),
    };
    notes.push(format!("containers: {}", config.describe()));
    if config.sandboxed() {
        notes.push(
            "the runtime is a sandbox with a kernel of its own: the kernel's view is read inside each container (shmconf kernel-view)"
                .into(),
        );
    }
    if let Some(why) = &unavailable {
        notes.push(format!("no container can start here: {why}"));
    }
    Ok(Box::new(ContainerBackend { config, unavailable }))
}

/// Build the runner; errors are one line for the user (exit 2).
pub fn compose(c: &Choices) -> Result<Runner, ComposeError> {
    let docker = matches!(c.backend, BackendChoice::Containers { .. });
    let (implementation, deviations) = implementation(&c.implementation, docker)?;
    // An expectations file replaces the implementation's own deviations.
    let expectations = match &c.expectations {
        Some(p) => Expectations::load(p).map_err(ComposeError::Expectations)?,
        None => deviations,
    };
    let capabilities = Capabilities::detect();
    let mut notes = implementation.notes.clone();
    let backend: Box<dyn Backend> = match &c.backend {
        BackendChoice::Containers {
            engine,
            image,
            runtime,
            containers_conf,
        } => container_backend(c, *engine, image, runtime, containers_conf, &mut notes)?,
        BackendChoice::Sandbox(kind) => {
            let unavailable = SandboxBackend::probe(*kind)?;
            let confiner = crate::engine::confine::Confiner::new(c.limits.bounds);
            notes.extend(confiner.degraded());
            notes.push(format!(
                "sandboxes: {} for a private namespace, {} for a shared one (from the scenario's own)",
                kind.describe(true),
                kind.describe(false)
            ));
            if let Some(why) = &unavailable {
                notes.push(format!("no sandbox can start here: {why}"));
            }
            Box::new(SandboxBackend {
                kind: *kind,
                unavailable,
                local: LocalNamespaces {
                    capabilities,
                    pid_init: crate::impls::pid_init_command(),
                    confiner,
                },
            })
        }
        BackendChoice::Local(isolation) => {
            let namespaces = match isolation {
                Isolation::Auto => capabilities.namespaces,
                Isolation::Namespaces if !capabilities.namespaces => return Err(ComposeError::NoNamespaces),
                Isolation::Namespaces => true,
                Isolation::Shared => false,
            };
            if !namespaces && *isolation == Isolation::Auto {
                notes.push(
                    "this process cannot make and hold IPC namespaces: scenarios run one at a time in its own (shared isolation)"
                        .to_string(),
                );
            }
            let confiner = crate::engine::confine::Confiner::new(c.limits.bounds);
            notes.extend(confiner.degraded());
            if namespaces {
                Box::new(LocalNamespaces {
                    capabilities,
                    pid_init: crate::impls::pid_init_command(),
                    confiner,
                })
            } else {
                Box::new(SharedNamespace {
                    capabilities,
                    pid_init: crate::impls::shmconf_pid_init_command(),
                    confiner,
                })
            }
        }
    };
    let (oracle, oracle_note): (Box<dyn Oracle>, Option<String>) = match c.oracle {
        OracleChoice::Auto => oracle::detect(),
        OracleChoice::Procfs => (Box::new(Procfs), None),
        OracleChoice::Syscalls => (Box::new(Syscalls), None),
        OracleChoice::CrossCheck => (Box::new(CrossCheck), None),
    };
    Ok(Runner {
        implementation,
        features: backend.features(),
        backend,
        oracle,
        notes: notes.into_iter().chain(oracle_note).collect(),
        limits: c.limits,
        jobs: c.jobs.max(1),
        expectations,
        replay_order: c.replay_order.clone(),
    })
}
