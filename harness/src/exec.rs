//! Execution: run a scenario's steps for real and record what happened.
//!
//! Each scenario runs on a thread of its own that moves into fresh IPC
//! namespaces (namespaces are per thread; every child inherits the
//! thread's). The thread owns the temp dir, the namespace handles and the
//! processes, so when it ends, for whatever reason, processes are killed with
//! their groups, the temp dir is removed and the kernel destroys the
//! namespaces' segments. Nothing here judges: it only records events.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use shmconf::ipcns::IpcNamespace;
use shmconf::sysv::{Key, Segment};
use shmconf::SegTable;

use crate::docker::{Container, DockerConfig, IpcMode};
use crate::events::{Ending, Event, EventKind, Log, SegRow, Text};
use crate::impls::Implementation;
use crate::procs::{self, PidNamespace, Proc, WaitOutcome};
use crate::scenario::{default_proc_name, parse_key_spec, parse_signal, Action, KeySpec, Scenario, Step, MAIN_NS};

/// How scenarios are isolated from the host and from each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Fresh IPC namespaces per scenario (root, or root in a user namespace).
    Namespaces,
    /// No namespace can be made: the current one, one scenario at a time,
    /// with a check that the scenario found and left no segment of its own.
    Shared,
    /// Each namespace is a container of our image with a Docker `--ipc` mode.
    Docker,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub step_timeout: Duration,
    pub scenario_timeout: Duration,
    pub isolation: Isolation,
    /// Where scenario temp dirs go (default: the system temp dir).
    pub tmp_root: Option<PathBuf>,
    /// Command of the PID-namespace init (`shmconf pid-init`); none: no PID namespace.
    pub pid_init: Option<Vec<String>>,
    /// The Docker backend's settings (with `Isolation::Docker`).
    pub docker: Option<DockerConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            step_timeout: Duration::from_secs(5),
            scenario_timeout: Duration::from_secs(30),
            isolation: Isolation::Namespaces,
            tmp_root: None,
            pid_init: None,
            docker: None,
        }
    }
}

/// Most bytes of a segment's content the log keeps.
pub const CONTENT_CAP: usize = 64 * 1024;

struct Recorder {
    start: Instant,
    log: Log,
}

impl Recorder {
    fn rec(&mut self, step: Option<usize>, kind: EventKind) {
        let t_us = self.start.elapsed().as_micros() as u64;
        self.log.events.push(Event { t_us, step, kind });
    }
}

/// Run `scenario` against `imp` and return its event log.
pub fn execute(id: &str, scenario: &Scenario, imp: &Implementation, opts: &Options) -> Log {
    std::thread::scope(|s| {
        s.spawn(|| execute_on_this_thread(id, scenario, imp, opts))
            .join()
            .unwrap_or_else(|panic| {
                let mut log = Log {
                    scenario: id.into(),
                    implementation: imp.name.clone(),
                    ..Log::default()
                };
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                log.events.push(Event {
                    t_us: 0,
                    step: None,
                    kind: EventKind::Broken {
                        message: format!("harness panicked: {what}"),
                    },
                });
                log
            })
    })
}

fn execute_on_this_thread(id: &str, scenario: &Scenario, imp: &Implementation, opts: &Options) -> Log {
    let mut r = Recorder {
        start: Instant::now(),
        log: Log {
            scenario: id.into(),
            implementation: imp.name.clone(),
            isolation: match opts.isolation {
                Isolation::Namespaces => "namespaces".into(),
                Isolation::Shared => "shared".into(),
                Isolation::Docker => "docker".into(),
            },
            ..Log::default()
        },
    };
    let mut ctx = match Context::set_up(scenario, opts, &mut r) {
        Ok(ctx) => ctx,
        Err(message) => {
            r.rec(None, EventKind::Broken { message });
            return r.log;
        }
    };
    let deadline = r.start + opts.scenario_timeout;
    for (i, spanned) in scenario.steps.iter().enumerate() {
        let n = i + 1;
        let step = spanned.get_ref();
        if procs::interrupted() {
            r.rec(
                Some(n),
                EventKind::Aborted {
                    reason: "interrupted (Ctrl-C)".into(),
                },
            );
            break;
        }
        if Instant::now() >= deadline {
            r.rec(
                Some(n),
                EventKind::Timeout {
                    proc: "scenario".into(),
                    waiting_for: "the whole scenario".into(),
                    limit_ms: opts.scenario_timeout.as_millis() as u64,
                    stdout: Text::default(),
                    stderr: Text::default(),
                },
            );
            r.rec(
                Some(n),
                EventKind::Aborted {
                    reason: "scenario time limit".into(),
                },
            );
            break;
        }
        let ns = scenario.resolve_ns(step.ns()).to_string();
        if let Err(e) = ctx.enter(&ns) {
            r.rec(
                Some(n),
                EventKind::Broken {
                    message: format!("cannot enter namespace {ns:?}: {e}"),
                },
            );
            break;
        }
        let limit = step.timeout_ms.map_or(opts.step_timeout, Duration::from_millis);
        let step_deadline = (Instant::now() + limit).min(deadline);
        let go_on = ctx.run_step(n, step, &ns, imp, step_deadline, limit, &mut r);
        if !go_on {
            break;
        }
    }
    ctx.tear_down(&mut r);
    r.log
}

struct Context {
    /// Init of the scenario's PID namespace: killing it kills every process
    /// the scenario started, even one that left its process group (setsid).
    /// Declared first so it is dropped (killed) before the temp dir goes.
    pid_init: Option<(Proc, PidNamespace)>,
    dir: tempfile::TempDir,
    namespaces: BTreeMap<String, IpcNamespace>,
    procs: BTreeMap<String, Proc>,
    isolation: Isolation,
    /// Shared isolation: segment ids that existed before the scenario.
    baseline: Vec<i32>,
    /// Segment ids saved by `save_id`, for `{NAME}` in args.
    saved_ids: BTreeMap<String, i32>,
    /// `shmem_mark` values (KiB of Shmem) by name.
    shmem_marks: BTreeMap<String, u64>,
    /// Docker backend: the container of each namespace (removed on drop).
    containers: BTreeMap<String, Container>,
    /// Docker backend: held while a scenario may touch the host's namespace.
    host_lock: Option<std::sync::MutexGuard<'static, ()>>,
}

/// Scenarios that touch the host's IPC namespace (`--ipc host`) run one at a time.
static HOST_NS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Context {
    fn set_up(scenario: &Scenario, opts: &Options, r: &mut Recorder) -> Result<Context, String> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("shmconf-");
        let dir = match &opts.tmp_root {
            Some(root) => builder.tempdir_in(root),
            None => builder.tempdir(),
        }
        .map_err(|e| format!("cannot make the scenario's temp dir: {e}"))?;
        // Other uids must reach key files in it (ftok needs search permission).
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod temp dir: {e}"))?;
        r.log.workdir = dir.path().display().to_string();
        for f in &scenario.files {
            std::fs::write(dir.path().join(f), b"").map_err(|e| format!("cannot create key file {f:?}: {e}"))?;
        }
        let mut namespaces = BTreeMap::new();
        let mut baseline = Vec::new();
        let mut pid_init = None;
        let mut containers: BTreeMap<String, Container> = BTreeMap::new();
        let mut host_lock = None;
        match opts.isolation {
            Isolation::Namespaces => {
                let mut names = vec![MAIN_NS.to_string()];
                names.extend(
                    scenario
                        .namespaces
                        .iter()
                        .filter(|(_, d)| d.share.is_none())
                        .map(|(n, _)| n.clone()),
                );
                for name in names {
                    let ns = IpcNamespace::unshare_new().map_err(|e| format!("cannot create IPC namespace: {e}"))?;
                    r.log.namespaces.insert(name.clone(), ns.inode().unwrap_or(0));
                    namespaces.insert(name, ns);
                }
                // The init must not hold a scenario namespace other than main
                // alive (a dropped namespace must die with its last process).
                namespaces[MAIN_NS]
                    .enter()
                    .map_err(|e| format!("cannot enter the main namespace: {e}"))?;
                pid_init = start_pid_init(opts)?;
            }
            Isolation::Docker => {
                let cfg = opts.docker.as_ref().ok_or("the docker backend needs its settings")?;
                let modes = docker_modes(scenario)?;
                if modes.iter().any(|(_, m)| m.touches_host()) {
                    host_lock = Some(HOST_NS.lock().unwrap_or_else(|p| p.into_inner()));
                    baseline = SegTable::read()
                        .map_err(|e| e.to_string())?
                        .rows
                        .iter()
                        .map(|r| r.shmid)
                        .collect();
                }
                for (name, mode) in modes {
                    let decl = scenario.namespaces.get(&name);
                    let ipc = match &mode {
                        IpcMode::Local => {
                            let ns = IpcNamespace::current().map_err(|e| e.to_string())?;
                            r.log.namespaces.insert(name.clone(), ns.inode().unwrap_or(0));
                            namespaces.insert(name, ns);
                            continue;
                        }
                        IpcMode::Private => "private".to_string(),
                        IpcMode::Shareable => "shareable".to_string(),
                        IpcMode::Host => "host".to_string(),
                        IpcMode::None => "none".to_string(),
                        IpcMode::Container(target) => match containers.get(target) {
                            Some(c) => format!("container:{}", c.name),
                            None => format!("container:{}", container_name(cfg, r, target)),
                        },
                    };
                    let cname = container_name(cfg, r, &name);
                    let started = Container::start(cfg, &cname, &ipc, dir.path());
                    let expected = decl.and_then(|d| d.expect_error.clone());
                    match started {
                        Ok(c) => {
                            r.log.namespaces.insert(name.clone(), c.ipc.inode().unwrap_or(0));
                            r.rec(
                                None,
                                EventKind::Container {
                                    ns: name.clone(),
                                    name: cname,
                                    ipc,
                                    pid: c.pid,
                                    error: None,
                                },
                            );
                            containers.insert(name, c);
                        }
                        Err(error) => {
                            r.rec(
                                None,
                                EventKind::Container {
                                    ns: name.clone(),
                                    name: cname,
                                    ipc: ipc.clone(),
                                    pid: 0,
                                    error: Some(error.clone()),
                                },
                            );
                            if expected.is_none() {
                                return Err(format!(
                                    "docker refused the container of namespace {name:?} (--ipc {ipc}): {error}"
                                ));
                            }
                        }
                    }
                }
            }
            Isolation::Shared => {
                let ns = IpcNamespace::current().map_err(|e| e.to_string())?;
                r.log.namespaces.insert(MAIN_NS.into(), ns.inode().unwrap_or(0));
                namespaces.insert(MAIN_NS.into(), ns);
                let table = SegTable::read().map_err(|e| format!("cannot read the segment table: {e}"))?;
                baseline = table.rows.iter().map(|row| row.shmid).collect();
                // The scenario's keys must be free before it starts: a key's low
                // 24 bits come from the file, so one comparison covers every proj_id.
                for f in &scenario.files {
                    let Ok(file_key) = Key::ftok(&dir.path().join(f), 1) else {
                        continue;
                    };
                    if let Some(row) = table
                        .rows
                        .iter()
                        .find(|r| r.key.as_u32() & 0xff_ffff == file_key.as_u32() & 0xff_ffff)
                    {
                        return Err(format!(
                            "the shared namespace already holds a segment with the key of {f} ({}): cannot run without a namespace of its own",
                            row.key
                        ));
                    }
                }
            }
        }
        Ok(Context {
            pid_init,
            dir,
            namespaces,
            procs: BTreeMap::new(),
            isolation: opts.isolation,
            baseline,
            saved_ids: BTreeMap::new(),
            shmem_marks: BTreeMap::new(),
            containers,
            host_lock,
        })
    }

    fn enter(&self, ns: &str) -> Result<(), String> {
        // Shared isolation has one namespace, the thread's own: no setns
        // (which would need CAP_SYS_ADMIN, exactly what is missing there).
        if self.isolation == Isolation::Shared {
            return Ok(());
        }
        if let Some(c) = self.containers.get(ns) {
            return c.ipc.enter().map_err(|e| e.to_string());
        }
        let handle = self
            .namespaces
            .get(ns)
            .ok_or_else(|| format!("namespace {ns:?} not set up"))?;
        handle.enter().map_err(|e| e.to_string())
    }

    /// Run one step; false stops the scenario (timeout, setup error, Ctrl-C).
    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &mut self,
        n: usize,
        step: &Step,
        ns: &str,
        imp: &Implementation,
        deadline: Instant,
        limit: Duration,
        r: &mut Recorder,
    ) -> bool {
        let dir = self.dir.path().to_path_buf();
        match step.action() {
            Action::Run | Action::Exec => {
                let name = step.name.clone().unwrap_or_else(|| default_proc_name(step, n));
                let mut argv: Vec<String> = match (&step.run, &step.exec) {
                    (Some(role), _) => imp.command(role).to_vec(),
                    (_, Some(argv)) => argv.clone(),
                    _ => unreachable!("validated: run or exec"),
                };
                for arg in &step.args {
                    match substitute(arg, &self.saved_ids) {
                        Ok(a) => argv.push(a),
                        Err(message) => {
                            r.rec(Some(n), EventKind::Broken { message });
                            return false;
                        }
                    }
                }
                if self.isolation == Isolation::Docker {
                    let Some(container) = self.containers.get(ns) else {
                        let message = format!("namespace {ns:?} has no running container to run {name} in");
                        r.rec(Some(n), EventKind::Broken { message });
                        return false;
                    };
                    argv = container.exec_argv(&dir, step.uid, step.gid, &step.env, &argv);
                }
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..]).current_dir(&dir).envs(&step.env);
                if self.isolation == Isolation::Docker {
                    // uid/gid and env went to docker exec.
                } else if let Some(uid) = step.uid {
                    cmd.uid(uid).gid(step.gid.unwrap_or(uid));
                } else if let Some(gid) = step.gid {
                    cmd.gid(gid);
                }
                let mut proc = match Proc::spawn(&name, cmd, self.pid_init.as_mut().map(|(_, ns)| ns)) {
                    Ok(p) => p,
                    Err(e) => {
                        r.rec(
                            Some(n),
                            EventKind::SpawnFailed {
                                proc: name,
                                argv,
                                error: e.to_string(),
                            },
                        );
                        return !procs::interrupted();
                    }
                };
                r.rec(
                    Some(n),
                    EventKind::Spawn {
                        proc: name.clone(),
                        argv,
                        ns: ns.into(),
                        pid: proc.pid,
                        uid: step.uid,
                    },
                );
                let stdin = step
                    .stdin
                    .as_ref()
                    .map(|b| b.to_vec().expect("validated"))
                    .unwrap_or_default();
                let close = if step.background {
                    step.close_stdin.unwrap_or(step.stdin.is_some())
                } else {
                    true
                };
                if !stdin.is_empty() || close {
                    match proc.write_stdin(&stdin, close) {
                        Ok(()) => r.rec(
                            Some(n),
                            EventKind::Stdin {
                                proc: name.clone(),
                                data: Text(stdin),
                                closed: close,
                            },
                        ),
                        Err(e) => r.rec(
                            Some(n),
                            EventKind::StdinFailed {
                                proc: name.clone(),
                                error: e.to_string(),
                            },
                        ),
                    }
                }
                if step.background {
                    self.procs.insert(name, proc);
                    true
                } else {
                    Self::finish(
                        self.isolation == Isolation::Docker,
                        n,
                        &name,
                        &mut proc,
                        deadline,
                        limit,
                        "its exit",
                        r,
                    )
                }
            }
            Action::Feed => {
                let name = step.feed.clone().unwrap();
                let proc = self.procs.get_mut(&name).expect("validated");
                let data = step.stdin.as_ref().expect("validated").to_vec().expect("validated");
                let close = step.close_stdin.unwrap_or(true);
                match proc.write_stdin(&data, close) {
                    Ok(()) => r.rec(
                        Some(n),
                        EventKind::Stdin {
                            proc: name,
                            data: Text(data),
                            closed: close,
                        },
                    ),
                    Err(e) => r.rec(
                        Some(n),
                        EventKind::StdinFailed {
                            proc: name,
                            error: e.to_string(),
                        },
                    ),
                }
                true
            }
            Action::Wait if step.until_attached.is_some() => {
                let name = step.wait.clone().unwrap();
                let spec = step.until_attached.clone().unwrap();
                let key = match parse_key_spec(&spec).expect("validated") {
                    KeySpec::Ftok { file, proj_id } => Key::ftok(&dir.join(&file), proj_id).map(|k| k.raw()).ok(),
                    KeySpec::Raw(v) => Some(v),
                    KeySpec::Private => Some(0),
                };
                let proc = self.procs.get_mut(&name).expect("validated");
                loop {
                    let attached = key.is_some_and(|k| {
                        SegTable::read()
                            .map(|t| t.by_key(Key::from_raw(k)).any(|row| row.nattch >= 1))
                            .unwrap_or(false)
                    });
                    if attached {
                        r.rec(
                            Some(n),
                            EventKind::OutputSeen {
                                proc: name,
                                text: format!("attached to {spec}"),
                            },
                        );
                        return true;
                    }
                    if proc.has_exited() || Instant::now() >= deadline || procs::interrupted() {
                        let (stdout, stderr) = proc.output();
                        let exited = if proc.has_exited() {
                            " (the process had already exited)"
                        } else {
                            ""
                        };
                        proc.kill_group();
                        r.rec(
                            Some(n),
                            EventKind::Timeout {
                                proc: name,
                                waiting_for: format!("a segment with key {spec} to be attached{exited}"),
                                limit_ms: limit.as_millis() as u64,
                                stdout: Text(stdout),
                                stderr: Text(stderr),
                            },
                        );
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Action::Wait => {
                let name = step.wait.clone().unwrap();
                let proc = self.procs.get_mut(&name).expect("validated");
                match &step.until_stdout {
                    Some(text) => match proc.wait_stdout(text.as_bytes(), deadline) {
                        WaitOutcome::Done(()) => {
                            r.rec(
                                Some(n),
                                EventKind::OutputSeen {
                                    proc: name,
                                    text: text.clone(),
                                },
                            );
                            true
                        }
                        WaitOutcome::TimedOut => {
                            let (stdout, stderr) = proc.output();
                            let waiting_for = if proc.has_exited() {
                                format!("stdout to contain {text:?} (the process had already exited)")
                            } else {
                                format!("stdout to contain {text:?}")
                            };
                            proc.kill_group();
                            r.rec(
                                Some(n),
                                EventKind::Timeout {
                                    proc: name,
                                    waiting_for,
                                    limit_ms: limit.as_millis() as u64,
                                    stdout: Text(stdout),
                                    stderr: Text(stderr),
                                },
                            );
                            false
                        }
                        WaitOutcome::Interrupted => false,
                    },
                    None => Self::finish(
                        self.isolation == Isolation::Docker,
                        n,
                        &name,
                        proc,
                        deadline,
                        limit,
                        "its exit",
                        r,
                    ),
                }
            }
            Action::Kill => {
                let name = step.kill.clone().unwrap();
                let sig = parse_signal(step.signal.as_deref().unwrap_or("SIGKILL")).expect("validated");
                let proc = self.procs.get_mut(&name).expect("validated");
                if let Err(e) = proc.signal(sig) {
                    r.rec(
                        Some(n),
                        EventKind::Broken {
                            message: format!("cannot signal {name}: {e}"),
                        },
                    );
                    return false;
                }
                r.rec(
                    Some(n),
                    EventKind::Signal {
                        proc: name.clone(),
                        signal: sig.as_str().into(),
                    },
                );
                Self::finish(
                    self.isolation == Isolation::Docker,
                    n,
                    &name,
                    proc,
                    deadline,
                    limit,
                    "its exit after the signal",
                    r,
                )
            }
            Action::Stop => {
                let target = step.stop.clone().unwrap();
                let removed = self.containers.remove(&target);
                r.rec(
                    Some(n),
                    EventKind::Stopped {
                        ns: target.clone(),
                        error: removed.is_none().then(|| "no container is running for it".to_string()),
                    },
                );
                removed.is_some()
            }
            Action::CollideFiles => {
                let [a, b] = step.collide_files.clone().unwrap();
                let result = collide_files(&dir, &a, &b, deadline);
                if let Err(Collide::NotFound(reason)) = &result {
                    r.rec(Some(n), EventKind::Skipped { reason: reason.clone() });
                    return false;
                }
                let result = result.map_err(|e| match e {
                    Collide::Io(e) | Collide::NotFound(e) => e,
                });
                let ok = result.is_ok();
                let (path, error) = match result {
                    Ok(detail) => (detail, None),
                    Err(e) => (format!("{a} ~ {b}"), Some(e)),
                };
                r.rec(
                    Some(n),
                    EventKind::File {
                        op: "collide".into(),
                        path,
                        error,
                    },
                );
                ok
            }
            Action::DropNs => {
                let target = step.drop_ns.clone().unwrap();
                self.namespaces.remove(&target);
                r.rec(Some(n), EventKind::NamespaceDropped { ns: target });
                true
            }
            Action::ShmemMark => {
                let mark = step.shmem_mark.clone().unwrap();
                match shmem_kib() {
                    Ok(kib) => {
                        self.shmem_marks.insert(mark.clone(), kib);
                        r.rec(
                            Some(n),
                            EventKind::Shmem {
                                mark,
                                shmem_kib: kib,
                                freed_kib: None,
                            },
                        );
                        true
                    }
                    Err(e) => {
                        r.rec(
                            Some(n),
                            EventKind::Broken {
                                message: format!("reading /proc/meminfo: {e}"),
                            },
                        );
                        false
                    }
                }
            }
            Action::ShmemFreed => {
                let want = step.shmem_freed.clone().unwrap();
                let base = self.shmem_marks[&want.since];
                // The kernel frees a dead namespace's segments from a work
                // queue, a little after the last process is gone: poll.
                loop {
                    let now = shmem_kib().unwrap_or(base);
                    let freed = base as i64 - now as i64;
                    if freed >= want.at_least_kib as i64 {
                        r.rec(
                            Some(n),
                            EventKind::Shmem {
                                mark: want.since,
                                shmem_kib: now,
                                freed_kib: Some(freed),
                            },
                        );
                        return true;
                    }
                    if Instant::now() >= deadline || procs::interrupted() {
                        r.rec(
                            Some(n),
                            EventKind::Timeout {
                                proc: "kernel".into(),
                                waiting_for: format!(
                                    "Shmem to fall {} KiB below mark {:?} (it fell {freed} KiB)",
                                    want.at_least_kib, want.since
                                ),
                                limit_ms: limit.as_millis() as u64,
                                stdout: Text::default(),
                                stderr: Text::default(),
                            },
                        );
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Action::Segments => {
                self.snapshot(n, step, ns, r);
                true
            }
            Action::CreateFile | Action::RemoveFile | Action::RecreateFile | Action::LinkFile => {
                let (op, path, result) = file_op(&dir, step);
                let ok = result.is_ok();
                r.rec(
                    Some(n),
                    EventKind::File {
                        op,
                        path,
                        error: result.err(),
                    },
                );
                ok
            }
            Action::Sysctl => {
                let s = step.sysctl.as_ref().unwrap();
                let path = Path::new("/proc/sys").join(s.name.replace('.', "/"));
                let result = if self.isolation == Isolation::Shared {
                    Err("refused: no namespace of the scenario's own, the sysctl would change the shared one".into())
                } else {
                    std::fs::write(&path, format!("{}\n", s.value))
                        .and_then(|()| std::fs::read_to_string(&path))
                        .map_err(|e| format!("{}: {e}", path.display()))
                        .and_then(|back| {
                            if back.trim() == s.value.trim() {
                                Ok(())
                            } else {
                                Err(format!("wrote {:?}, reads back {:?}", s.value, back.trim()))
                            }
                        })
                };
                let ok = result.is_ok();
                r.rec(
                    Some(n),
                    EventKind::Sysctl {
                        ns: ns.into(),
                        name: s.name.clone(),
                        value: s.value.clone(),
                        error: result.err(),
                    },
                );
                ok
            }
        }
    }

    /// Wait for a process's exit and record it (or the timeout).
    #[allow(clippy::too_many_arguments)]
    fn finish(
        docker_exec: bool,
        n: usize,
        name: &str,
        proc: &mut Proc,
        deadline: Instant,
        limit: Duration,
        what: &str,
        r: &mut Recorder,
    ) -> bool {
        match proc.wait_exit(deadline) {
            WaitOutcome::Done((ending, stray)) => {
                let ending = if docker_exec { from_docker_exec(ending) } else { ending };
                let (stdout, stderr) = proc.output();
                r.rec(
                    Some(n),
                    EventKind::Exit {
                        proc: name.into(),
                        ending,
                        stdout: Text(stdout),
                        stderr: Text(stderr),
                        stray_processes: stray,
                    },
                );
                true
            }
            WaitOutcome::TimedOut => {
                proc.kill_group();
                let (stdout, stderr) = proc.output();
                r.rec(
                    Some(n),
                    EventKind::Timeout {
                        proc: name.into(),
                        waiting_for: what.into(),
                        limit_ms: limit.as_millis() as u64,
                        stdout: Text(stdout),
                        stderr: Text(stderr),
                    },
                );
                false
            }
            WaitOutcome::Interrupted => {
                r.rec(
                    Some(n),
                    EventKind::Aborted {
                        reason: "interrupted (Ctrl-C)".into(),
                    },
                );
                false
            }
        }
    }

    fn snapshot(&mut self, n: usize, step: &Step, ns: &str, r: &mut Recorder) {
        // The table first: reading contents attaches, which changes lpid and
        // atime (and, with shm_rmid_forced, detaching could destroy).
        let table = match SegTable::read() {
            Ok(t) => t,
            Err(e) => {
                r.rec(
                    Some(n),
                    EventKind::Broken {
                        message: format!("cannot read the segment table: {e}"),
                    },
                );
                return;
            }
        };
        let mut keys = BTreeMap::new();
        let mut contents = BTreeMap::new();
        for exp in step.segments.as_deref().unwrap_or_default() {
            let resolved = match parse_key_spec(&exp.key).expect("validated") {
                KeySpec::Ftok { file, proj_id } => Key::ftok(&self.dir.path().join(&file), proj_id)
                    .map(|k| k.raw())
                    .map_err(|e| e.to_string()),
                KeySpec::Raw(v) => Ok(v),
                KeySpec::Private => Ok(0),
            };
            if let (Ok(key), true) = (&resolved, exp.content.is_some() || exp.prefix.is_some()) {
                for row in table.by_key(Key::from_raw(*key)) {
                    let bytes = Segment::from_id(row.shmid)
                        .attach_unseen()
                        .map(|a| {
                            let mut v = vec![0; a.len().min(CONTENT_CAP)];
                            a.read_at(0, &mut v).map(|()| v).unwrap_or_default()
                        })
                        .map(|mut v| {
                            // Keep logs readable: trailing NULs are implied up to the size.
                            let end = v.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                            v.truncate(end);
                            v
                        })
                        .unwrap_or_default();
                    contents.insert(row.shmid, Text(bytes));
                }
            }
            if let (Ok(key), Some(name)) = (&resolved, &exp.save_id) {
                if let Some(row) = table.find_key(Key::from_raw(*key)) {
                    self.saved_ids.insert(name.clone(), row.shmid);
                }
            }
            keys.insert(exp.key.clone(), resolved);
        }
        // In a shared namespace, segments that were there before the scenario are not its own.
        let (rows, foreign): (Vec<_>, Vec<_>) = table.rows.iter().partition(|row| !self.baseline.contains(&row.shmid));
        let rows = rows.into_iter().map(SegRow::from_row).collect();
        r.rec(
            Some(n),
            EventKind::Snapshot {
                ns: ns.into(),
                rows,
                foreign_ignored: foreign.len(),
                keys,
                contents,
            },
        );
    }

    fn tear_down(&mut self, r: &mut Recorder) {
        for (name, proc) in self.procs.iter_mut() {
            if !proc.has_exited() {
                r.rec(None, EventKind::Reaped { proc: name.clone() });
            }
            proc.kill_group();
        }
        self.procs.clear();
        if let Some((mut init, _)) = self.pid_init.take() {
            init.kill_group();
        }
        self.containers.clear(); // each Container's Drop runs `docker rm -f`
        if self.isolation == Isolation::Shared || self.host_lock.is_some() {
            // No namespace dies with us: remove what the scenario made.
            if let Ok(table) = SegTable::read() {
                for row in table.rows.iter().filter(|row| !self.baseline.contains(&row.shmid)) {
                    let _ = Segment::from_id(row.shmid).remove();
                }
            }
        }
    }
}

/// Put this thread's future children in a new PID namespace whose init is
/// `shmconf pid-init` (a reaper). Where PID namespaces cannot be made, process
/// groups alone contain the scenario's processes.
fn start_pid_init(opts: &Options) -> Result<Option<(Proc, PidNamespace)>, String> {
    let Some(init) = &opts.pid_init else { return Ok(None) };
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

/// Replace `{NAME}` in an argument by a saved segment id.
fn substitute(arg: &str, saved: &BTreeMap<String, i32>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        let name = &rest[open + 1..open + close];
        let id = saved
            .get(name)
            .ok_or_else(|| format!("argument {arg:?} uses {{{name}}}, but no earlier segments step saved that id"))?;
        out.push_str(&rest[..open]);
        out.push_str(&id.to_string());
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Every namespace of a scenario with its Docker mode (default private),
/// donors before their joiners.
fn docker_modes(scenario: &Scenario) -> Result<Vec<(String, IpcMode)>, String> {
    let mut all: Vec<(String, IpcMode)> = vec![(MAIN_NS.into(), IpcMode::Private)];
    for (name, decl) in &scenario.namespaces {
        let mode = decl.docker.as_deref().map_or(Ok(IpcMode::Private), IpcMode::parse)?;
        all.push((name.clone(), mode));
    }
    // Only namespaces some step uses, or that are joined or expected to fail.
    let main_joined = all.iter().any(|(_, m)| *m == IpcMode::Container(MAIN_NS.into()));
    let main_used = scenario
        .steps
        .iter()
        .any(|s| scenario.resolve_ns(s.get_ref().ns()) == MAIN_NS);
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

fn container_name(cfg: &DockerConfig, r: &Recorder, ns: &str) -> String {
    let scenario: String = r
        .log
        .scenario
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("shmconf-{}-{}-{}-{}", cfg.run_id, r.log.implementation, scenario, ns)
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

/// Create files until two have inodes equal modulo 65536 (same device, so
/// the same ftok key for one proj_id); name them `a` and `b`, remove the rest.
enum Collide {
    Io(String),
    /// The filesystem gave no colliding pair in time: the scenario cannot run here.
    NotFound(String),
}

fn collide_files(dir: &Path, a: &str, b: &str, deadline: Instant) -> Result<String, Collide> {
    use std::os::unix::fs::MetadataExt;
    let io = |e: std::io::Error| Collide::Io(e.to_string());
    let scratch = dir.join(".collide");
    std::fs::create_dir(&scratch).map_err(io)?;
    let mut seen: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let mut found = None;
    for i in 0..400_000u32 {
        if Instant::now() >= deadline || procs::interrupted() {
            break;
        }
        let p = scratch.join(i.to_string());
        std::fs::write(&p, b"").map_err(io)?;
        let ino = std::fs::metadata(&p).map_err(io)?.ino();
        if let Some(first) = seen.insert(ino & 0xffff, p.clone()) {
            found = Some((first, p));
            break;
        }
    }
    let result = match found {
        Some((first, second)) => {
            let (ia, ib) = (
                std::fs::metadata(&first).map(|m| m.ino()).unwrap_or(0),
                std::fs::metadata(&second).map(|m| m.ino()).unwrap_or(0),
            );
            std::fs::rename(&first, dir.join(a))
                .and_then(|()| std::fs::rename(&second, dir.join(b)))
                .map(|()| format!("{a} (inode {ia}) ~ {b} (inode {ib}) after {} files", seen.len() + 1))
                .map_err(io)
        }
        None => Err(Collide::NotFound(format!(
            "no two of {} files got inodes equal modulo 65536 within the step's time limit on this filesystem",
            seen.len()
        ))),
    };
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// `Shmem:` of /proc/meminfo in KiB: memory of shared segments and tmpfs.
fn shmem_kib() -> std::io::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("Shmem:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| std::io::Error::other("no Shmem line"))
}

fn file_op(dir: &Path, step: &Step) -> (String, String, Result<(), String>) {
    let err = |e: std::io::Error| e.to_string();
    if let Some(f) = &step.create_file {
        return (
            "create".into(),
            f.clone(),
            std::fs::write(dir.join(f), b"").map_err(err),
        );
    }
    if let Some(f) = &step.remove_file {
        return (
            "remove".into(),
            f.clone(),
            std::fs::remove_file(dir.join(f)).map_err(err),
        );
    }
    if let Some(f) = &step.recreate_file {
        // Create the new file while the old one exists, so its inode must
        // differ, then rename it into place.
        let tmp = dir.join(format!("{f}.shmconf-new"));
        let result = std::fs::write(&tmp, b"")
            .and_then(|()| std::fs::rename(&tmp, dir.join(f)))
            .map_err(err);
        return ("recreate".into(), f.clone(), result);
    }
    if let Some(l) = &step.link_file {
        let result = std::fs::hard_link(dir.join(&l.from), dir.join(&l.to)).map_err(err);
        return ("link".into(), format!("{} -> {}", l.to, l.from), result);
    }
    unreachable!("validated: a file action")
}
