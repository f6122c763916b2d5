//! Child processes under supervision. Each child leads its own process
//! group, dies with the scenario thread that spawned it (parent-death
//! signal, so even a SIGKILLed harness leaves no child running), has its
//! output captured in bounded buffers, and is waited for with deadlines.
//!
//! A finished leader is observed with `waitid(WNOWAIT)` and stays a zombie
//! until [`Proc::kill_group`] has signalled its group and reaps it: its pid,
//! and so its process-group id, cannot be reused while we may still signal
//! them (a pid that a waiter thread had already reaped could name somebody
//! else's process by the time we kill it).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::events::{Ending, Text};

/// Bytes of each output stream kept for judging; the rest is only counted.
/// More than any expectation may hold (`scenario::MAX_EXPECT_BYTES`), so an
/// exact comparison is still exact when output is cut.
pub const CAPTURE_KEEP: usize = 2 << 20;

/// The signal that stopped the run (SIGINT, SIGTERM, SIGHUP), or 0.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// Process groups alive right now, for the signal handler.
static LIVE_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Held (shared) by every spawn from before its `interrupted()` check until
/// its group is in `LIVE_GROUPS`, and (exclusive) by `interrupt_all` before
/// it reads them: a signal cannot miss a group, and spawns on several
/// threads do not wait for each other's fork.
static SPAWNING: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Mark the run interrupted by `signal` and kill every live group: running
/// scenarios then stop at their next wait and clean up as at a normal end.
pub fn interrupt_all(signal: i32) {
    let _ = INTERRUPTED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    let _spawns_done = SPAWNING.write().unwrap_or_else(|p| p.into_inner());
    let groups = LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst) != 0
}

/// The signal that interrupted the run, if any.
pub fn interrupting_signal() -> Option<Signal> {
    Signal::try_from(INTERRUPTED.load(Ordering::SeqCst)).ok()
}

/// What a run was interrupted by, for messages.
pub fn interruption() -> String {
    interrupting_signal().map_or("interrupted".into(), |s| format!("interrupted by {}", s.as_str()))
}

/// Install the handler for SIGINT, SIGTERM and SIGHUP: each cleans up like
/// Ctrl-C always did (processes killed, namespaces and temp dirs gone).
pub fn handle_termination_signals() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            interrupt_all(sig);
        }
    })?;
    Ok(())
}

/// One output stream: the first [`CAPTURE_KEEP`] bytes and the total count.
#[derive(Default)]
struct Capture {
    kept: Vec<u8>,
    total: u64,
    eof: bool,
}

impl Capture {
    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        let room = CAPTURE_KEEP.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
    }

    fn text(&self) -> Text {
        Text::captured(self.kept.clone(), self.total)
    }
}

#[derive(Default)]
struct State {
    stdout: Capture,
    stderr: Capture,
    ending: Option<Ending>,
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
    /// The group may still have members and the leader is not reaped yet.
    group_live: bool,
    /// Started under this thread's ptrace (`spawn_traced`): its end is
    /// recorded by the tracer, and reaping it takes the tracer's waits.
    traced: bool,
    /// The init of its PID namespace, where what it leaves behind goes.
    reaper: Option<i32>,
}

/// What a wait saw.
pub enum WaitOutcome<T> {
    Done(T),
    TimedOut,
    Interrupted,
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proc {
    /// Spawn `cmd` as the leader of a new process group with piped stdio,
    /// dying with the calling thread, inside `pid_ns` when given.
    pub fn spawn(name: &str, cmd: Command, pid_ns: Option<&mut PidNamespace>) -> std::io::Result<Proc> {
        Self::spawn_inner(name, cmd, pid_ns, false)
    }

    /// As `spawn`, but traced by the calling thread, stopping before each
    /// system call that matters for shared memory (see `engine::trace`).
    /// Only the calling thread may then step it, see its end, or reap it.
    pub fn spawn_traced(name: &str, mut cmd: Command, pid_ns: Option<&mut PidNamespace>) -> std::io::Result<Proc> {
        shmconf::sysv::process::trace_at_ipc_calls(&mut cmd);
        Self::spawn_inner(name, cmd, pid_ns, true)
    }

    fn spawn_inner(
        name: &str,
        mut cmd: Command,
        pid_ns: Option<&mut PidNamespace>,
        traced: bool,
    ) -> std::io::Result<Proc> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // Inside a scenario's PID namespace whose init is already running,
        // the init's own parent-death signal covers every process: when the
        // init dies, the kernel kills the whole namespace.
        let init_covers_it = pid_ns.as_ref().is_some_and(|ns| ns.init.is_some());
        if traced || !init_covers_it {
            shmconf::sysv::process::die_with_parent(&mut cmd);
        }
        // Held across the spawn so a signal cannot miss the group.
        let spawning = SPAWNING.read().unwrap_or_else(|p| p.into_inner());
        if interrupted() {
            return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, interruption()));
        }
        // No unseen attachment of another thread may be copied into the child.
        let forking = shmconf::sysv::fork_guard();
        let reaper = pid_ns.as_ref().and_then(|ns| ns.init);
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
                    let _ = waitpid(Pid::from_raw(child.id() as i32), None);
                    return Err(e);
                }
                child
            }
            None => cmd.spawn()?,
        };
        drop(forking);
        let pid = child.id() as i32;
        LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner()).insert(pid);
        drop(spawning);

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
                    let mut st = lock(&shared);
                    let cap = if is_out { &mut st.stdout } else { &mut st.stderr };
                    if n == 0 {
                        cap.eof = true;
                    } else {
                        cap.push(&buf[..n]);
                    }
                    drop(st);
                    shared.changed.notify_all();
                    if n == 0 {
                        break;
                    }
                }
            });
        };
        if let Some(out) = child.stdout.take() {
            pump(Box::new(out), true);
        }
        if let Some(err) = child.stderr.take() {
            pump(Box::new(err), false);
        }
        let stdin = child.stdin.take();
        // `child` is dropped without waiting: the leader is ours to reap below.
        drop(child);
        // A traced leader's stops would wake a waitid(WEXITED) too (ptrace
        // stops are reported regardless of flags): its tracer sees its end.
        if !traced {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                // Observe the exit, leave the zombie (see the module docs).
                let ending = loop {
                    match waitid(Id::Pid(Pid::from_raw(pid)), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                        Ok(WaitStatus::Exited(_, code)) => break Ending::Exited { code },
                        Ok(WaitStatus::Signaled(_, sig, _)) => {
                            break Ending::Signaled {
                                signal: sig.as_str().into(),
                            }
                        }
                        Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                        Err(_) => break Ending::Exited { code: -1 },
                    }
                };
                lock(&shared).ending = Some(ending);
                shared.changed.notify_all();
            });
        }
        Ok(Proc {
            name: name.to_string(),
            pid,
            stdin,
            shared,
            group_live: true,
            traced,
            reaper,
        })
    }

    /// A traced leader's end, as its tracer saw it.
    pub fn record_ending(&self, ending: Ending) {
        lock(&self.shared).ending.get_or_insert(ending);
        self.shared.changed.notify_all();
    }

    /// Bytes written to its stdin that it has not read yet (FIONREAD on the
    /// pipe), or None once stdin is closed: whether a read would block.
    pub fn stdin_unread(&self) -> Option<usize> {
        let fd = std::os::fd::AsRawFd::as_raw_fd(self.stdin.as_ref()?);
        shmconf::sysv::process::pipe_unread(fd)
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

    fn wait_until<T>(
        &self,
        deadline: Instant,
        interruptible: bool,
        mut pred: impl FnMut(&State) -> Option<T>,
    ) -> WaitOutcome<T> {
        let mut st = lock(&self.shared);
        loop {
            // First: a signal to the harness kills every group, so an end
            // seen after it is the harness's doing, not the program's.
            if interruptible && interrupted() {
                return WaitOutcome::Interrupted;
            }
            if let Some(v) = pred(&st) {
                return WaitOutcome::Done(v);
            }
            let now = Instant::now();
            if now >= deadline {
                return WaitOutcome::TimedOut;
            }
            // Wake at least every 50 ms to notice a signal.
            let slice = (deadline - now).min(Duration::from_millis(50));
            st = self
                .shared
                .changed
                .wait_timeout(st, slice)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Wait until stdout contains `needle` (within what is kept). The
    /// caller polls in short slices and sees the process's end itself.
    pub fn wait_stdout(&self, needle: &[u8], deadline: Instant) -> WaitOutcome<()> {
        self.wait_until(deadline, true, |st| contains(&st.stdout.kept, needle).then_some(()))
    }

    /// Wait for the leader to exit; then report whether other members of its
    /// group were still running (they are killed), and collect all output.
    pub fn wait_exit(&mut self, deadline: Instant) -> WaitOutcome<(Ending, bool)> {
        let ending = match self.wait_until(deadline, true, |st| st.ending.clone()) {
            WaitOutcome::Done(e) => e,
            WaitOutcome::TimedOut => return WaitOutcome::TimedOut,
            WaitOutcome::Interrupted => return WaitOutcome::Interrupted,
        };
        // Signal 0 to the group: does anything of it outlive the leader?
        // (The leader is an unreaped zombie, so the group id is still ours.)
        let stray = killpg(Pid::from_raw(self.pid), None).is_ok() && self.group_has_live_members();
        self.kill_group();
        // Pipes close once every holder is gone; bounded in case one escaped the group.
        let eof_deadline = Instant::now() + Duration::from_millis(500);
        let _ = self.wait_until(eof_deadline, false, |st| (st.stdout.eof && st.stderr.eof).then_some(()));
        WaitOutcome::Done((ending, stray))
    }

    /// Members of our group other than the zombie leader (killpg succeeds on
    /// a group whose only member is a zombie). In a PID namespace of the
    /// scenario's, what the dead leader left is among the descendants of the
    /// namespace's init (orphans are reparented to it): a few processes to
    /// look at instead of every process of the machine.
    fn group_has_live_members(&self) -> bool {
        if let Some(init) = self.reaper {
            if let Some(found) = self.group_member_below(init) {
                return found;
            }
        }
        self.group_member_anywhere()
    }

    /// A live member of our group among `root`'s descendants; None if the
    /// kernel does not list children (/proc/PID/task/TID/children).
    fn group_member_below(&self, root: i32) -> Option<bool> {
        let mut queue = vec![root];
        let mut seen = 0usize;
        while let Some(pid) = queue.pop() {
            seen += 1;
            if seen > 100_000 {
                return None;
            }
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok();
            let Some(tasks) = tasks else { continue };
            for task in tasks.filter_map(Result::ok) {
                let children = std::fs::read_to_string(task.path().join("children")).ok()?;
                for child in children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
                    if child != self.pid && self.is_live_member(child) {
                        return Some(true);
                    }
                    queue.push(child);
                }
            }
        }
        Some(false)
    }

    /// Is `pid` a live (not zombie) member of our group?
    fn is_live_member(&self, pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                // Fields after the ")" of the command: state ppid pgrp ...
                let rest = s.rsplit_once(')')?.1;
                let mut f = rest.split_whitespace();
                let state = f.next()?;
                let pgrp: i32 = f.nth(1)?.parse().ok()?;
                Some(pgrp == self.pid && state != "Z")
            })
            .unwrap_or(false)
    }

    /// Every process of the machine, looked at (no PID namespace of ours).
    fn group_member_anywhere(&self) -> bool {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return true;
        };
        entries.filter_map(Result::ok).any(|e| {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                return false;
            };
            pid != self.pid && self.is_live_member(pid)
        })
    }

    pub fn has_exited(&self) -> bool {
        lock(&self.shared).ending.is_some()
    }

    pub fn ending(&self) -> Option<Ending> {
        lock(&self.shared).ending.clone()
    }

    /// Captured output so far (bounded, with the total byte counts).
    pub fn output(&self) -> (Text, Text) {
        let st = lock(&self.shared);
        (st.stdout.text(), st.stderr.text())
    }

    /// Signal the leader. Safe against pid reuse: the leader is not reaped
    /// before `kill_group`, which ends the handle's use of the pid.
    pub fn signal(&self, sig: Signal) -> nix::Result<()> {
        if !self.group_live {
            return Err(nix::errno::Errno::ESRCH);
        }
        nix::sys::signal::kill(Pid::from_raw(self.pid), sig)
    }

    /// Is the leader blocked reading its stdin (fd 0)? `/proc/PID/syscall`
    /// names the system call a blocked task sleeps in: a kernel-side barrier
    /// for "attached and waiting for input" that needs no cooperation from
    /// the program (such as flushing a prompt).
    pub fn is_reading_stdin(&self) -> bool {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{}/syscall", self.pid)) else {
            return false;
        };
        let mut f = text.split_whitespace();
        let (Some(nr), Some(fd)) = (f.next(), f.next()) else {
            return false;
        };
        let reads = [libc::SYS_read, libc::SYS_readv, libc::SYS_pread64];
        nr.parse::<i64>().is_ok_and(|n| reads.contains(&n)) && fd == "0x0"
    }

    /// SIGKILL the whole group (idempotent), wait for the leader and reap it.
    pub fn kill_group(&mut self) {
        if !self.group_live {
            return;
        }
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        self.stdin = None;
        if self.traced {
            self.reap_traced();
            return;
        }
        // SIGKILL cannot be ignored; on a loaded machine dying can still take
        // a moment (a PID namespace's init first reaps every member).
        let _ = self.wait_until(Instant::now() + Duration::from_secs(10), false, |st| st.ending.clone());
        let _ = waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG));
        LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.pid);
        self.group_live = false;
    }
}

impl Proc {
    /// After SIGKILL: let a traced leader through its remaining stops until
    /// it is gone, and reap it (only its tracer, this thread, can).
    fn reap_traced(&mut self) {
        let pid = Pid::from_raw(self.pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match waitpid(pid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    self.record_ending(Ending::Exited { code });
                    break;
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    self.record_ending(Ending::Signaled {
                        signal: sig.as_str().into(),
                    });
                    break;
                }
                Ok(WaitStatus::StillAlive) => {
                    if Instant::now() >= deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                Ok(_) => {
                    let _ = nix::sys::ptrace::cont(pid, None);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.pid);
        self.group_live = false;
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
    /// Its init (the first process spawned in it), as this thread sees it:
    /// every orphan of the namespace becomes its child.
    init: Option<i32>,
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
        Ok(PidNamespace {
            target: None,
            home,
            init: None,
        })
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
                self.init = Some(pid as i32);
            }
        }
        setns(&self.home, CloneFlags::CLONE_NEWPID)?;
        Ok(())
    }
}

/// Children of this process that it did not start as a [`Proc`] and that
/// are in another process group than its own: orphans of programs under
/// test that came back to it as subreaper (every program leads a group of
/// its own, which its descendants keep unless they leave it; a program
/// started with a plain `Command` stays in the harness's group). As (pid,
/// session id, process group id).
pub fn orphan_children() -> Vec<(i32, i32, i32)> {
    // No spawn between reading the children and the live groups.
    let _no_spawn = SPAWNING.write().unwrap_or_else(|p| p.into_inner());
    let own_group = nix::unistd::getpgrp().as_raw();
    let leaders = LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut found = vec![];
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return found;
    };
    for task in tasks.filter_map(Result::ok) {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for pid in children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
            if leaders.contains(&pid) {
                continue;
            }
            let Some((sid, pgid)) = session_and_group(pid) else {
                continue;
            };
            if pgid != own_group {
                found.push((pid, sid, pgid));
            }
        }
    }
    found
}

/// Session and process group of `pid` (/proc/PID/stat).
fn session_and_group(pid: i32) -> Option<(i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" of the command: state ppid pgrp session ...
    let mut f = stat.rsplit_once(')')?.1.split_whitespace();
    let pgid = f.nth(2)?.parse().ok()?;
    let sid = f.next()?.parse().ok()?;
    Some((sid, pgid))
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Body of `shmconf pid-init`: as PID 1 of a scenario's PID namespace, reap
/// every orphan until the harness kills us (which kills the namespace). It
/// dies with the harness too (parent-death signal, set at its spawn).
pub fn pid_init() -> ! {
    loop {
        match nix::sys::wait::wait() {
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Body of `shmconf stdin-relay -- ARGV`: run ARGV with a pipe of ours as its
/// stdin and copy our stdin into it, draining our stdin to its end even after
/// ARGV stops reading. Podman 4.3's `exec -i` loses a process's output when
/// the process exits with input still unread (measured: 11 of 30 runs of a
/// writer that fails before reading lost its stderr); behind the relay
/// nothing is ever left unread. Output goes straight to our stdout and
/// stderr (inherited, not copied). Exit: ARGV's code, or 128+N for a death
/// by signal N, as `exec` reports it.
pub fn stdin_relay(argv: &[std::ffi::OsString]) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("shmconf stdin-relay: no command");
        return 127;
    };
    let mut child = match std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shmconf stdin-relay: cannot run {}: {e}", program.to_string_lossy());
            return if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
        }
    };
    let mut to_child = child.stdin.take();
    let copier = std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    // After the child stops reading (EPIPE), keep draining.
                    if let Some(pipe) = to_child.as_mut() {
                        if pipe.write_all(&buf[..n]).is_err() {
                            to_child = None;
                        }
                    }
                }
            }
        }
        drop(to_child); // EOF for the child
    });
    let status = child.wait();
    // Whatever is still in flight to us is drained before we exit, unless
    // stdin stays open (a background process's): then exit without it.
    let deadline = Instant::now() + Duration::from_millis(200);
    while !copier.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(e) => {
            eprintln!("shmconf stdin-relay: {e}");
            125
        }
    }
}
