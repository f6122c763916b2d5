//! Scenarios: a TOML file ([`wire`]) turned once, at load, into a typed
//! scenario whose every value is already checked, decoded and bounded:
//! bytes decoded (within size limits), regexes compiled, signals, modes and
//! keys parsed, file names confined to the scenario's dir ([`files`]),
//! sysctls limited to the IPC namespace's own, references between steps
//! (process names, saved ids, namespaces, marks) resolved. Any problem is a
//! [`LoadError`] at `file:line:col`. Run time matches on [`Action`] and has
//! nothing left to validate.
//!
//! The format is documented in `scenarios/README.md`; the JSON Schema
//! (`shmconf schema`) is generated from the wire types.

pub mod catalogue;
pub mod describe;
pub mod discover;
mod error;
pub mod files;
pub mod kinds;
mod program_step;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use toml::Spanned;

pub use discover::{discover, select, ScenarioFile};
pub use error::{
    BadMode, BadName, BytesError, ExpectError, InitialSegmentError, KeyError, MissingSavedId, SegmentError,
    TimeoutError, UnknownIpcMode, UnknownSignal, UnknownSysctl, UnsavedId,
};
pub use files::{FileName, FileNameError, ScenarioDir};
pub use wire::{json_schema, LoadError};

use crate::events::{Access, Choice};

/// The namespace every scenario has.
pub const MAIN_NS: &str = "main";
/// Most bytes a step may write to a process's stdin.
pub const MAX_STDIN_BYTES: usize = 16 << 20;
/// Most bytes an expectation (stdout, stderr, content, prefix) may hold; the
/// engine keeps more than this of each output, so exact comparisons stay exact.
pub const MAX_EXPECT_BYTES: usize = 1 << 20;
/// Most bytes of a segment's content a snapshot keeps: enough to judge any
/// expectation (which is at most [`MAX_EXPECT_BYTES`]) exactly.
pub const CONTENT_CAP: usize = MAX_EXPECT_BYTES + 1;
/// Longest limit a scenario or step may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Most steps, namespaces and files a scenario may have.
pub const MAX_STEPS: usize = 1000;
pub const MAX_NAMESPACES: usize = 16;
pub const MAX_FILES: usize = 64;
/// Most orders a sampled exploration may ask for.
pub const MAX_SAMPLE: usize = 100_000;
/// Most runs and events of an exploration (orders grow factorially).
pub const MAX_EXPLORE_PARTS: usize = 12;

/// A loaded, checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub description: String,
    pub tags: Vec<String>,
    pub reference: Option<String>,
    /// Key files created (empty) before the first step.
    pub files: Vec<FileName>,
    /// Declared namespaces beyond `main`.
    pub namespaces: BTreeMap<String, NamespaceDecl>,
    /// The scenario's own limit, if it sets one.
    pub timeout: Option<Duration>,
    /// What the scenario's directory (its key files) is on.
    pub filesystem: DirFilesystem,
    pub body: Body,
}

/// What the scenario's directory is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirFilesystem {
    /// Where the run's directories are (often a disk whose device number's
    /// low byte is 0, so ftok's device byte goes unseen).
    #[default]
    RunDir,
    /// A tmpfs mounted for the scenario, its device's low byte not 0.
    Tmpfs,
}

#[derive(Debug, Clone)]
pub enum Body {
    Steps(Vec<Step>),
    Explore(Exploration),
}

#[derive(Debug, Clone, Default)]
pub struct NamespaceDecl {
    /// Same namespace as this one.
    pub share: Option<String>,
    /// Container backends: the container's `--ipc` mode.
    pub docker: Option<IpcMode>,
    /// Container backends: the pod whose one IPC namespace this container shares.
    pub pod: Option<String>,
    /// Container backends: starting the container must fail with this text.
    pub expect_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based position in the scenario.
    pub n: usize,
    /// The namespace the step runs in, after `share` is resolved.
    pub ns: String,
    /// The step's own limit, if it sets one.
    pub timeout: Option<Duration>,
    pub action: Action,
}

/// What a step does. Each variant carries exactly what it needs, checked.
#[derive(Debug, Clone)]
pub enum Action {
    Spawn(Spawn),
    Feed {
        proc: String,
        data: Vec<u8>,
        close: bool,
    },
    Wait {
        proc: String,
        until: WaitFor,
    },
    Kill {
        proc: String,
        signal: Signal,
        expect: Expect,
    },
    Segments(SegmentsCheck),
    File(FileOp),
    CollideFiles {
        a: FileName,
        b: FileName,
    },
    Sysctl {
        sysctl: IpcSysctl,
        value: String,
    },
    Stop {
        ns: String,
    },
    DropNs {
        ns: String,
    },
    ShmemMark {
        mark: String,
    },
    ShmemFreed {
        since: String,
        at_least_kib: u64,
    },
    /// Record every segment with its content (an exploration's observation
    /// after each event, judged against the model; not in scenario files).
    Observe,
    /// A system-call exploration's order (not in scenario files): the
    /// traced runs already spawned are stepped by `prefix`, then by the
    /// first enabled choice until every one has ended.
    Schedule(Schedule),
}

/// One order of a system-call exploration, as the engine plays it.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The traced runs, in the canonical order choices are listed in.
    pub runs: Vec<String>,
    /// Input still to feed, piece by piece, by run (the last piece closes it).
    pub pieces: BTreeMap<String, Vec<Vec<u8>>>,
    /// The choices to make first (a replayed or backtracked prefix).
    pub prefix: Vec<Choice>,
    /// Sleep set (partial-order reduction): choices, with what their event
    /// touched, that need not be taken from the state before prefix choice
    /// `sleep_from` on, because an equivalent order was explored already.
    /// A choice wakes up once an event dependent on it happens; when every
    /// enabled choice sleeps, the rest of the order is redundant and it stops.
    pub sleep: Vec<(Choice, Vec<Access>)>,
    pub sleep_from: usize,
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
    pub fn parse(s: &str) -> Result<IpcMode, UnknownIpcMode> {
        Ok(match s {
            "private" => IpcMode::Private,
            "shareable" => IpcMode::Shareable,
            "host" => IpcMode::Host,
            "none" => IpcMode::None,
            "local" => IpcMode::Local,
            _ => match s.strip_prefix("container:") {
                Some(ns) if !ns.is_empty() => IpcMode::Container(ns.into()),
                _ => return Err(UnknownIpcMode { mode: s.into() }),
            },
        })
    }

    /// Does a scenario in this mode touch the harness's (host's) namespace?
    pub fn touches_host(&self) -> bool {
        matches!(self, IpcMode::Host | IpcMode::Local)
    }
}

#[derive(Debug, Clone)]
pub enum WaitFor {
    /// The process's exit, judged by `expect`.
    Exit(Expect),
    /// This text on its stdout.
    Stdout(Vec<u8>),
    /// A segment with this key attached (nattch >= 1): a kernel barrier.
    Attached(KeySpec),
    /// The process blocked reading its stdin, or ended: a barrier that needs
    /// no cooperation from the program (an exploration's paused writer).
    ReadingStdin,
}

/// The capabilities a process of ours keeps when the rest are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeptCapabilities {
    /// CAP_IPC_OWNER: the executor reads the table by id where the kernel
    /// does not list it (gVisor), which needs every segment readable to it.
    pub ipc_owner: bool,
    /// CAP_SETUID and CAP_SETGID: it switches its effective ids.
    pub set_ids: bool,
}

impl KeptCapabilities {
    /// The bits of a capability set (linux/capability.h numbers).
    pub fn mask(self) -> u64 {
        const CAP_SETGID: u64 = 1 << 6;
        const CAP_SETUID: u64 = 1 << 7;
        const CAP_IPC_OWNER: u64 = 1 << 15;
        let mut mask = 0;
        if self.ipc_owner {
            mask |= CAP_IPC_OWNER;
        }
        if self.set_ids {
            mask |= CAP_SETGID | CAP_SETUID;
        }
        mask
    }
}

/// A process to start.
#[derive(Debug, Clone)]
pub struct Spawn {
    pub name: String,
    pub program: Program,
    pub args: Vec<Arg>,
    pub stdin: Vec<u8>,
    pub env: BTreeMap<String, String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The capabilities it keeps (only a `program` step's executor keeps
    /// any); every other is dropped.
    pub keep: KeptCapabilities,
    /// None: run to the end and judge it; Some: leave it running.
    pub background: Option<Background>,
    /// Started under the scenario thread's tracer, held before its first
    /// system call (a system-call exploration's run; never in files).
    pub traced: bool,
    pub expect: Expect,
}

#[derive(Debug, Clone, Copy)]
pub struct Background {
    /// Close stdin after writing it (false keeps the process waiting for input).
    pub close_stdin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    Role(Role),
    Exec(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Writer,
    Reader,
    Probe,
}

/// One of the pair's two programs (what an exploration runs and the model knows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PairRole {
    Writer,
    Reader,
}

impl PairRole {
    pub fn role(self) -> Role {
        match self {
            PairRole::Writer => Role::Writer,
            PairRole::Reader => Role::Reader,
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Writer => "writer",
            Role::Reader => "reader",
            Role::Probe => "probe",
        }
    }
}

/// An argument, possibly with `{NAME}` parts replaced by a saved segment id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg(pub Vec<ArgPart>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgPart {
    Text(String),
    SavedId(String),
}

impl Arg {
    /// The argument with saved ids filled in (every name was saved by an
    /// earlier step, checked at load; a save that found no segment is the
    /// one case left, reported as such).
    pub fn render(&self, saved: &BTreeMap<String, i32>) -> Result<String, MissingSavedId> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                ArgPart::Text(t) => out.push_str(t),
                ArgPart::SavedId(name) => match saved.get(name) {
                    Some(id) => out.push_str(&id.to_string()),
                    None => return Err(MissingSavedId { name: name.clone() }),
                },
            }
        }
        Ok(out)
    }
}

/// What a process must do.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub ending: EndingExpect,
    pub stdout: StreamExpect,
    pub stderr: StreamExpect,
    /// A `program` step: stdout is the executor's report of these
    /// operations, every answer and table held against the reference model.
    pub program: Option<crate::sysv_ops::Program>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EndingExpect {
    /// Exit 0 (the default when neither exit nor signal is given).
    #[default]
    Success,
    Code(i32),
    Any,
    Nonzero,
    /// A nonzero exit (not a signal) with something on stderr.
    Refusal,
    /// Exit 0 or a refusal.
    SuccessOrRefusal,
    Signal(Signal),
}

#[derive(Debug, Clone, Default)]
pub struct StreamExpect {
    pub exact: Option<Vec<u8>>,
    pub contains: Vec<Vec<u8>>,
    pub regex: Option<regex::bytes::Regex>,
}

/// A key as scenarios write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    Ftok { file: FileName, proj_id: i32 },
    Raw(i32),
    Private,
}

impl std::fmt::Display for KeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySpec::Ftok { file, proj_id } => write!(f, "ftok:{file}:{proj_id}"),
            KeySpec::Raw(v) => write!(f, "0x{:08x}", *v as u32),
            KeySpec::Private => f.write_str("private"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SegmentsCheck {
    pub expect: Vec<SegmentExpect>,
    /// Other segments may exist besides those listed.
    pub partial: bool,
    /// Total number of segments in the namespace.
    pub count: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct SegmentExpect {
    pub key: KeySpec,
    pub absent: bool,
    pub size: Option<u64>,
    pub mode: Option<u32>,
    pub nattch: Option<u64>,
    pub dest: Option<bool>,
    pub content: Option<Vec<u8>>,
    pub prefix: Option<Vec<u8>>,
    pub count: Option<usize>,
    pub save_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    Create(FileName),
    Remove(FileName),
    Recreate(FileName),
    Link { from: FileName, to: FileName },
}

impl FileOp {
    pub fn describe(&self) -> (&'static str, String) {
        match self {
            FileOp::Create(f) => ("create", f.to_string()),
            FileOp::Remove(f) => ("remove", f.to_string()),
            FileOp::Recreate(f) => ("recreate", f.to_string()),
            FileOp::Link { from, to } => ("link", format!("{to} -> {from}")),
        }
    }
}

/// The sysctls a scenario may set: the IPC namespace's own (ipc_namespaces(7)),
/// nothing else on the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpcSysctl {
    ShmMax,
    ShmAll,
    ShmMni,
    ShmRmidForced,
    ShmNextId,
    MsgMax,
    MsgMnb,
    MsgMni,
    MsgNextId,
    Sem,
    SemNextId,
}

impl IpcSysctl {
    pub const ALL: [IpcSysctl; 11] = [
        IpcSysctl::ShmMax,
        IpcSysctl::ShmAll,
        IpcSysctl::ShmMni,
        IpcSysctl::ShmRmidForced,
        IpcSysctl::ShmNextId,
        IpcSysctl::MsgMax,
        IpcSysctl::MsgMnb,
        IpcSysctl::MsgMni,
        IpcSysctl::MsgNextId,
        IpcSysctl::Sem,
        IpcSysctl::SemNextId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            IpcSysctl::ShmMax => "kernel.shmmax",
            IpcSysctl::ShmAll => "kernel.shmall",
            IpcSysctl::ShmMni => "kernel.shmmni",
            IpcSysctl::ShmRmidForced => "kernel.shm_rmid_forced",
            IpcSysctl::ShmNextId => "kernel.shm_next_id",
            IpcSysctl::MsgMax => "kernel.msgmax",
            IpcSysctl::MsgMnb => "kernel.msgmnb",
            IpcSysctl::MsgMni => "kernel.msgmni",
            IpcSysctl::MsgNextId => "kernel.msg_next_id",
            IpcSysctl::Sem => "kernel.sem",
            IpcSysctl::SemNextId => "kernel.sem_next_id",
        }
    }

    /// Its file under /proc/sys, made from the variant's own fixed name
    /// (never from scenario input).
    pub fn proc_path(self) -> String {
        format!("/proc/sys/{}", self.name().replace('.', "/"))
    }

    pub fn parse(name: &str) -> Result<IpcSysctl, UnknownSysctl> {
        IpcSysctl::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| UnknownSysctl { name: name.into() })
    }
}

/// `[explore]`, checked.
#[derive(Debug, Clone)]
pub struct Exploration {
    pub runs: Vec<ExploreRun>,
    pub events: Vec<FileEvent>,
    pub orders: Orders,
    pub granularity: Granularity,
    /// Syscall granularity: dynamic partial-order reduction (else every order).
    pub reduction: bool,
    pub properties: BTreeSet<Property>,
    /// What the table and the key files hold before the runs start, made
    /// in this order.
    pub initial: Vec<Initial>,
}

/// One item of an exploration's initial state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initial {
    Segment(InitialSegment),
    File(FileOp),
}

/// A segment that exists before the runs start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialSegment {
    /// An ftok key (computed from the file as it is when the segment is
    /// made) or a raw one; never IPC_PRIVATE, which no run could find.
    pub key: KeySpec,
    pub size: usize,
    pub mode: u32,
    /// Text without NUL, stored followed by a NUL.
    pub content: String,
}

impl InitialSegment {
    /// What it holds up to its first NUL, as the programs print it.
    pub fn text(&self) -> &[u8] {
        self.content.as_bytes()
    }
}

/// The largest initial segment (bounded memory per order).
pub const MAX_INITIAL_SIZE: usize = MAX_STDIN_BYTES;
/// The longest initial content (it travels as one argument of the probe
/// that stores it, well under Linux's 128 KiB per argument).
pub const MAX_INITIAL_CONTENT: usize = 64 << 10;

/// What one event of an exploration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// A whole run (or a paused writer's attach, then its input).
    Process,
    /// One step of a traced run from one shared-memory system call (or
    /// standard-stream read or write) to the next, or one piece of input.
    Syscall,
}

/// A property every order of a system-call exploration must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Property {
    /// A reader never prints part of a writer's line.
    WholeLines,
    /// A run detaches each of its attachments once: no shmdt(2) of an
    /// address its shmat(2) returned fails (EINVAL: detached already).
    /// Other addresses are not judged (a language runtime may clean up a
    /// handle whose shmat failed with shmdt(0)).
    DetachAttached,
}

impl Property {
    pub fn name(self) -> &'static str {
        match self {
            Property::WholeLines => "whole-lines",
            Property::DetachAttached => "detach-attached",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExploreRun {
    pub name: String,
    pub role: PairRole,
    /// The whole input (the pieces, joined).
    pub stdin: Vec<u8>,
    /// The input as fed: one piece, or the pieces of `stdin_pieces`.
    pub pieces: Vec<Vec<u8>>,
    pub pause: bool,
    pub keep: bool,
    pub key_file: FileName,
    pub proj_id: i32,
}

#[derive(Debug, Clone)]
pub struct FileEvent {
    pub name: String,
    pub op: FileOp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orders {
    All,
    Sample { n: usize, seed: u64 },
}

/// An option of the writer/reader contract beyond the seed programs (which
/// take none). A scenario that passes one needs an implementation that has it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ImplOption {
    /// Reader: do not remove the segment (no IPC_RMID).
    Keep,
    /// Segment size other than 1024.
    Size,
    /// Key file other than ./shmfile.
    KeyFile,
    /// ftok project id other than 65.
    ProjId,
    /// An explicit key instead of ftok.
    Key,
    /// Permission bits other than 0666.
    Mode,
    /// Writer: IPC_CREAT|IPC_EXCL.
    Exclusive,
}

impl ImplOption {
    pub const ALL: [ImplOption; 7] = [
        ImplOption::Keep,
        ImplOption::Size,
        ImplOption::KeyFile,
        ImplOption::ProjId,
        ImplOption::Key,
        ImplOption::Mode,
        ImplOption::Exclusive,
    ];

    /// The command-line flag, as scenarios pass it.
    pub fn flag(self) -> &'static str {
        match self {
            ImplOption::Keep => "--keep",
            ImplOption::Size => "--size",
            ImplOption::KeyFile => "--key-file",
            ImplOption::ProjId => "--proj-id",
            ImplOption::Key => "--key",
            ImplOption::Mode => "--mode",
            ImplOption::Exclusive => "--exclusive",
        }
    }

    /// The option an argument names (`--size`, `--size=64`), if any.
    pub fn of_arg(arg: &str) -> Option<ImplOption> {
        let flag = arg.split_once('=').map_or(arg, |(f, _)| f);
        ImplOption::ALL.into_iter().find(|o| o.flag() == flag)
    }
}

/// What the scenario needs from the machine, derived from its steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Distinct IPC namespaces.
    pub namespaces: usize,
    pub other_uid: bool,
    /// A process keeps CAP_SETUID and CAP_SETGID to switch its own ids (a
    /// program step's seteuid): the backend must be able to pass them on.
    pub set_ids: bool,
    /// A step is judged by a model that starts from an empty table (a
    /// program step): its namespace must hold no segment of a program the
    /// scenario did not start (the shared isolation checks at set-up).
    pub fresh_namespace: bool,
    pub sysctl: bool,
    /// Containers: IPC modes, pods or stopping containers.
    pub containers: bool,
    pub kill: bool,
    pub drop_ns: bool,
    pub explore: bool,
    /// A wait until a process blocks reading its stdin: the harness must see
    /// the program's own process (/proc/PID/syscall), not a client that
    /// relays its input.
    pub reading_barrier: bool,
    /// Options of the implementation's writer or reader that it passes.
    pub options: BTreeSet<ImplOption>,
}

/// What a scenario may need of a backend beyond programs in one IPC
/// namespace of its own. A backend declares which it lacks
/// (`engine::backend::Features`); the order here is the order in which a
/// lack is reported when several are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// Container IPC modes, pods or stopping containers.
    Containers,
    /// Orders explored, each in a fresh IPC namespace.
    Explore,
    /// More than one IPC namespace.
    SeveralNamespaces,
    /// A wait until a process blocks reading its stdin.
    ReadingBarrier,
    /// Setting a sysctl of the scenario's namespace.
    Sysctl,
    /// Dropping a namespace.
    DropNamespace,
    /// A process run as another uid.
    OtherUid,
    /// A process that keeps CAP_SETUID and CAP_SETGID.
    SetIds,
    /// Signalling a process.
    Kill,
}

impl Needs {
    /// The features these needs ask of a backend.
    pub fn features(&self) -> BTreeSet<Feature> {
        [
            (self.containers, Feature::Containers),
            (self.explore, Feature::Explore),
            (self.namespaces > 1, Feature::SeveralNamespaces),
            (self.reading_barrier, Feature::ReadingBarrier),
            (self.sysctl, Feature::Sysctl),
            (self.drop_ns, Feature::DropNamespace),
            (self.other_uid, Feature::OtherUid),
            (self.set_ids, Feature::SetIds),
            (self.kill, Feature::Kill),
        ]
        .into_iter()
        .filter_map(|(needed, f)| needed.then_some(f))
        .collect()
    }
}

impl Scenario {
    pub fn parse(file: &Path, text: &str) -> Result<Scenario, LoadError> {
        if text.len() > 1 << 20 {
            return Err(LoadError::at(
                file,
                text,
                0,
                "scenario file is larger than 1 MiB".into(),
            ));
        }
        let raw: wire::Scenario = wire::from_toml(file, text)?;
        lower(raw).map_err(|(offset, msg)| LoadError::at(file, text, offset, msg))
    }

    pub fn load(file: &Path) -> Result<Scenario, LoadError> {
        let text = discover::read_bounded(file)?;
        Self::parse(file, &text)
    }

    pub fn steps(&self) -> &[Step] {
        match &self.body {
            Body::Steps(s) => s,
            Body::Explore(_) => &[],
        }
    }

    /// Follow `share` links to the namespace that is really created.
    pub fn resolve_ns<'a>(&'a self, name: &'a str) -> &'a str {
        resolve_ns(&self.namespaces, name)
    }

    pub fn needs(&self) -> Needs {
        let steps = self.steps();
        let mut used: BTreeSet<&str> = BTreeSet::new();
        used.insert(MAIN_NS);
        for s in steps {
            used.insert(&s.ns);
        }
        Needs {
            namespaces: used.len(),
            other_uid: steps
                .iter()
                .any(|s| matches!(&s.action, Action::Spawn(sp) if sp.uid.is_some() || sp.gid.is_some())),
            set_ids: steps
                .iter()
                .any(|s| matches!(&s.action, Action::Spawn(sp) if sp.keep.set_ids)),
            fresh_namespace: steps
                .iter()
                .any(|s| matches!(&s.action, Action::Spawn(sp) if sp.expect.program.is_some())),
            sysctl: steps.iter().any(|s| matches!(s.action, Action::Sysctl { .. })),
            containers: self
                .namespaces
                .values()
                .any(|d| d.docker.is_some() || d.pod.is_some() || d.expect_error.is_some())
                || steps.iter().any(|s| matches!(s.action, Action::Stop { .. })),
            kill: steps.iter().any(|s| matches!(s.action, Action::Kill { .. })),
            drop_ns: steps.iter().any(|s| matches!(s.action, Action::DropNs { .. })),
            explore: matches!(self.body, Body::Explore(_)),
            reading_barrier: steps.iter().any(|s| {
                matches!(
                    s.action,
                    Action::Wait {
                        until: WaitFor::ReadingStdin,
                        ..
                    }
                )
            }),
            options: self.options(),
        }
    }

    /// The writer/reader options the scenario passes (an exploration's runs
    /// pass them as `explore::spawn_of` builds their command lines).
    fn options(&self) -> BTreeSet<ImplOption> {
        let mut out = BTreeSet::new();
        match &self.body {
            Body::Steps(steps) => {
                for s in steps {
                    if let Action::Spawn(sp) = &s.action {
                        if matches!(sp.program, Program::Role(Role::Writer | Role::Reader)) {
                            for arg in &sp.args {
                                if let Some(ArgPart::Text(t)) = arg.0.first() {
                                    out.extend(ImplOption::of_arg(t));
                                }
                            }
                        }
                    }
                }
            }
            Body::Explore(ex) => {
                for r in &ex.runs {
                    if r.keep {
                        out.insert(ImplOption::Keep);
                    }
                    if r.key_file.as_str() != "shmfile" {
                        out.insert(ImplOption::KeyFile);
                    }
                    if r.proj_id != 65 {
                        out.insert(ImplOption::ProjId);
                    }
                }
            }
        }
        out
    }
}

fn resolve_ns<'a>(namespaces: &'a BTreeMap<String, NamespaceDecl>, mut name: &'a str) -> &'a str {
    for _ in 0..=namespaces.len() {
        match namespaces.get(name).and_then(|d| d.share.as_deref()) {
            Some(t) => name = t,
            None => break,
        }
    }
    name
}

type Lowered<T> = Result<T, (usize, String)>;

fn at<T>(offset: usize, r: Result<T, impl std::fmt::Display>) -> Lowered<T> {
    r.map_err(|e| (offset, e.to_string()))
}

/// Decode scenario bytes, refusing more than `limit` before allocating them.
pub fn decode_bytes(b: &wire::Bytes, limit: usize) -> Result<Vec<u8>, BytesError> {
    match b {
        wire::Bytes::Text(s) => {
            if s.len() > limit {
                return Err(BytesError::TooLong { bytes: s.len(), limit });
            }
            Ok(s.as_bytes().to_vec())
        }
        wire::Bytes::Hex { hex } => {
            let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            if digits.len() % 2 != 0 {
                return Err(BytesError::OddHex { hex: hex.clone() });
            }
            if digits.len() / 2 > limit {
                return Err(BytesError::TooLong {
                    bytes: digits.len() / 2,
                    limit,
                });
            }
            digits
                .chunks(2)
                .map(|p| {
                    let hi = (p[0] as char).to_digit(16);
                    let lo = (p[1] as char).to_digit(16);
                    match (hi, lo) {
                        (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                        _ => Err(BytesError::NonHexDigit {
                            hex: hex.clone(),
                            pair: String::from_utf8_lossy(p).into_owned(),
                        }),
                    }
                })
                .collect()
        }
        wire::Bytes::Repeat { repeat, count, suffix } => {
            let total = repeat
                .len()
                .checked_mul(*count)
                .and_then(|n| n.checked_add(suffix.len()))
                .filter(|&n| n <= limit)
                .ok_or(BytesError::RepeatTooLong {
                    count: *count,
                    repeat: repeat.len(),
                    suffix: suffix.len(),
                    limit,
                })?;
            let mut v = Vec::with_capacity(total);
            for _ in 0..*count {
                v.extend_from_slice(repeat.as_bytes());
            }
            v.extend_from_slice(suffix.as_bytes());
            Ok(v)
        }
    }
}

pub fn parse_key_spec(s: &str) -> Result<KeySpec, KeyError> {
    if s == "private" {
        return Ok(KeySpec::Private);
    }
    if let Some(rest) = s.strip_prefix("ftok:") {
        let (file, proj) = rest
            .rsplit_once(':')
            .ok_or_else(|| KeyError::FtokForm { key: s.into() })?;
        let proj_id = proj.parse().map_err(|_| KeyError::ProjId {
            key: s.into(),
            proj: proj.into(),
        })?;
        let file = FileName::parse(file).map_err(|source| KeyError::File { key: s.into(), source })?;
        return Ok(KeySpec::Ftok { file, proj_id });
    }
    let digits = s.strip_prefix("0x").ok_or_else(|| KeyError::Form { key: s.into() })?;
    u32::from_str_radix(digits, 16)
        .map(|v| KeySpec::Raw(v as i32))
        .map_err(|source| KeyError::Hex { key: s.into(), source })
}

pub fn parse_signal(name: &str) -> Result<Signal, UnknownSignal> {
    let full = if name.starts_with("SIG") {
        name.to_string()
    } else {
        format!("SIG{name}")
    };
    full.parse().map_err(|_| UnknownSignal { name: name.into() })
}

fn parse_timeout(ms: Option<u64>, what: &str) -> Result<Option<Duration>, TimeoutError> {
    match ms {
        None => Ok(None),
        Some(0) => Err(TimeoutError::Zero { what: what.into() }),
        Some(ms) if Duration::from_millis(ms) > MAX_TIMEOUT => Err(TimeoutError::TooLong { what: what.into(), ms }),
        Some(ms) => Ok(Some(Duration::from_millis(ms))),
    }
}

fn parse_mode(m: &str) -> Result<u32, BadMode> {
    match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
        Ok(v) if v <= 0o777 => Ok(v),
        _ => Err(BadMode { mode: m.into() }),
    }
}

fn parse_name(kind: &'static str, name: &str) -> Result<(), BadName> {
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c)) {
        return Err(BadName {
            kind,
            name: name.into(),
        });
    }
    Ok(())
}

fn parse_args(args: &[String], saved: &BTreeSet<String>) -> Result<Vec<Arg>, UnsavedId> {
    args.iter()
        .map(|arg| {
            let mut parts = Vec::new();
            let mut rest = arg.as_str();
            while let Some(open) = rest.find('{') {
                let Some(close) = rest[open..].find('}') else { break };
                let name = &rest[open + 1..open + close];
                if !saved.contains(name) {
                    return Err(UnsavedId {
                        arg: arg.clone(),
                        name: name.into(),
                    });
                }
                if open > 0 {
                    parts.push(ArgPart::Text(rest[..open].to_string()));
                }
                parts.push(ArgPart::SavedId(name.to_string()));
                rest = &rest[open + close + 1..];
            }
            if !rest.is_empty() || parts.is_empty() {
                parts.push(ArgPart::Text(rest.to_string()));
            }
            Ok(Arg(parts))
        })
        .collect()
}

fn lower_stream(
    exact: &Option<wire::Bytes>,
    contains: &[String],
    regex: &Option<String>,
    stream: &'static str,
) -> Result<StreamExpect, ExpectError> {
    Ok(StreamExpect {
        exact: exact
            .as_ref()
            .map(|b| decode_bytes(b, MAX_EXPECT_BYTES).map_err(|source| ExpectError::Exact { stream, source }))
            .transpose()?,
        contains: contains
            .iter()
            .map(|c| {
                if c.len() > MAX_EXPECT_BYTES {
                    Err(ExpectError::ContainsTooLong { stream })
                } else {
                    Ok(c.as_bytes().to_vec())
                }
            })
            .collect::<Result<_, _>>()?,
        regex: regex
            .as_ref()
            .map(|re| {
                regex::bytes::RegexBuilder::new(re)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|source| ExpectError::Regex { stream, source })
            })
            .transpose()?,
    })
}

fn lower_expect(e: &Option<wire::Expect>) -> Result<Expect, ExpectError> {
    let Some(e) = e else { return Ok(Expect::default()) };
    let ending = match (&e.signal, &e.exit) {
        (Some(_), Some(_)) => return Err(ExpectError::ExitAndSignal),
        (Some(sig), None) => EndingExpect::Signal(parse_signal(sig).map_err(ExpectError::Signal)?),
        (None, Some(wire::ExitExpect::Code(c))) => EndingExpect::Code(*c),
        (None, Some(wire::ExitExpect::Word(wire::ExitWord::Any))) => EndingExpect::Any,
        (None, Some(wire::ExitExpect::Word(wire::ExitWord::Nonzero))) => EndingExpect::Nonzero,
        (None, Some(wire::ExitExpect::Word(wire::ExitWord::Refusal))) => EndingExpect::Refusal,
        (None, Some(wire::ExitExpect::Word(wire::ExitWord::SuccessOrRefusal))) => EndingExpect::SuccessOrRefusal,
        (None, None) => EndingExpect::Success,
    };
    Ok(Expect {
        ending,
        stdout: lower_stream(&e.stdout, &e.stdout_contains, &e.stdout_regex, "stdout")?,
        stderr: lower_stream(&e.stderr, &e.stderr_contains, &e.stderr_regex, "stderr")?,
        program: None,
    })
}

fn lower_segment(s: &wire::SegmentExpect, saved: &mut BTreeSet<String>) -> Result<SegmentExpect, SegmentError> {
    if let Some(name) = &s.save_id {
        parse_name("save_id", name)?;
        saved.insert(name.clone());
    }
    let content = s
        .content
        .as_ref()
        .map(|b| decode_bytes(b, MAX_EXPECT_BYTES).map_err(SegmentError::Content))
        .transpose()?;
    let prefix = s
        .prefix
        .as_ref()
        .map(|b| decode_bytes(b, MAX_EXPECT_BYTES).map_err(SegmentError::Prefix))
        .transpose()?;
    if s.absent
        && (s.size.is_some()
            || s.mode.is_some()
            || s.nattch.is_some()
            || s.dest.is_some()
            || content.is_some()
            || prefix.is_some()
            || s.count.is_some()
            || s.save_id.is_some())
    {
        return Err(SegmentError::AbsentWithOthers { key: s.key.clone() });
    }
    Ok(SegmentExpect {
        key: parse_key_spec(&s.key)?,
        absent: s.absent,
        size: s.size,
        mode: s.mode.as_deref().map(parse_mode).transpose()?,
        nattch: s.nattch,
        dest: s.dest,
        content,
        prefix,
        count: s.count,
        save_id: s.save_id.clone(),
    })
}

/// Every action field that is set on a wire step, by name.
fn actions_set(step: &wire::Step) -> Vec<&'static str> {
    [
        (step.run.is_some(), "run"),
        (step.exec.is_some(), "exec"),
        (step.feed.is_some(), "feed"),
        (step.wait.is_some(), "wait"),
        (step.kill.is_some(), "kill"),
        (step.segments.is_some(), "segments"),
        (step.create_file.is_some(), "create_file"),
        (step.remove_file.is_some(), "remove_file"),
        (step.recreate_file.is_some(), "recreate_file"),
        (step.link_file.is_some(), "link_file"),
        (step.sysctl.is_some(), "sysctl"),
        (step.stop.is_some(), "stop"),
        (step.collide_files.is_some(), "collide_files"),
        (step.drop_ns.is_some(), "drop_ns"),
        (step.shmem_mark.is_some(), "shmem_mark"),
        (step.shmem_freed.is_some(), "shmem_freed"),
        (step.program.is_some(), "program"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .chain(kinds::set_in(step))
    .collect()
}

/// Every action a step may set, as files name them.
pub fn action_names() -> Vec<&'static str> {
    [
        "run",
        "exec",
        "feed",
        "wait",
        "kill",
        "segments",
        "create_file",
        "remove_file",
        "recreate_file",
        "link_file",
        "collide_files",
        "sysctl",
        "stop",
        "drop_ns",
        "shmem_mark",
        "shmem_freed",
        "program",
    ]
    .into_iter()
    .chain(kinds::KEYS.iter().copied())
    .collect()
}

/// What the load-time walk over the steps has seen so far.
#[derive(Default)]
struct Seen {
    procs: BTreeSet<String>,
    background: BTreeSet<String>,
    saved_ids: BTreeSet<String>,
    marks: BTreeSet<String>,
    dropped: BTreeSet<String>,
    stopped: BTreeSet<String>,
    /// Namespaces where a process has run (a program step must come first).
    ran_in: BTreeSet<String>,
}

/// The `[namespaces]` table as the file has it.
type WireNamespaces = BTreeMap<String, Spanned<wire::NamespaceDecl>>;

/// The declared namespaces, each checked alone, then as a whole: every
/// namespace shared or joined exists, and shares form no cycle.
fn lower_namespaces(raw: &WireNamespaces) -> Lowered<BTreeMap<String, NamespaceDecl>> {
    if raw.len() > MAX_NAMESPACES {
        return Err((0, format!("namespaces: more than {MAX_NAMESPACES}")));
    }
    let mut namespaces = BTreeMap::new();
    for (name, decl) in raw {
        let off = decl.span().start;
        let d = decl.get_ref();
        at(off, parse_name("namespace", name))?;
        if name == MAIN_NS {
            return Err((off, "namespace \"main\" always exists; declare only the others".into()));
        }
        let docker = d
            .docker
            .as_deref()
            .map(|m| IpcMode::parse(m).map_err(|e| (off, format!("namespace {name:?}: {e}"))))
            .transpose()?;
        if docker.is_some() && d.share.is_some() {
            return Err((
                off,
                format!("namespace {name:?}: use docker = \"container:NS\" instead of share"),
            ));
        }
        let pod = match &d.pod {
            Some(p) => {
                at(off, parse_name("pod", p))?;
                if d.share.is_some() || docker.is_some() {
                    return Err((
                        off,
                        format!("namespace {name:?}: a pod member has its pod's IPC namespace: drop share and docker"),
                    ));
                }
                Some(p.clone())
            }
            None => None,
        };
        namespaces.insert(
            name.clone(),
            NamespaceDecl {
                share: d.share.clone(),
                docker,
                pod,
                expect_error: d.expect_error.clone(),
            },
        );
    }
    check_namespace_links(raw, &namespaces)?;
    Ok(namespaces)
}

fn check_namespace_links(raw: &WireNamespaces, namespaces: &BTreeMap<String, NamespaceDecl>) -> Lowered<()> {
    for (name, decl) in raw {
        let off = decl.span().start;
        let d = &namespaces[name];
        if let Some(t) = &d.share {
            if t != MAIN_NS && !namespaces.contains_key(t) {
                return Err((off, format!("namespace {name:?} shares unknown namespace {t:?}")));
            }
        }
        if let Some(IpcMode::Container(t)) = &d.docker {
            if t != MAIN_NS && !namespaces.contains_key(t) {
                return Err((off, format!("namespace {name:?} joins unknown namespace {t:?}")));
            }
        }
        // A cycle of shares would never resolve.
        let mut cur = name.as_str();
        for _ in 0..=namespaces.len() {
            match namespaces.get(cur).and_then(|d| d.share.as_deref()) {
                Some(t) => cur = t,
                None => break,
            }
        }
        if namespaces.get(cur).is_some_and(|d| d.share.is_some()) {
            return Err((off, format!("namespace {name:?}: shares form a cycle")));
        }
    }
    Ok(())
}

fn lower(raw: wire::Scenario) -> Lowered<Scenario> {
    if raw.description.trim().is_empty() {
        return Err((0, "description: say in one paragraph what the scenario shows".into()));
    }
    let files_at = raw.files.span().start;
    if raw.files.get_ref().len() > MAX_FILES {
        return Err((files_at, format!("files: more than {MAX_FILES} files")));
    }
    let files = raw
        .files
        .get_ref()
        .iter()
        .map(|f| FileName::parse(f).map_err(|e| (files_at, format!("files: {e}"))))
        .collect::<Lowered<Vec<_>>>()?;
    let namespaces = lower_namespaces(&raw.namespaces)?;
    let timeout = at(0, parse_timeout(raw.timeout_ms, "scenario"))?;
    let filesystem = match &raw.filesystem {
        None => DirFilesystem::RunDir,
        Some(f) if f.get_ref() == "tmpfs" => DirFilesystem::Tmpfs,
        Some(f) => {
            return Err((
                f.span().start,
                format!("filesystem: expected \"tmpfs\", found {:?}", f.get_ref()),
            ))
        }
    };
    let body = match (&raw.explore, raw.steps.is_empty()) {
        (Some(_), false) => return Err((0, "a scenario has either [[step]]s or [explore], not both".into())),
        (Some(ex), true) => Body::Explore(lower_explore(ex, &files)?),
        (None, true) => return Err((0, "expected at least one [[step]] (or an [explore] table)".into())),
        (None, false) => {
            if raw.steps.len() > MAX_STEPS {
                return Err((0, format!("more than {MAX_STEPS} steps")));
            }
            let mut seen = Seen::default();
            let mut steps = Vec::new();
            for (i, spanned) in raw.steps.iter().enumerate() {
                steps.push(lower_step(i + 1, spanned, &namespaces, &mut seen)?);
            }
            Body::Steps(steps)
        }
    };
    Ok(Scenario {
        description: raw.description,
        tags: raw.tags,
        reference: raw.reference,
        files,
        namespaces,
        timeout,
        filesystem,
        body,
    })
}

/// A step being lowered: the step, where it is (for its errors) and the
/// namespaces the scenario declares.
#[derive(Clone, Copy)]
struct StepCx<'a> {
    /// 1-based position in the scenario.
    n: usize,
    /// Where the step's table starts in the file.
    off: usize,
    step: &'a wire::Step,
    namespaces: &'a BTreeMap<String, NamespaceDecl>,
}

impl StepCx<'_> {
    /// An error of this step: `step N: ...`, at the step's table.
    fn fail(&self, m: impl std::fmt::Display) -> (usize, String) {
        (self.off, format!("step {}: {m}", self.n))
    }

    /// Does the step start a process of the scenario's (run or exec)?
    fn spawns(&self) -> bool {
        self.step.run.is_some() || self.step.exec.is_some()
    }
}

fn lower_step(
    n: usize,
    spanned: &Spanned<wire::Step>,
    namespaces: &BTreeMap<String, NamespaceDecl>,
    seen: &mut Seen,
) -> Lowered<Step> {
    let cx = StepCx {
        n,
        off: spanned.span().start,
        step: spanned.get_ref(),
        namespaces,
    };
    let step = cx.step;
    check_one_action(&cx)?;
    let ns = step_namespace(&cx, seen)?;
    check_fields_apply(&cx)?;
    let timeout = at(cx.off, parse_timeout(step.timeout_ms, &format!("step {n}")))?;
    let stdin = step
        .stdin
        .as_ref()
        .map(|b| decode_bytes(b, MAX_STDIN_BYTES).map_err(|e| cx.fail(format!("stdin: {e}"))))
        .transpose()?;
    let expect = lower_expect(&step.expect).map_err(|e| cx.fail(e))?;
    let action = lower_action(&cx, &ns, stdin, expect, seen)?;
    Ok(Step { n, ns, timeout, action })
}

/// The step sets exactly one action field.
fn check_one_action(cx: &StepCx) -> Lowered<()> {
    let set = actions_set(cx.step);
    if set.len() != 1 {
        return Err(cx.fail(format!(
            "expected exactly one action ({}), found {}",
            action_names().join(", "),
            if set.is_empty() {
                "none".to_string()
            } else {
                set.join(" and ")
            }
        )));
    }
    Ok(())
}

/// The namespace the step runs in (its `share` resolved): every namespace
/// the step names is declared, and the one it runs in was not dropped.
fn step_namespace(cx: &StepCx, seen: &Seen) -> Lowered<String> {
    let step = cx.step;
    let declared_ns = step.ns.clone().unwrap_or_else(|| MAIN_NS.into());
    let known_ns = |ns: &str| ns == MAIN_NS || cx.namespaces.contains_key(ns);
    for ns in [
        Some(declared_ns.as_str()),
        step.stop.as_deref(),
        step.drop_ns.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        if !known_ns(ns) {
            return Err(cx.fail(format!("namespace {ns:?} is not declared in [namespaces]")));
        }
    }
    let ns = resolve_ns(cx.namespaces, &declared_ns).to_string();
    if seen.dropped.contains(&ns) {
        return Err(cx.fail(format!("namespace {declared_ns:?} was dropped by an earlier step")));
    }
    Ok(ns)
}

/// A field that belongs to some kinds of step is set only on a step of
/// those kinds.
fn check_fields_apply(cx: &StepCx) -> Lowered<()> {
    let step = cx.step;
    let spawns = cx.spawns();
    if !spawns {
        for (field, is_set) in [
            ("background", step.background),
            ("args", !step.args.is_empty()),
            ("uid", step.uid.is_some()),
            ("gid", step.gid.is_some()),
            ("env", !step.env.is_empty()),
            ("name", step.name.is_some()),
        ] {
            if is_set {
                return Err(cx.fail(format!("'{field}' only applies to run and exec steps")));
            }
        }
    }
    let only = |field: &str, is_set: bool, applies: &str| -> Lowered<()> {
        if is_set {
            Err(cx.fail(format!("'{field}' only applies to {applies}")))
        } else {
            Ok(())
        }
    };
    only(
        "until_stdout",
        step.until_stdout.is_some() && step.wait.is_none(),
        "wait",
    )?;
    only(
        "until_attached",
        step.until_attached.is_some() && step.wait.is_none(),
        "wait",
    )?;
    only("until_reading", step.until_reading && step.wait.is_none(), "wait")?;
    only("signal", step.signal.is_some() && step.kill.is_none(), "kill")?;
    only("partial", step.partial && step.segments.is_none(), "segments")?;
    only("count", step.count.is_some() && step.segments.is_none(), "segments")?;
    only(
        "close_stdin",
        step.close_stdin.is_some() && !(step.feed.is_some() || step.background),
        "feed and background run/exec steps",
    )?;
    only(
        "stdin",
        step.stdin.is_some() && !(spawns || step.feed.is_some()),
        "run, exec and feed",
    )?;
    only(
        "expect",
        step.expect.is_some() && !(spawns || step.wait.is_some() || step.kill.is_some()),
        "run, exec, wait and kill",
    )
}

/// The step's one action, checked against what earlier steps did (and
/// recorded in `seen` for later ones).
fn lower_action(cx: &StepCx, ns: &str, stdin: Option<Vec<u8>>, expect: Expect, seen: &mut Seen) -> Lowered<Action> {
    let step = cx.step;
    let file = |f: &str| FileName::parse(f).map_err(|e| cx.fail(e));
    if let Some(spawn) = kinds::lower(step, cx.n, &seen.saved_ids) {
        let spawn = spawn.map_err(|e| cx.fail(e))?;
        if !seen.procs.insert(spawn.name.clone()) {
            return Err(cx.fail(format!("process name {:?} is already used", spawn.name)));
        }
        seen.ran_in.insert(ns.to_string());
        return Ok(Action::Spawn(spawn));
    }
    Ok(if let Some(ops) = &step.program {
        Action::Spawn(program_step::lower(cx.n, ops, cx.off, ns, cx.namespaces.get(ns), seen)?)
    } else if cx.spawns() {
        Action::Spawn(lower_spawn(cx, ns, stdin, expect, seen)?)
    } else if let Some(proc) = &step.feed {
        known_proc(cx, proc, seen)?;
        Action::Feed {
            proc: proc.clone(),
            data: stdin.ok_or_else(|| cx.fail("feed needs stdin"))?,
            close: step.close_stdin.unwrap_or(true),
        }
    } else if let Some(proc) = &step.wait {
        lower_wait(cx, proc, expect, seen)?
    } else if let Some(proc) = &step.kill {
        known_proc(cx, proc, seen)?;
        seen.background.remove(proc);
        let signal = parse_signal(step.signal.as_deref().unwrap_or("SIGKILL")).map_err(|e| cx.fail(e))?;
        Action::Kill {
            proc: proc.clone(),
            signal,
            expect,
        }
    } else if let Some(segs) = &step.segments {
        Action::Segments(SegmentsCheck {
            expect: segs
                .iter()
                .map(|s| lower_segment(s, &mut seen.saved_ids))
                .collect::<Result<_, _>>()
                .map_err(|e| cx.fail(e))?,
            partial: step.partial,
            count: step.count,
        })
    } else if let Some(f) = &step.create_file {
        Action::File(FileOp::Create(file(f)?))
    } else if let Some(f) = &step.remove_file {
        Action::File(FileOp::Remove(file(f)?))
    } else if let Some(f) = &step.recreate_file {
        Action::File(FileOp::Recreate(file(f)?))
    } else if let Some(l) = &step.link_file {
        Action::File(FileOp::Link {
            from: file(&l.from)?,
            to: file(&l.to)?,
        })
    } else if let Some([a, b]) = &step.collide_files {
        let (a, b) = (file(a)?, file(b)?);
        if a == b {
            return Err(cx.fail("collide_files needs two different names"));
        }
        Action::CollideFiles { a, b }
    } else if let Some(s) = &step.sysctl {
        lower_sysctl(cx, s)?
    } else {
        lower_namespace_or_shmem(cx, seen)?
    })
}

/// A run or exec step: the process it starts (named, its name new), and
/// it in `seen` (a background one among those later steps may use).
fn lower_spawn(cx: &StepCx, ns: &str, stdin: Option<Vec<u8>>, expect: Expect, seen: &mut Seen) -> Lowered<Spawn> {
    let step = cx.step;
    seen.ran_in.insert(ns.to_string());
    let program = spawn_program(cx)?;
    let name = step.name.clone().unwrap_or_else(|| default_proc_name(&program, cx.n));
    parse_name("process", &name).map_err(|e| cx.fail(e))?;
    if !seen.procs.insert(name.clone()) {
        return Err(cx.fail(format!("process name {name:?} is already used")));
    }
    if step.args.iter().any(|a| a.contains('\0')) {
        return Err(cx.fail("an argument has a NUL byte"));
    }
    for (k, v) in &step.env {
        if k.is_empty() || k.contains(['=', '\0']) || v.contains('\0') {
            return Err(cx.fail(format!("env: {k:?} is not a valid variable")));
        }
    }
    let background = if step.background {
        if step.expect.is_some() {
            return Err(cx.fail("a background process's expectations go on the step that waits for it or kills it"));
        }
        seen.background.insert(name.clone());
        Some(Background {
            close_stdin: step.close_stdin.unwrap_or(stdin.is_some()),
        })
    } else {
        None
    };
    Ok(Spawn {
        traced: false,
        name,
        program,
        args: parse_args(&step.args, &seen.saved_ids).map_err(|e| cx.fail(e))?,
        stdin: stdin.unwrap_or_default(),
        env: step.env.clone(),
        uid: step.uid,
        gid: step.gid,
        keep: KeptCapabilities::default(),
        background,
        expect,
    })
}

/// What a run or exec step starts: a role of the implementation, or a
/// command.
fn spawn_program(cx: &StepCx) -> Lowered<Program> {
    Ok(match (&cx.step.run, &cx.step.exec) {
        (Some(role), _) => Program::Role(match role.as_str() {
            "writer" => Role::Writer,
            "reader" => Role::Reader,
            "probe" => Role::Probe,
            other => return Err(cx.fail(format!("unknown role {other:?}, expected writer, reader or probe"))),
        }),
        (_, Some(argv)) => {
            if argv.is_empty() || argv[0].is_empty() {
                return Err(cx.fail("exec needs a command"));
            }
            if argv.iter().any(|a| a.contains('\0')) {
                return Err(cx.fail("exec: an argument has a NUL byte"));
            }
            Program::Exec(argv.clone())
        }
        _ => return Err(cx.fail("run or exec")),
    })
}

/// `proc` names a background process an earlier step started (and no
/// step has waited for its exit or killed it since).
fn known_proc(cx: &StepCx, proc: &str, seen: &Seen) -> Lowered<()> {
    if seen.background.contains(proc) {
        Ok(())
    } else {
        Err(cx.fail(format!("no background process named {proc:?} started before this step")))
    }
}

/// A wait step: for the process's exit (judged by `expect`; the process is
/// gone for later steps), or for one of the barriers `until_*` names.
fn lower_wait(cx: &StepCx, proc: &str, expect: Expect, seen: &mut Seen) -> Lowered<Action> {
    let step = cx.step;
    known_proc(cx, proc, seen)?;
    let untils = usize::from(step.until_stdout.is_some())
        + usize::from(step.until_attached.is_some())
        + usize::from(step.until_reading);
    if untils > 1 {
        return Err(cx.fail("give one of until_stdout, until_attached, until_reading"));
    }
    if untils == 1 && step.expect.is_some() {
        return Err(cx.fail("a wait for output, attachment or reading has no exit to check; drop expect or the until"));
    }
    let until = match (&step.until_stdout, &step.until_attached) {
        (None, None) if step.until_reading => WaitFor::ReadingStdin,
        (Some(_), Some(_)) => return Err(cx.fail("give until_stdout or until_attached, not both")),
        (Some(text), None) => {
            if text.is_empty() || text.len() > 4096 {
                return Err(cx.fail("until_stdout: expected 1 to 4096 bytes of text"));
            }
            WaitFor::Stdout(text.as_bytes().to_vec())
        }
        (None, Some(k)) => WaitFor::Attached(parse_key_spec(k).map_err(|e| cx.fail(format!("until_attached: {e}")))?),
        (None, None) => {
            // After its exit, nothing more can be done with the process.
            seen.background.remove(proc);
            WaitFor::Exit(expect)
        }
    };
    Ok(Action::Wait {
        proc: proc.to_string(),
        until,
    })
}

/// A sysctl step: an IPC namespace sysctl set to one or more numbers.
fn lower_sysctl(cx: &StepCx, s: &wire::Sysctl) -> Lowered<Action> {
    let sysctl = IpcSysctl::parse(&s.name).map_err(|e| cx.fail(e))?;
    let value = s.value.trim();
    if value.is_empty() || value.len() > 64 || !value.chars().all(|c| c.is_ascii_digit() || c == ' ' || c == '\t') {
        return Err(cx.fail(format!(
            "sysctl {}: value {:?} is not one or more numbers",
            s.name, s.value
        )));
    }
    Ok(Action::Sysctl {
        sysctl,
        value: value.to_string(),
    })
}

/// A stop, drop_ns, shmem_mark or shmem_freed step, checked against the
/// namespaces stopped and dropped and the marks made by earlier steps.
fn lower_namespace_or_shmem(cx: &StepCx, seen: &mut Seen) -> Lowered<Action> {
    let step = cx.step;
    Ok(if let Some(target) = &step.stop {
        if !seen.stopped.insert(target.clone()) {
            return Err(cx.fail(format!("namespace {target:?} was already stopped")));
        }
        Action::Stop { ns: target.clone() }
    } else if let Some(target) = &step.drop_ns {
        if target == MAIN_NS {
            return Err(cx.fail("the main namespace cannot be dropped"));
        }
        let real = resolve_ns(cx.namespaces, target).to_string();
        if real == MAIN_NS || !seen.dropped.insert(real) {
            return Err(cx.fail(format!(
                "namespace {target:?} cannot be dropped (main, or dropped already)"
            )));
        }
        Action::DropNs { ns: target.clone() }
    } else if let Some(m) = &step.shmem_mark {
        parse_name("mark", m).map_err(|e| cx.fail(e))?;
        seen.marks.insert(m.clone());
        Action::ShmemMark { mark: m.clone() }
    } else if let Some(f) = &step.shmem_freed {
        if !seen.marks.contains(&f.since) {
            return Err(cx.fail(format!("no earlier shmem_mark named {:?}", f.since)));
        }
        Action::ShmemFreed {
            since: f.since.clone(),
            at_least_kib: f.at_least_kib,
        }
    } else {
        return Err(cx.fail("no action"));
    })
}

/// One run of an exploration (its name not among `names`, which it joins).
fn lower_explore_run(
    r: &Spanned<wire::ExploreRun>,
    granularity: Granularity,
    names: &mut BTreeSet<String>,
) -> Lowered<ExploreRun> {
    let roff = r.span().start;
    let r = r.get_ref();
    let fail = |m: String| (roff, format!("explore: run {:?}: {m}", r.name));
    if r.name.contains([',', ':']) || !names.insert(r.name.clone()) {
        return Err(fail("the name is repeated or has ',' or ':'".into()));
    }
    parse_name("run", &r.name).map_err(|e| fail(e.to_string()))?;
    let role = match r.role.as_str() {
        "writer" => PairRole::Writer,
        "reader" if r.pause || r.stdin.is_some() => {
            return Err(fail("a reader takes no stdin and cannot pause".into()))
        }
        "reader" => PairRole::Reader,
        other => return Err(fail(format!("unknown role {other:?}, expected writer or reader"))),
    };
    if role == PairRole::Writer && r.keep {
        return Err(fail("keep applies to readers".into()));
    }
    let pieces: Vec<Vec<u8>> = match (&r.stdin, &r.stdin_pieces) {
        (Some(_), Some(_)) => return Err(fail("give stdin or stdin_pieces, not both".into())),
        (_, Some(_)) if role == PairRole::Reader => return Err(fail("a reader takes no stdin".into())),
        (_, Some(_)) if granularity != Granularity::Syscall => {
            return Err(fail("stdin_pieces needs granularity = \"syscall\"".into()))
        }
        (_, Some(list)) if list.is_empty() || list.len() > 16 => {
            return Err(fail("stdin_pieces: expected 1 to 16 pieces".into()))
        }
        (_, Some(list)) => list
            .iter()
            .map(|b| decode_bytes(b, MAX_STDIN_BYTES).map_err(|e| fail(format!("stdin_pieces: {e}"))))
            .collect::<Result<_, _>>()?,
        (Some(b), None) => vec![decode_bytes(b, MAX_STDIN_BYTES).map_err(|e| fail(format!("stdin: {e}")))?],
        (None, None) => vec![Vec::new()],
    };
    if granularity == Granularity::Syscall && r.pause {
        return Err(fail(
            "pause is for granularity \"process\"; at \"syscall\" every read is an event".into(),
        ));
    }
    Ok(ExploreRun {
        name: r.name.clone(),
        role,
        stdin: pieces.concat(),
        pieces,
        pause: r.pause,
        keep: r.keep,
        key_file: FileName::parse(r.key_file.as_deref().unwrap_or("shmfile")).map_err(|e| fail(e.to_string()))?,
        proj_id: r.proj_id.unwrap_or(65),
    })
}

/// One key-file event of an exploration (its name not among `names`,
/// which it joins).
/// The key-file operations an exploration's event or initial item names
/// (`recreate_file`, `remove_file`, `create_file`), each file checked.
fn file_ops(
    recreate: &Option<String>,
    remove: &Option<String>,
    create: &Option<String>,
) -> Result<Vec<FileOp>, FileNameError> {
    [
        recreate.as_deref().map(|f| FileName::parse(f).map(FileOp::Recreate)),
        remove.as_deref().map(|f| FileName::parse(f).map(FileOp::Remove)),
        create.as_deref().map(|f| FileName::parse(f).map(FileOp::Create)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn lower_file_event(e: &Spanned<wire::ExploreEvent>, names: &mut BTreeSet<String>) -> Lowered<FileEvent> {
    let eoff = e.span().start;
    let e = e.get_ref();
    let fail = |m: String| (eoff, format!("explore: event {:?}: {m}", e.name));
    let ops = file_ops(&e.recreate_file, &e.remove_file, &e.create_file).map_err(|e| fail(e.to_string()))?;
    if ops.len() != 1 || e.name.contains([',', ':']) || !names.insert(e.name.clone()) {
        return Err(fail(
            "needs a unique name (no ',' or ':') and exactly one of recreate_file, remove_file, create_file".into(),
        ));
    }
    parse_name("event", &e.name).map_err(|e| fail(e.to_string()))?;
    Ok(FileEvent {
        name: e.name.clone(),
        op: ops.into_iter().next().ok_or_else(|| fail("no operation".into()))?,
    })
}

fn lower_explore(ex: &Spanned<wire::Explore>, files: &[FileName]) -> Lowered<Exploration> {
    let off = ex.span().start;
    let ex = ex.get_ref();
    let orders = match &ex.orders {
        wire::Orders::All(word) if word == "all" => Orders::All,
        wire::Orders::All(word) => {
            return Err((
                off,
                format!("explore.orders: expected \"all\" or {{ sample = N, seed = S }}, found {word:?}"),
            ))
        }
        wire::Orders::Sample { sample, seed } => {
            if *sample == 0 || *sample > MAX_SAMPLE {
                return Err((off, format!("explore.orders: sample must be 1..={MAX_SAMPLE}")));
            }
            Orders::Sample {
                n: *sample,
                seed: *seed,
            }
        }
    };
    let granularity = match ex.granularity.as_ref().map(|g| (g.span().start, g.get_ref().as_str())) {
        None | Some((_, "process")) => Granularity::Process,
        Some((_, "syscall")) => Granularity::Syscall,
        Some((at, other)) => {
            return Err((
                at,
                format!("explore.granularity: expected \"process\" or \"syscall\", found {other:?}"),
            ))
        }
    };
    let mut properties = BTreeSet::new();
    for p in &ex.properties {
        let at = p.span().start;
        match p.get_ref().as_str() {
            name @ ("whole-lines" | "detach-attached") if granularity != Granularity::Syscall => {
                return Err((
                    at,
                    format!("explore.properties: {name:?} is judged at granularity = \"syscall\""),
                ))
            }
            "whole-lines" => properties.insert(Property::WholeLines),
            "detach-attached" => properties.insert(Property::DetachAttached),
            other => {
                return Err((
                    at,
                    format!("explore.properties: unknown property {other:?}; known: whole-lines, detach-attached"),
                ))
            }
        };
    }
    if granularity == Granularity::Process && ex.reduction.is_some() {
        return Err((off, "explore.reduction applies to granularity = \"syscall\"".into()));
    }
    if granularity == Granularity::Syscall {
        if !ex.events.is_empty() {
            return Err((
                off,
                "explore: key-file events are not ordered at granularity \"syscall\" yet".into(),
            ));
        }
        if orders != Orders::All {
            return Err((
                off,
                "explore.orders: granularity \"syscall\" explores all orders (reduced)".into(),
            ));
        }
        if ex.runs.len() > 4 {
            return Err((off, "explore: at most 4 runs at granularity \"syscall\"".into()));
        }
    }
    if ex.runs.is_empty() {
        return Err((off, "explore: expected at least one run".into()));
    }
    if ex.runs.len() + ex.events.len() > MAX_EXPLORE_PARTS {
        return Err((
            off,
            format!("explore: more than {MAX_EXPLORE_PARTS} runs and events (orders grow factorially)"),
        ));
    }
    let mut names = BTreeSet::new();
    let mut runs = Vec::new();
    for r in &ex.runs {
        runs.push(lower_explore_run(r, granularity, &mut names)?);
    }
    let events = ex
        .events
        .iter()
        .map(|e| lower_file_event(e, &mut names))
        .collect::<Lowered<Vec<_>>>()?;
    let initial = lower_initial(&ex.initial, granularity, files)?;
    Ok(Exploration {
        runs,
        events,
        orders,
        granularity,
        reduction: ex.reduction.unwrap_or(true),
        properties,
        initial,
    })
}

/// `[explore] initial`: segments and key-file operations, checked in order
/// against the files the scenario makes (a segment's ftok file must exist
/// when the segment is made).
fn lower_initial(
    items: &[Spanned<wire::ExploreInitial>],
    granularity: Granularity,
    files: &[FileName],
) -> Lowered<Vec<Initial>> {
    if items.len() > MAX_EXPLORE_PARTS {
        return Err((
            items[MAX_EXPLORE_PARTS].span().start,
            format!("explore.initial: more than {MAX_EXPLORE_PARTS} items"),
        ));
    }
    let mut present: BTreeSet<FileName> = files.iter().cloned().collect();
    let mut out = Vec::new();
    for item in items {
        let off = item.span().start;
        let i = item.get_ref();
        let fail = |m: String| (off, format!("explore.initial: {m}"));
        let file_ops = file_ops(&i.recreate_file, &i.remove_file, &i.create_file).map_err(|e| fail(e.to_string()))?;
        let segment_fields = i.size.is_some() || i.mode.is_some() || i.content.is_some();
        match (&i.segment, file_ops.as_slice()) {
            (None, [op]) if !segment_fields => {
                match op {
                    FileOp::Remove(f) => {
                        if !present.remove(f) {
                            return Err(fail(format!("remove_file \"{f}\": no such file at this point")));
                        }
                    }
                    FileOp::Create(f) | FileOp::Recreate(f) | FileOp::Link { to: f, .. } => {
                        present.insert(f.clone());
                    }
                }
                out.push(Initial::File(op.clone()));
            }
            (Some(key), []) => out.push(Initial::Segment(
                lower_initial_segment(i, key, granularity, &present).map_err(|e| fail(e.to_string()))?,
            )),
            _ => {
                return Err(fail(
                    "each item is a segment (segment = KEY, with size, mode, content) or exactly one of \
                     recreate_file, remove_file, create_file"
                        .into(),
                ))
            }
        }
    }
    Ok(out)
}

fn lower_initial_segment(
    i: &wire::ExploreInitial,
    key: &str,
    granularity: Granularity,
    present: &BTreeSet<FileName>,
) -> Result<InitialSegment, InitialSegmentError> {
    let key = parse_key_spec(key)?;
    match &key {
        KeySpec::Private => return Err(InitialSegmentError::Private),
        KeySpec::Ftok { file, .. } if !present.contains(file) => {
            return Err(InitialSegmentError::NoFile {
                file: file.clone(),
                key,
            });
        }
        _ => {}
    }
    let size = i.size.unwrap_or(1024);
    if size == 0 || size > MAX_INITIAL_SIZE {
        return Err(InitialSegmentError::Size { key });
    }
    let mode = i.mode.as_deref().map(parse_mode).transpose()?.unwrap_or(0o666);
    // The process-level model predicts the runs' results from keys and
    // sizes; it does not model permissions, so it takes only segments its
    // runs (the scenario's uid, no capability) may read and write.
    if granularity == Granularity::Process && mode & 0o600 != 0o600 {
        return Err(InitialSegmentError::UnmodelledMode { key, mode });
    }
    let content = i.content.clone().unwrap_or_default();
    if content.contains('\0') {
        return Err(InitialSegmentError::ContentNul { key });
    }
    // What the segment holds is a line, as a writer stores it: a reader
    // prints it as its one line, which a newline would split.
    if content.contains('\n') {
        return Err(InitialSegmentError::ContentNewline { key });
    }
    if content.len() > MAX_INITIAL_CONTENT || content.len() >= size {
        return Err(InitialSegmentError::ContentTooLong {
            key,
            len: content.len(),
            room: (size - 1).min(MAX_INITIAL_CONTENT),
        });
    }
    Ok(InitialSegment {
        key,
        size,
        mode,
        content,
    })
}

pub fn default_proc_name(program: &Program, n: usize) -> String {
    let base: String = match program {
        Program::Role(role) => role.as_str().into(),
        Program::Exec(argv) => Path::new(&argv[0])
            .file_name()
            .map_or("exec".into(), |f| f.to_string_lossy().into()),
    };
    let base: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect();
    format!("{base}@{n}")
}

#[cfg(test)]
mod tests;
