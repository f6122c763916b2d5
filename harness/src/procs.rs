//! Child processes under supervision: each in its own process group, output
//! captured by reader threads, waits bounded by deadlines, and every group
//! killed when its handle drops or the user presses Ctrl-C.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::events::Ending;

/// Set by Ctrl-C: running scenarios stop at their next wait.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Process groups alive right now, for the Ctrl-C handler.
static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Kill every live group and mark the run interrupted (Ctrl-C, SIGTERM).
pub fn interrupt_all() {
    INTERRUPTED.store(true, Ordering::SeqCst);
    let groups = LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

#[derive(Default)]
struct State {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    stdout_eof: bool,
    stderr_eof: bool,
    status: Option<ExitStatus>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// A running (or finished) child and its process group.
pub struct Proc {
    pub name: String,
    pub pid: i32,
    stdin: Option<ChildStdin>,
    shared: Arc<Shared>,
    group_live: bool,
}

/// What a wait saw.
pub enum WaitOutcome<T> {
    Done(T),
    TimedOut,
    Interrupted,
}

impl Proc {
    /// Spawn `cmd` as the leader of a new process group with piped stdio,
    /// inside `pid_ns` when given.
    pub fn spawn(name: &str, mut cmd: Command, pid_ns: Option<&mut PidNamespace>) -> std::io::Result<Proc> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // Hold the registry lock across spawn so a Ctrl-C cannot miss the group.
        let mut live = LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner());
        if interrupted() {
            return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "interrupted"));
        }
        let mut child = match pid_ns {
            // The thread may not start threads while its children's PID
            // namespace differs from its own: switch for the spawn only.
            Some(ns) => {
                ns.enter_for_children()?;
                let spawned = cmd.spawn();
                let left = ns.leave(spawned.as_ref().ok().map(|c| c.id()));
                let child = spawned?;
                if let Err(e) = left {
                    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                    return Err(e);
                }
                child
            }
            None => cmd.spawn()?,
        };
        let pid = child.id() as i32;
        live.insert(pid);
        drop(live);

        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let pump = |mut src: Box<dyn Read + Send>, is_out: bool| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    let n = src.read(&mut buf).unwrap_or(0);
                    let mut guard = shared.state.lock().unwrap();
                    let st = &mut *guard;
                    let (data, eof) = if is_out {
                        (&mut st.stdout, &mut st.stdout_eof)
                    } else {
                        (&mut st.stderr, &mut st.stderr_eof)
                    };
                    if n == 0 {
                        *eof = true;
                    } else {
                        data.extend_from_slice(&buf[..n]);
                    }
                    drop(guard);
                    shared.changed.notify_all();
                    if n == 0 {
                        break;
                    }
                }
            });
        };
        pump(Box::new(child.stdout.take().expect("piped stdout")), true);
        pump(Box::new(child.stderr.take().expect("piped stderr")), false);
        let stdin = child.stdin.take();
        {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                let status = child.wait();
                let mut st = shared.state.lock().unwrap();
                st.status = Some(status.unwrap_or_else(|_| ExitStatus::from_raw(0x7f00)));
                drop(st);
                shared.changed.notify_all();
            });
        }
        Ok(Proc {
            name: name.to_string(),
            pid,
            stdin,
            shared,
            group_live: true,
        })
    }

    /// Write to stdin, optionally closing it. A write to a process that has
    /// closed its stdin or exited fails with EPIPE.
    pub fn write_stdin(&mut self, data: &[u8], close: bool) -> std::io::Result<()> {
        let result = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(data).and_then(|()| stdin.flush()),
            None if data.is_empty() => Ok(()),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "stdin already closed",
            )),
        };
        if close {
            self.stdin = None;
        }
        result
    }

    /// Wait until `pred` holds on the state, the deadline passes, or Ctrl-C.
    fn wait_until<T>(&self, deadline: Instant, pred: impl FnMut(&State) -> Option<T>) -> WaitOutcome<T> {
        self.wait_until_inner(deadline, true, pred)
    }

    fn wait_until_inner<T>(
        &self,
        deadline: Instant,
        interruptible: bool,
        mut pred: impl FnMut(&State) -> Option<T>,
    ) -> WaitOutcome<T> {
        let mut st = self.shared.state.lock().unwrap();
        loop {
            if let Some(v) = pred(&st) {
                return WaitOutcome::Done(v);
            }
            if interruptible && interrupted() {
                return WaitOutcome::Interrupted;
            }
            let now = Instant::now();
            if now >= deadline {
                return WaitOutcome::TimedOut;
            }
            // Wake at least every 50 ms to notice Ctrl-C.
            let slice = (deadline - now).min(Duration::from_millis(50));
            st = self.shared.changed.wait_timeout(st, slice).unwrap().0;
        }
    }

    /// Wait until stdout contains `needle`.
    pub fn wait_stdout(&self, needle: &[u8], deadline: Instant) -> WaitOutcome<()> {
        self.wait_until(deadline, |st| contains(&st.stdout, needle).then_some(()))
    }

    /// Wait for the leader to exit; then report whether other members of its
    /// group were still running (they are killed), and collect all output.
    pub fn wait_exit(&mut self, deadline: Instant) -> WaitOutcome<(Ending, bool)> {
        let status = match self.wait_until(deadline, |st| st.status) {
            WaitOutcome::Done(s) => s,
            WaitOutcome::TimedOut => return WaitOutcome::TimedOut,
            WaitOutcome::Interrupted => return WaitOutcome::Interrupted,
        };
        // Signal 0 to the group: does anything of it outlive the leader?
        let stray = killpg(Pid::from_raw(self.pid), None).is_ok();
        self.kill_group();
        // Pipes close once every holder is gone; bounded in case one escaped the group.
        let eof_deadline = Instant::now() + Duration::from_millis(500);
        let _ = self.wait_until(eof_deadline, |st| (st.stdout_eof && st.stderr_eof).then_some(()));
        let ending = match (status.code(), status.signal()) {
            (Some(code), _) => Ending::Exited { code },
            (_, Some(sig)) => Ending::Signaled {
                signal: Signal::try_from(sig).map_or(format!("signal {sig}"), |s| s.as_str().to_string()),
            },
            _ => Ending::Exited { code: -1 },
        };
        WaitOutcome::Done((ending, stray))
    }

    pub fn has_exited(&self) -> bool {
        self.shared.state.lock().unwrap().status.is_some()
    }

    pub fn output(&self) -> (Vec<u8>, Vec<u8>) {
        let st = self.shared.state.lock().unwrap();
        (st.stdout.clone(), st.stderr.clone())
    }

    pub fn signal(&self, sig: Signal) -> nix::Result<()> {
        nix::sys::signal::kill(Pid::from_raw(self.pid), sig)
    }

    /// SIGKILL the whole group (idempotent) and wait briefly for the leader.
    pub fn kill_group(&mut self) {
        if !self.group_live {
            return;
        }
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        self.stdin = None;
        LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.pid);
        self.group_live = false;
        // SIGKILL cannot be ignored; on a loaded machine dying can still take
        // a moment (a PID namespace's init first reaps every member).
        let _ = self.wait_until_inner(Instant::now() + Duration::from_secs(10), false, |st| {
            st.status.map(|_| ())
        });
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// A scenario's PID namespace, entered only around each spawn.
pub struct PidNamespace {
    /// The namespace (none until its init has been spawned).
    target: Option<std::fs::File>,
    /// This thread's own PID namespace, to return to.
    home: std::fs::File,
}

impl PidNamespace {
    /// Prepare a new PID namespace; the first process spawned in it is its init.
    pub fn new() -> std::io::Result<PidNamespace> {
        let home = std::fs::File::open("/proc/thread-self/ns/pid")?;
        // Returning home after each spawn must be allowed, or the thread would
        // be stuck with children in the new namespace. As root of a user
        // namespace of our own it is not (the home namespace belongs to the
        // initial user namespace): then no PID namespace at all.
        nix::sched::setns(&home, nix::sched::CloneFlags::CLONE_NEWPID)?;
        Ok(PidNamespace { target: None, home })
    }

    fn enter_for_children(&mut self) -> std::io::Result<()> {
        use nix::sched::{setns, unshare, CloneFlags};
        match &self.target {
            Some(ns) => setns(ns, CloneFlags::CLONE_NEWPID)?,
            None => unshare(CloneFlags::CLONE_NEWPID)?,
        }
        Ok(())
    }

    fn leave(&mut self, spawned: Option<u32>) -> std::io::Result<()> {
        use nix::sched::{setns, CloneFlags};
        if self.target.is_none() {
            if let Some(pid) = spawned {
                self.target = Some(std::fs::File::open(format!("/proc/{pid}/ns/pid"))?);
            }
        }
        setns(&self.home, CloneFlags::CLONE_NEWPID)?;
        Ok(())
    }
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Body of `shmconf pid-init`: as PID 1 of a scenario's PID namespace, reap
/// every orphan until the harness kills us (which kills the namespace).
pub fn pid_init() -> ! {
    loop {
        match nix::sys::wait::wait() {
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}
