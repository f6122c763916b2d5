//! The Docker backend: each IPC namespace of a scenario is a container of our
//! image started with the matching `--ipc` mode, and steps run in it with
//! `docker exec`. The harness still reads the kernel's truth directly: it
//! enters each container's IPC namespace (`/proc/PID/ns/ipc`) to read the
//! segment table. Every container is labelled `io.shmconf.role=backend` and
//! `io.shmconf.run=<run id>` and removed when its scenario ends, whatever
//! happened (its handle's Drop runs `docker rm -f`).

use std::path::Path;
use std::process::{Command, Stdio};

use shmconf::ipcns::IpcNamespace;

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
