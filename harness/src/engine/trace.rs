//! Running an unmodified program one system call at a time.
//!
//! A traced role (`shmconf::sysv::spawn::Launch::trace_at_ipc_calls`) stops before
//! each call that matters for shared memory (shmget, shmat, shmdt, shmctl,
//! read of stdin, write of stdout/stderr, exit): a *point*. Between two
//! points it runs freely; at a point it waits until the scheduler lets it
//! go. With every other role held at its point, what runs between two
//! points is exactly one role's step, so an order of steps is an
//! interleaving at system-call granularity, replayable.
//!
//! All ptrace requests come from the thread that spawned the tracee (the
//! scenario's thread): the kernel accepts them only from the tracer.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use shmconf::sysv::process::traced_calls as nr;

use crate::events::{conflict, Access, Choice, Ending, TracedCall};

/// What a step of `run` that executed `call` touched (see [`Access`]):
/// `attached` is the segment it had attached before the call, `reached`
/// each segment it could reach during the step and whether its content
/// changed across it.
pub fn touches(run: &str, call: &TracedCall, attached: Option<i32>, reached: &[(i32, bool)]) -> Vec<Access> {
    let mut out = Vec::new();
    // An exit while attached detaches: a change of the table.
    let exit_detaches = matches!(call, TracedCall::Exit { .. }) && attached.is_some();
    match call.table_access() {
        Some(false) => out.push(Access::ReadTable),
        Some(true) => out.extend([Access::ReadTable, Access::WriteTable]),
        None if exit_detaches => out.extend([Access::ReadTable, Access::WriteTable]),
        None => {}
    }
    if *call == TracedCall::ReadStdin {
        out.push(Access::Stdin(run.to_string()));
    }
    for &(id, changed) in reached {
        out.push(Access::ReadSegment(id));
        if changed {
            out.push(Access::WriteSegment(id));
        }
    }
    out
}

/// A sleep set (partial-order reduction): choices that need not be taken
/// from here, because an order that takes them here was explored already,
/// each with what its event touched. A choice wakes once an event that
/// conflicts with it happens. The engine and the explorer's tests share it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SleepSet(pub Vec<(Choice, Vec<Access>)>);

impl SleepSet {
    pub fn asleep(&self, choice: &Choice) -> bool {
        self.0.iter().any(|(c, _)| c == choice)
    }

    /// After `choice` ran an event that touched `touches`.
    pub fn advance(&mut self, choice: &Choice, touches: &[Access]) {
        self.0.retain(|(c, t)| c != choice && !conflict(t, touches));
    }
}

/// What the scheduler decided at one point of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Take this choice.
    Take(Choice),
    /// The prefix names a choice that is not enabled here: the order cannot
    /// be replayed (a BROKEN order, not a verdict).
    Impossible(Choice),
    /// Every enabled choice is asleep: the rest of the order is redundant.
    AllAsleep,
}

/// The system-call scheduler: which enabled choice an order takes next.
/// It replays a prefix (a backtracked or `--order` one), then takes the
/// first enabled choice not asleep, its sleep set installed before prefix
/// choice `sleep_from` and advanced by every event. The engine asks it at
/// every point of a traced order; the explorer's reduction tests drive the
/// same type over a toy system, so what they prove is of this policy.
#[derive(Debug, Clone)]
pub struct Scheduler {
    prefix: std::collections::VecDeque<Choice>,
    /// The sleep set to install, and before which choice.
    sleep_then: Option<(usize, SleepSet)>,
    sleep: SleepSet,
    /// Choices taken so far.
    taken: usize,
}

impl Scheduler {
    pub fn new(prefix: &[Choice], sleep: &[(Choice, Vec<Access>)], sleep_from: usize) -> Scheduler {
        Scheduler {
            prefix: prefix.iter().cloned().collect(),
            sleep_then: Some((sleep_from, SleepSet(sleep.to_vec()))),
            sleep: SleepSet::default(),
            taken: 0,
        }
    }

    /// The choice to take among `enabled` (listed in the canonical order).
    pub fn decide(&mut self, enabled: &[Choice]) -> Decision {
        if self.sleep_then.as_ref().is_some_and(|(from, _)| *from == self.taken) {
            if let Some((_, sleep)) = self.sleep_then.take() {
                self.sleep = sleep;
            }
        }
        let decision = match self.prefix.pop_front() {
            Some(c) if enabled.contains(&c) => Decision::Take(c),
            Some(c) => Decision::Impossible(c),
            None => match enabled.iter().find(|c| !self.sleep.asleep(c)) {
                Some(c) => Decision::Take(c.clone()),
                None => Decision::AllAsleep,
            },
        };
        if matches!(decision, Decision::Take(_)) {
            self.taken += 1;
        }
        decision
    }

    /// The event of a taken choice touched `touches`: sleepers it conflicts
    /// with wake.
    pub fn happened(&mut self, choice: &Choice, touches: &[Access]) {
        self.sleep.advance(choice, touches);
    }
}

/// What a traced step does after a task's exit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterExit {
    /// The role is at a new stop (a point, or its end): the step is over.
    Stopped,
    /// Keep waiting for the role's next stop.
    GoOn,
}

/// Where a traced role is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Stopped before this call.
    At(TracedCall),
    /// Gone: how it ended.
    Ended(Ending),
}

/// What went wrong with the tracing itself (not a verdict on the program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceError {
    /// The program did something this tracer does not follow.
    Unsupported(String),
    /// It did not reach its next point in time (killed with its group).
    TimedOut,
    /// A ptrace or wait call failed.
    Failed(String),
}

impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TraceError::Unsupported(s) | TraceError::Failed(s) => f.write_str(s),
            TraceError::TimedOut => f.write_str("it did not reach its next system call in time"),
        }
    }
}

/// A task of a traced run other than the one whose points are its steps:
/// a launcher's helper (`$(...)`), a thread, or the launcher itself while
/// the program it started runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Task {
    /// Just auto-attached (fork, vfork, clone): its first stop is the
    /// SIGSTOP of the attach, which is not a signal for the program.
    Fresh,
    /// Running freely, or stopped by us at nothing of interest.
    Free,
    /// Held at a point that matters (a shared-memory call or a read of the
    /// input) until the task whose steps are the run's lets it go first.
    Held(TracedCall),
}

/// One traced role, held at its current point.
///
/// A role may be a launcher before it is the program: an exec wrapper, `env`,
/// a shim that runs `$(...)` helpers and then execs. Its execs are not steps
/// (PTRACE_O_TRACEEXEC), and every task it starts is followed: the tasks
/// whose points are the role's steps are one at a time, the *current* task.
/// Another task's writes and exit run freely inside the current task's step
/// (a helper printing into a pipe); when another task reaches a
/// shared-memory call or a read of the input while the current task waits
/// for a child (wait4/waitid, as a launcher that does not exec), it becomes
/// the current task until it ends. Anything else that makes two tasks of one
/// run touch shared memory at once cannot be explored one step at a time: a
/// SKIP that names the task that started it.
#[derive(Debug)]
pub struct Tracee {
    /// The role's process (its group leader): its end is the role's end.
    leader: Pid,
    /// The task whose points are the role's steps.
    current: Pid,
    /// The tasks the current one took over from, each waiting for a child.
    waiting: Vec<Pid>,
    /// Every other task of the role that is alive and followed.
    others: BTreeMap<Pid, Task>,
    /// Who started each followed task (the task that forked or cloned it).
    parents: BTreeMap<Pid, Pid>,
    /// The thread group (process) of each followed thread that is not its
    /// group's leader: a program's points are its own whichever of its
    /// threads makes them (Go moves a goroutine between threads).
    threads: BTreeMap<Pid, Pid>,
    /// Tasks that called exit(2) while other threads of theirs lived on (a
    /// `main` that ends with pthread_exit): their end is not their
    /// process's.
    thread_ends: std::collections::BTreeSet<Pid>,
    /// Programs (thread groups) whose exit_group(2) was let go: their
    /// threads die with them, and none of theirs takes over any more.
    group_exits: std::collections::BTreeSet<Pid>,
    stop: Stop,
    /// Options set (after the exec stop).
    started: bool,
    /// Points stopped at so far.
    points: usize,
    /// What the last table call stepped over returned (-errno on failure).
    result: Option<i64>,
    /// The role's input as the kernel names it (`pipe:[N]`), read from its
    /// fd 0 at the start: a read of fd 0 is a point only when fd 0 is still
    /// that input (a launcher's `read < file` or a helper's pipe is not).
    input: Option<std::path::PathBuf>,
}

fn failed(what: &str, e: nix::errno::Errno) -> TraceError {
    TraceError::Failed(format!("{what}: {e}"))
}

/// Is this call one the exploration orders (as opposed to output and exits,
/// which a launcher's helper may make freely)?
fn ordered(call: &TracedCall) -> bool {
    call.table_access().is_some() || *call == TracedCall::ReadStdin
}

/// How a task of the role shows in a message: its pid and its command.
fn task_name(pid: Pid) -> String {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    match comm.trim() {
        "" => format!("task {pid}"),
        c => format!("task {pid} ({})", crate::events::escape(c.as_bytes())),
    }
}

/// A stopped task's registers; None when it was killed at that stop.
fn registers(pid: Pid) -> Result<Option<libc::user_regs_struct>, TraceError> {
    match ptrace::getregs(pid) {
        Ok(regs) => Ok(Some(regs)),
        Err(nix::errno::Errno::ESRCH) => Ok(None),
        Err(e) => Err(failed("PTRACE_GETREGS", e)),
    }
}

/// The thread group (process) a task belongs to, as /proc says.
fn thread_group(pid: Pid) -> Option<Pid> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Tgid:"))?;
    line.trim().parse().ok().map(Pid::from_raw)
}

/// Is a task's /proc stat state a zombie's or a dead task's?
fn stat_says_ended(stat: &str) -> bool {
    stat.rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
}

/// Does `program` have a thread other than `pid` that is not a zombie?
fn other_live_threads(program: Pid, pid: Pid) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{program}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).any(|t| {
        t.file_name().to_string_lossy() != pid.to_string()
            && std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| !stat_says_ended(&s))
    })
}

/// Has a task ended (a zombie, or gone from /proc)?
fn has_ended(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| stat_says_ended(&s))
}

/// Where a task is, as /proc says: None while it runs or is stopped (by
/// us: a stop not collected yet), Some(nr) when it sleeps in system call nr.
fn blocked_in(pid: Pid) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    if !matches!(state, "S" | "D") {
        return None;
    }
    let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    syscall.split_whitespace().next()?.parse().ok()
}

impl Tracee {
    /// A child just spawned with `trace_at_ipc_calls`: it stops at its exec
    /// (SIGTRAP), where it is held until its first step.
    pub fn new(pid: i32) -> Tracee {
        let pid = Pid::from_raw(pid);
        Tracee {
            leader: pid,
            current: pid,
            waiting: Vec::new(),
            others: BTreeMap::new(),
            parents: BTreeMap::new(),
            threads: BTreeMap::new(),
            thread_ends: Default::default(),
            group_exits: Default::default(),
            stop: Stop::At(TracedCall::Start),
            started: false,
            points: 0,
            result: None,
            input: None,
        }
    }

    pub fn stop(&self) -> &Stop {
        &self.stop
    }

    /// The program's first task (its pid, and its process group's).
    pub fn leader(&self) -> Pid {
        self.leader
    }

    /// What the call of the last step returned, when it was a table call
    /// (shmget, shmat, shmdt, shmctl) that returned: -errno on failure.
    pub fn last_result(&self) -> Option<i64> {
        self.result
    }

    pub fn ended(&self) -> Option<&Ending> {
        match &self.stop {
            Stop::Ended(e) => Some(e),
            Stop::At(_) => None,
        }
    }

    /// Let the role execute the call it is stopped at and run to its next
    /// point (or its end). Only this role runs meanwhile; a role that does
    /// not get there by `deadline` is SIGKILLed and this says so. The
    /// deadline is asked again each time it is looked at: it may move (a
    /// busy machine, a stopped harness).
    pub fn step(&mut self, deadline: &dyn Fn() -> Instant) -> Result<&Stop, TraceError> {
        if self.ended().is_some() {
            return Ok(&self.stop);
        }
        if !self.started && self.start(deadline)? {
            return Ok(&self.stop);
        }
        // A table call is followed to its return (one syscall-exit stop), so
        // what the kernel answered can be held against the table after it.
        let mut in_call = matches!(&self.stop, Stop::At(c) if c.table_access().is_some());
        if matches!(&self.stop, Stop::At(TracedCall::Exit { .. }))
            && registers(self.current)?.is_some_and(|r| r.orig_rax as i64 == nr::EXIT_GROUP)
        {
            self.group_exits.insert(self.program_of(self.current));
        }
        self.result = None;
        self.resume(self.current, in_call, None)?;
        let mut spins = 0u32;
        loop {
            let Some((pid, status)) = self.poll(deadline, &mut spins)? else {
                // Nothing reported: may a held task take over? (Not while
                // the current task is inside its table call.)
                if !in_call && self.hand_over()? {
                    return Ok(&self.stop);
                }
                continue;
            };
            spins = 0;
            if pid != self.current {
                if self.other_task(pid, status)? {
                    return Ok(&self.stop);
                }
                continue;
            }
            match status {
                WaitStatus::PtraceSyscall(_) if in_call => {
                    self.result = registers(pid)?.map(|regs| regs.rax as i64);
                    in_call = false;
                    self.resume(pid, false, None)?;
                }
                WaitStatus::PtraceEvent(_, _, event) if event == libc::PTRACE_EVENT_SECCOMP => {
                    let Some(call) = self.decode(pid)? else {
                        continue;
                    };
                    // A thread's own end (exit(2), not exit_group(2)) while
                    // its process lives on detaches nothing: no point.
                    let thread_end = self.is_thread_end(pid)?;
                    if thread_end || (call == TracedCall::ReadStdin && !self.reads_the_input(pid)) {
                        self.resume(pid, false, None)?;
                        continue;
                    }
                    if let Some(other) = self.held_at_ordered_call() {
                        return Err(self.concurrent(other));
                    }
                    self.points += 1;
                    self.stop = Stop::At(call);
                    return Ok(&self.stop);
                }
                WaitStatus::PtraceEvent(_, _, event) if event == libc::PTRACE_EVENT_EXIT => {
                    if self.task_exiting(pid)? == AfterExit::Stopped {
                        return Ok(&self.stop);
                    }
                }
                WaitStatus::PtraceEvent(_, _, event) => {
                    self.task_event(pid, event)?;
                    self.resume(pid, in_call, None)?;
                }
                // A signal for the program (SIGSEGV, SIGPIPE, ...): deliver it.
                WaitStatus::Stopped(_, sig) => self.resume(pid, in_call, Some(sig))?,
                WaitStatus::Exited(_, code) if pid == self.leader => {
                    self.stop = Stop::Ended(Ending::Exited { code });
                    return Ok(&self.stop);
                }
                WaitStatus::Signaled(_, sig, _) if pid == self.leader => {
                    self.stop = Stop::Ended(Ending::Signaled {
                        signal: sig.as_str().into(),
                    });
                    return Ok(&self.stop);
                }
                WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {
                    self.others.remove(&pid);
                    self.parents.remove(&pid);
                    self.current = match self.threads.remove(&pid) {
                        Some(program) => program,
                        None => self.waiting.pop().unwrap_or(self.leader),
                    };
                }
                // No other stop is expected here; one left unanswered
                // would hold the task for good.
                _ => self.resume(pid, false, None)?,
            }
        }
    }

    /// The first step: wait for the exec stop, then ask for the seccomp
    /// stops, the exit stop, exec events and every new task. True when the
    /// program ended before it (its stop says how).
    fn start(&mut self, deadline: &dyn Fn() -> Instant) -> Result<bool, TraceError> {
        // The exec stop: wait for it, then ask for the seccomp stops,
        // the exit stop, exec events (a launcher's exec is no step), and
        // every new task (followed).
        match self.wait_for(self.leader, deadline)? {
            WaitStatus::Stopped(_, Signal::SIGTRAP) => {}
            WaitStatus::Exited(_, code) => {
                self.stop = Stop::Ended(Ending::Exited { code });
                return Ok(true);
            }
            other => return Err(TraceError::Failed(format!("unexpected first stop: {other:?}"))),
        }
        let options = ptrace::Options::PTRACE_O_TRACESECCOMP
            | ptrace::Options::PTRACE_O_TRACEEXIT
            | ptrace::Options::PTRACE_O_TRACEEXEC
            | ptrace::Options::PTRACE_O_TRACESYSGOOD
            | ptrace::Options::PTRACE_O_EXITKILL
            | ptrace::Options::PTRACE_O_TRACECLONE
            | ptrace::Options::PTRACE_O_TRACEFORK
            | ptrace::Options::PTRACE_O_TRACEVFORK;
        ptrace::setoptions(self.leader, options).map_err(|e| failed("PTRACE_SETOPTIONS", e))?;
        self.input = std::fs::read_link(format!("/proc/{}/fd/0", self.leader)).ok();
        self.started = true;
        Ok(false)
    }

    /// A task's exit event (PTRACE_EVENT_EXIT): whose end it is (a
    /// thread's, a launched program's, the role's) and which task goes on.
    fn task_exiting(&mut self, pid: Pid) -> Result<AfterExit, TraceError> {
        let status = ptrace::getevent(pid).map_err(|e| failed("PTRACE_GETEVENTMSG", e))? as i32;
        // A thread of the program held at a point takes over
        // from one that ends; another process's would have run
        // at once with it.
        if let Some(other) = self.held_at_ordered_call().filter(|o| !self.same_program(*o, pid)) {
            return Err(self.concurrent(other));
        }
        if pid != self.leader && libc::WIFSIGNALED(status) {
            // The program a launcher started was killed: that
            // is the role's end (the launcher would only turn
            // it into an exit code, 128 + the signal).
            self.stop = Stop::Ended(ending_of(status));
            let _ = ptrace::cont(pid, None);
            return Ok(AfterExit::Stopped);
        }
        if self.threads.contains_key(&pid) || self.thread_ends.contains(&pid) {
            // One thread of the program ended, not the program:
            // a thread of it held at a point goes on with the
            // program's steps, or else its first thread does
            // (a zombie, once `main` has ended: the process's
            // end is reported on it). It stays followed until
            // its end is collected: its process's end is
            // reported only after it.
            let program = self.program_of(pid);
            let _ = ptrace::cont(pid, None);
            if pid != program {
                self.others.insert(pid, Task::Free);
            }
            self.current = program;
            if self.group_exits.contains(&program) {
                // Killed with its process: a thread held at a
                // point dies too; it is collected, not let go.
                self.release_held_of(program);
                return Ok(AfterExit::GoOn);
            }
            let held = self.held_at_ordered_call().filter(|o| self.same_program(*o, program));
            if let Some(next) = held {
                self.take_over(next);
                return Ok(AfterExit::Stopped);
            }
            return Ok(AfterExit::GoOn);
        }
        if pid != self.leader {
            // A program a launcher started and waits for: its
            // launcher is the current task again.
            let _ = ptrace::cont(pid, None);
            self.others.insert(pid, Task::Free);
            self.current = self.waiting.pop().unwrap_or(self.leader);
            return Ok(AfterExit::GoOn);
        }
        // Every program stops at least at its exit call: ending
        // normally without one stop means the kernel (a
        // sandbox's) does not deliver seccomp trace stops.
        if self.points == 0 && !libc::WIFSIGNALED(status) {
            return Err(TraceError::Unsupported(
                "it ran to its end without one system-call stop: seccomp trace stops do not work here".into(),
            ));
        }
        self.stop = Stop::Ended(ending_of(status));
        // Let it finish exiting; it stays a zombie for its
        // group's owner to reap (see procs).
        let _ = ptrace::cont(pid, None);
        Ok(AfterExit::Stopped)
    }

    /// Continue `pid`: to its next stop, or (`to_return`) to the return of
    /// the call it is stopped at.
    ///
    /// A task killed while stopped (another thread of its process called
    /// exit_group, or its group was killed) is no longer in a stop: ESRCH.
    /// Its end is still reported by wait, as with any task.
    fn resume(&self, pid: Pid, to_return: bool, signal: Option<Signal>) -> Result<(), TraceError> {
        let (what, result) = if to_return {
            ("PTRACE_SYSCALL", ptrace::syscall(pid, signal))
        } else {
            ("PTRACE_CONT", ptrace::cont(pid, signal))
        };
        match result {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(failed(what, e)),
        }
    }

    /// A fork, vfork, clone or exec event of `pid`: follow the new task.
    fn task_event(&mut self, pid: Pid, event: i32) -> Result<(), TraceError> {
        let new_task = [
            libc::PTRACE_EVENT_FORK,
            libc::PTRACE_EVENT_VFORK,
            libc::PTRACE_EVENT_CLONE,
        ];
        if new_task.contains(&event) {
            let child = ptrace::getevent(pid).map_err(|e| failed("PTRACE_GETEVENTMSG", e))?;
            let child = Pid::from_raw(child as i32);
            self.others.entry(child).or_insert(Task::Fresh);
            self.parents.insert(child, pid);
            if event == libc::PTRACE_EVENT_CLONE {
                if let Some(group) = thread_group(child).filter(|g| *g != child) {
                    self.threads.insert(child, group);
                }
            }
        } else if event == libc::PTRACE_EVENT_EXEC {
            // A thread that execs takes the leader's id; the old one is gone.
            if let Ok(former) = ptrace::getevent(pid) {
                let former = Pid::from_raw(former as i32);
                if former != pid {
                    self.others.remove(&former);
                    self.threads.remove(&former);
                    // The thread that exec'd now has the leader's id.
                    if self.current == former {
                        self.current = pid;
                    }
                    for w in self.waiting.iter_mut().filter(|w| **w == former) {
                        *w = pid;
                    }
                }
            }
        }
        Ok(())
    }

    /// A stop of a task other than the current one: a task at an ordered
    /// call is held there (it was not its turn).
    /// True when that task took over (the role's stop is its call).
    fn other_task(&mut self, pid: Pid, status: WaitStatus) -> Result<bool, TraceError> {
        let fresh = self.others.get(&pid) == Some(&Task::Fresh);
        match status {
            WaitStatus::Stopped(_, Signal::SIGSTOP) if fresh => {
                self.others.insert(pid, Task::Free);
                self.resume(pid, false, None)?;
            }
            WaitStatus::PtraceEvent(_, _, event) if event == libc::PTRACE_EVENT_SECCOMP => {
                let Some(call) = self.decode(pid)? else {
                    return Ok(false);
                };
                let of_input = call != TracedCall::ReadStdin || self.reads_the_input(pid);
                // Another thread of the program: every point of the
                // program's is one, whichever thread makes it (all but a
                // lone thread's own end, which detaches nothing).
                let own_point = self.same_program(pid, self.current) && !self.is_thread_end(pid)?;
                if of_input && (ordered(&call) || own_point) {
                    self.others.insert(pid, Task::Held(call));
                    return self.hand_over();
                }
                self.others.insert(pid, Task::Free);
                self.resume(pid, false, None)?;
            }
            WaitStatus::PtraceEvent(_, _, event) if event == libc::PTRACE_EVENT_EXIT => {
                self.resume(pid, false, None)?;
            }
            WaitStatus::PtraceEvent(_, _, event) => {
                self.task_event(pid, event)?;
                self.resume(pid, false, None)?;
            }
            WaitStatus::Stopped(_, sig) => self.resume(pid, false, Some(sig))?,
            WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {
                self.others.remove(&pid);
                self.parents.remove(&pid);
                self.threads.remove(&pid);
                if pid == self.leader {
                    // The launcher ended under the program it started.
                    return Err(TraceError::Unsupported(format!(
                        "its first process ended while {} it started still ran: a launcher that does not wait \
                         for the program, which system-call exploration does not follow",
                        task_name(self.current)
                    )));
                }
            }
            _ => self.resume(pid, false, None)?,
        }
        Ok(false)
    }

    /// Is `pid`'s fd 0 the role's input (when that is known)?
    fn reads_the_input(&self, pid: Pid) -> bool {
        let Some(input) = &self.input else {
            return true;
        };
        std::fs::read_link(format!("/proc/{pid}/fd/0")).map_or(true, |fd0| &fd0 == input)
    }

    /// The process (thread group) `pid` is a thread of.
    fn program_of(&self, pid: Pid) -> Pid {
        self.threads.get(&pid).copied().unwrap_or(pid)
    }

    fn same_program(&self, a: Pid, b: Pid) -> bool {
        self.program_of(a) == self.program_of(b)
    }

    /// Is `pid` stopped before the end of one thread only: exit(2) (not
    /// exit_group(2)) while another thread of its process lives? (The last
    /// thread's exit(2) is its process's end, which detaches: a point.)
    /// Noted, so that its exit event is taken for a thread's.
    fn is_thread_end(&mut self, pid: Pid) -> Result<bool, TraceError> {
        let exit = registers(pid)?.is_some_and(|regs| regs.orig_rax as i64 == nr::EXIT);
        let end = exit && other_live_threads(self.program_of(pid), pid);
        if end {
            self.thread_ends.insert(pid);
        }
        Ok(end)
    }

    /// The threads of `program` held at a point are Free again (its
    /// exit_group kills them; their end is collected like any task's).
    fn release_held_of(&mut self, program: Pid) {
        let held: Vec<Pid> = self
            .others
            .iter()
            .filter(|(p, t)| matches!(t, Task::Held(_)) && self.program_of(**p) == program)
            .map(|(p, _)| *p)
            .collect();
        for p in held {
            self.others.insert(p, Task::Free);
            let _ = ptrace::cont(p, None);
        }
    }

    /// A task held at an ordered call, if any.
    fn held_at_ordered_call(&self) -> Option<Pid> {
        self.others
            .iter()
            .find(|(_, t)| matches!(t, Task::Held(_)))
            .map(|(p, _)| *p)
    }

    /// A task is held at an ordered call while the current one runs.
    ///
    /// When it is another thread of the current task's program, it takes
    /// over once the current thread blocks (a goroutine the Go runtime moved
    /// to another thread; a thread that does the work while `main` joins
    /// it): the program's calls are still one at a time. When it is another
    /// process, it takes over once the current task waits for a child (a
    /// launcher that runs the program and waits for it); once the current
    /// task blocks in anything else, the two would run at once: a SKIP.
    /// While the current task runs, nothing is decided yet: it may block,
    /// or reach a point of its own (then two tasks make calls at once).
    fn hand_over(&mut self) -> Result<bool, TraceError> {
        let Some(next) = self.held_at_ordered_call() else {
            return Ok(false);
        };
        if self.same_program(next, self.current) {
            // Another thread of the program: once the current one blocks
            // or has ended.
            if blocked_in(self.current).is_none() && !has_ended(self.current) {
                return Ok(false);
            }
            self.others.insert(self.current, Task::Free);
            self.take_over(next);
            return Ok(true);
        }
        // Another process: once a thread of the current task's process
        // waits for a child (a Go launcher waits on a thread of its own).
        let program = self.program_of(self.current);
        let mut threads: Vec<Pid> = vec![self.current];
        threads.extend(
            self.threads
                .iter()
                .filter(|(t, g)| **g == program && **t != self.current)
                .map(|(t, _)| *t),
        );
        if program != self.current {
            threads.push(program);
        }
        let states: Vec<Option<i64>> = threads.iter().map(|t| blocked_in(*t)).collect();
        if states
            .iter()
            .any(|s| matches!(s, Some(nr) if *nr == libc::SYS_wait4 || *nr == libc::SYS_waitid))
        {
            self.others.insert(self.current, Task::Free);
            self.waiting.push(self.current);
            self.take_over(next);
            return Ok(true);
        }
        // Running somewhere: it may yet wait. Blocked in anything else
        // everywhere: the two would run at once.
        if threads.iter().zip(&states).any(|(t, s)| s.is_none() && !has_ended(*t)) {
            return Ok(false);
        }
        Err(self.concurrent(next))
    }

    /// `next`, held at a point, becomes the current task: its call is the
    /// role's stop.
    fn take_over(&mut self, next: Pid) {
        if let Some(Task::Held(call)) = self.others.remove(&next) {
            self.current = next;
            self.points += 1;
            self.stop = Stop::At(call);
        }
    }

    /// Two tasks of the role would make ordered calls at once.
    fn concurrent(&self, other: Pid) -> TraceError {
        let started_by = self
            .parents
            .get(&other)
            .map(|p| format!(", started by {}", task_name(*p)))
            .unwrap_or_default();
        let call = match self.others.get(&other) {
            Some(Task::Held(c)) => c.describe(),
            _ => "a call".into(),
        };
        if self.same_program(other, self.current) {
            return TraceError::Unsupported(format!(
                "two of its threads make calls at once: {} makes {call} while {} runs on to a call of its own; \
                 system-call exploration orders a program's calls one at a time",
                task_name(other),
                task_name(self.current)
            ));
        }
        TraceError::Unsupported(format!(
            "its {}{started_by}, makes {call} while {} runs (a launcher that does not wait for the program, or a \
             program of several threads or processes): system-call exploration follows one task of a run at a time",
            task_name(other),
            task_name(self.current)
        ))
    }

    /// The call `pid` is stopped before; None when it was killed at that
    /// stop (its end is reported next).
    fn decode(&self, pid: Pid) -> Result<Option<TracedCall>, TraceError> {
        let Some(regs) = registers(pid)? else {
            return Ok(None);
        };
        let (arg0, arg1, arg2) = (regs.rdi, regs.rsi, regs.rdx);
        Ok(Some(match regs.orig_rax as i64 {
            nr::SHMGET => TracedCall::ShmGet {
                key: arg0 as i32,
                size: arg1,
                flags: arg2 as i32,
            },
            nr::SHMAT => TracedCall::ShmAt { id: arg0 as i32 },
            nr::SHMDT => TracedCall::ShmDt { addr: arg0 },
            nr::SHMCTL => TracedCall::ShmCtl {
                id: arg0 as i32,
                cmd: arg1 as i32,
            },
            nr::READ | nr::READV => TracedCall::ReadStdin,
            nr::WRITE => TracedCall::Write {
                fd: arg0 as i32,
                len: arg2,
            },
            nr::WRITEV => TracedCall::Write {
                fd: arg0 as i32,
                len: 0,
            },
            nr::EXIT | nr::EXIT_GROUP => TracedCall::Exit { code: arg0 as i32 },
            other => return Err(TraceError::Failed(format!("stopped at unexpected system call {other}"))),
        }))
    }

    /// The next stop of any task of the role that is not held, polling so
    /// a deadline can end it: past it the role's group is killed. None when
    /// nothing was reported this round (the caller may look at the tasks).
    fn poll(
        &mut self,
        deadline: &dyn Fn() -> Instant,
        spins: &mut u32,
    ) -> Result<Option<(Pid, WaitStatus)>, TraceError> {
        let flags = WaitPidFlag::__WALL | WaitPidFlag::WNOHANG;
        let mut tasks = vec![self.current];
        tasks.extend(
            self.others
                .iter()
                .filter(|(p, t)| !matches!(t, Task::Held(_)) && **p != self.current)
                .map(|(p, _)| *p),
        );
        if self.current != self.leader && !self.others.contains_key(&self.leader) {
            tasks.push(self.leader);
        }
        for pid in tasks {
            loop {
                match waitpid(pid, Some(flags)) {
                    Ok(WaitStatus::StillAlive) => break,
                    Ok(status) => return Ok(Some((pid, status))),
                    Err(nix::errno::Errno::EINTR) => continue,
                    // Gone (reaped as a thread of an exec, or not ours).
                    Err(nix::errno::Errno::ECHILD) if pid != self.current => {
                        self.others.remove(&pid);
                        break;
                    }
                    // The current thread exec'd: it has its leader's id now,
                    // where the exec event is reported (see `task_event`).
                    Err(nix::errno::Errno::ECHILD) if self.threads.contains_key(&pid) => break,
                    Err(e) => return Err(failed("waitpid", e)),
                }
            }
        }
        // Once an exit_group was let go, a thread whose creation was never
        // reported (its creator was killed at that stop) is still to be
        // collected before its process's end is: any task of the role's
        // process group.
        if !self.group_exits.is_empty() {
            match waitpid(Pid::from_raw(-self.leader.as_raw()), Some(flags)) {
                Ok(WaitStatus::StillAlive) | Err(_) => {}
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        if pid != self.current && !self.others.contains_key(&pid) {
                            self.others.insert(pid, Task::Free);
                        }
                        return Ok(Some((pid, status)));
                    }
                }
            }
        }
        if Instant::now() >= deadline() {
            let _ = nix::sys::signal::killpg(self.leader, Signal::SIGKILL);
            let _ = nix::sys::signal::kill(self.leader, Signal::SIGKILL);
            return Err(TraceError::TimedOut);
        }
        // Most steps take microseconds: spin first, then back off.
        *spins += 1;
        if *spins < 200 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros((*spins as u64).min(1000)));
        }
        Ok(None)
    }

    /// Wait for one task's next stop (the first stop of the role).
    fn wait_for(&mut self, pid: Pid, deadline: &dyn Fn() -> Instant) -> Result<WaitStatus, TraceError> {
        let flags = WaitPidFlag::__WALL | WaitPidFlag::WNOHANG;
        let mut spins = 0u32;
        loop {
            match waitpid(pid, Some(flags)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => return Ok(status),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(failed("waitpid", e)),
            }
            if Instant::now() >= deadline() {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                return Err(TraceError::TimedOut);
            }
            spins += 1;
            if spins < 200 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros((spins as u64).min(1000)));
            }
        }
    }
}

/// A wait status (as PTRACE_EVENT_EXIT reports it) as an ending.
fn ending_of(status: i32) -> Ending {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        Ending::Signaled {
            signal: Signal::try_from(sig).map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string()),
        }
    } else {
        Ending::Exited {
            code: libc::WEXITSTATUS(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::procs::Proc;

    /// The scheduler replays the prefix, then takes the first choice not
    /// asleep; the sleep set comes in before choice `sleep_from` and a
    /// conflicting event wakes a sleeper; all asleep is redundant, and a
    /// prefix choice that is not enabled is impossible.
    #[test]
    fn the_scheduler_replays_then_takes_the_first_choice_not_asleep() {
        let (a, b, c) = (Choice::parse("a"), Choice::parse("b"), Choice::parse("c"));
        let all = [a.clone(), b.clone(), c.clone()];
        let sleep = vec![
            (a.clone(), vec![Access::WriteSegment(0)]),
            (b.clone(), vec![Access::Stdin("b".into())]),
        ];
        let mut s = Scheduler::new(std::slice::from_ref(&c), &sleep, 1);
        assert_eq!(s.decide(&all), Decision::Take(c.clone()), "the prefix first");
        s.happened(&c, &[Access::Stdin("c".into())]);
        assert_eq!(
            s.decide(&all),
            Decision::Take(c.clone()),
            "a and b asleep from choice 1"
        );
        s.happened(&c, &[Access::ReadSegment(0)]);
        assert_eq!(s.decide(&all[..2]), Decision::Take(a.clone()), "c's read of shm woke a");
        s.happened(&a, &[Access::WriteSegment(0)]);
        assert_eq!(s.decide(&all[1..2]), Decision::AllAsleep, "b still asleep");
        let mut s = Scheduler::new(std::slice::from_ref(&c), &[], 0);
        assert_eq!(s.decide(&all[..2]), Decision::Impossible(c));
    }

    #[test]
    fn reads_commute_and_writes_conflict() {
        let stat = touches(
            "r",
            &TracedCall::ShmCtl {
                id: 0,
                cmd: libc::IPC_STAT,
            },
            Some(0),
            &[(0, false)],
        );
        let other_stat = touches(
            "w",
            &TracedCall::ShmCtl {
                id: 0,
                cmd: libc::IPC_STAT,
            },
            None,
            &[],
        );
        assert!(
            !conflict(&stat, &other_stat),
            "two table reads: {stat:?} {other_stat:?}"
        );
        let rmid = touches(
            "w",
            &TracedCall::ShmCtl {
                id: 0,
                cmd: libc::IPC_RMID,
            },
            None,
            &[],
        );
        assert!(conflict(&stat, &rmid));
        // A step that changed the segment's content conflicts with one that
        // only had it attached; two that only had it attached do not.
        let wrote = touches("w", &TracedCall::ReadStdin, Some(0), &[(0, true)]);
        let looked = touches("r", &TracedCall::Write { fd: 1, len: 3 }, Some(0), &[(0, false)]);
        assert!(conflict(&wrote, &looked) && conflict(&looked, &wrote));
        let looked_too = touches("q", &TracedCall::Write { fd: 1, len: 3 }, Some(0), &[(0, false)]);
        assert!(!conflict(&looked, &looked_too));
        // An exit while attached detaches (a table change); detached, it touches nothing.
        assert!(conflict(
            &touches("w", &TracedCall::Exit { code: 0 }, Some(0), &[(0, false)]),
            &stat
        ));
        assert!(touches("w", &TracedCall::Exit { code: 0 }, None, &[]).is_empty());
        // A run's input: its reads and its pieces.
        assert_eq!(
            touches("w", &TracedCall::ReadStdin, None, &[]),
            vec![Access::Stdin("w".into())]
        );
    }

    /// Every point of the C reference writer run through `launcher` (a
    /// bash command line where PROGRAM stands for it, or none), feeding "hel" then "lo\n" at its
    /// reads; in a private IPC namespace.
    fn points_of(launcher: Option<&str>) -> Option<Vec<String>> {
        if !shmconf::ipcns::can_unshare_ipc() {
            eprintln!("skipped: no IPC namespace can be made here");
            return None;
        }
        let points = shmconf::ipcns::in_private_ipc_ns(|| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("shmfile"), "").unwrap();
            let writer = std::path::Path::new(env!("SHMCONF_C_REFERENCE_DIR")).join("c-writer");
            let mut cmd = match launcher {
                None => shmconf::sysv::spawn::Launch::new(&writer),
                Some(line) => {
                    let mut c = shmconf::sysv::spawn::Launch::new("bash");
                    c.args(["-c", &line.replace("PROGRAM", &writer.display().to_string())]);
                    c
                }
            };
            cmd.current_dir(dir.path());
            let mut proc = Proc::spawn_traced("w", cmd, None).unwrap();
            let mut tracee = Tracee::new(proc.pid);
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut seen = Vec::new();
            let mut fed = 0;
            loop {
                let stop = tracee.step(&|| deadline).unwrap().clone();
                match stop {
                    Stop::At(call) => {
                        if call == TracedCall::ReadStdin && proc.stdin_unread() == Some(0) {
                            let piece: &[u8] = if fed == 0 { b"hel" } else { b"lo\n" };
                            fed += 1;
                            proc.write_stdin(piece, fed == 2).unwrap();
                        }
                        seen.push(call.describe());
                    }
                    Stop::Ended(e) => {
                        seen.push(format!("ended: {e}"));
                        break;
                    }
                }
            }
            proc.kill_group();
            seen
        })
        .unwrap();
        Some(points)
    }

    /// The C reference (gets() semantics, as the original) stops at each
    /// point in program order; input arrives in two pieces and it reads
    /// between them; its end is seen.
    #[test]
    fn an_unmodified_writer_stops_at_each_point_in_order() {
        let Some(points) = points_of(None) else {
            return;
        };
        let shown = points.join(" | ");
        assert!(shown.starts_with("shmget(0x41"), "{shown}");
        // On a pipe stdio flushes the output at exit, after the detach.
        let order: Vec<&str> = [
            "shmat(0)",
            "read(0)",
            "read(0)",
            "shmdt",
            "write(1, 42 bytes)",
            "exit(0)",
            "ended: exit code 0",
        ]
        .to_vec();
        let mut at = 0;
        for want in order {
            let found = points[at..].iter().position(|p| p.starts_with(want));
            assert!(found.is_some(), "{want} after point {at} in {shown}");
            at += found.unwrap_or(0) + 1;
        }
    }

    /// Behind a launcher the program's points are the same: an exec (once
    /// or twice) is no point, a `$(...)` helper's output and exit and a
    /// `read < file` are not the role's, and a shell that runs the program
    /// and waits hands its steps to it (only the shell's own exit is added).
    #[rstest::rstest]
    #[case::exec("exec PROGRAM")]
    #[case::env("exec env A=1 PROGRAM")]
    #[case::exec_twice("exec bash -c 'exec \"$0\"' PROGRAM")]
    #[case::helpers_then_exec(
        "x=$(echo y; uname -s); v=$(while read -r l; do echo $l; done < /proc/self/comm); exec PROGRAM"
    )]
    fn a_launcher_adds_no_point(#[case] launcher: &str) {
        let (Some(bare), Some(launched)) = (points_of(None), points_of(Some(launcher))) else {
            return;
        };
        assert_eq!(calls(&launched), calls(&bare), "{launched:?} vs {bare:?}");
    }

    /// Keys and addresses differ from run to run: the calls without them.
    fn calls(points: &[String]) -> Vec<String> {
        points
            .iter()
            .map(|s| s.split(['(', ' ']).next().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn a_shell_that_runs_and_waits_hands_its_steps_to_the_program() {
        let (Some(bare), Some(launched)) = (points_of(None), points_of(Some("x=$(echo y); PROGRAM; exit $?"))) else {
            return;
        };
        // The program's points up to its exit, then the shell's own exit.
        let n = bare.len();
        assert_eq!(launched.len(), n + 1, "{launched:?}");
        assert_eq!(
            calls(&launched[..n - 1]),
            calls(&bare[..n - 1]),
            "{launched:?} vs {bare:?}"
        );
        assert_eq!(launched[n - 1], "exit(0)", "{launched:?}");
        assert_eq!(launched[n], "ended: exit code 0", "{launched:?}");
    }
}
