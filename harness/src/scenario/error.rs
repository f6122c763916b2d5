//! Why a value of a scenario file is refused, typed: one type per parser,
//! each variant naming what failed. The lowering puts their text after
//! `file:line:col: ` (and the step's or field's prefix) in a [`LoadError`];
//! [`MissingSavedId`] is the one found at run time.
//!
//! [`LoadError`]: super::LoadError

use super::{
    FileName, FileNameError, IpcSysctl, KeySpec, MAX_EXPECT_BYTES, MAX_INITIAL_CONTENT, MAX_INITIAL_SIZE, MAX_TIMEOUT,
};

/// Bytes (text, hex or a repeat) that cannot be decoded within their limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BytesError {
    #[error("{bytes} bytes is more than the limit of {limit} bytes")]
    TooLong { bytes: usize, limit: usize },
    /// `count` times `repeat` bytes, then `suffix` bytes: more than the limit
    /// (or more than a usize holds).
    #[error("{count} x {repeat} + {suffix} bytes is more than the limit of {limit} bytes")]
    RepeatTooLong {
        count: usize,
        repeat: usize,
        suffix: usize,
        limit: usize,
    },
    #[error("hex {hex:?} has an odd number of digits")]
    OddHex { hex: String },
    /// `pair` is the two digits where one is not hex.
    #[error("hex {hex:?} has a non-hex digit in {pair:?}")]
    NonHexDigit { hex: String, pair: String },
}

/// A key (`ftok:FILE:PROJ`, a hex key or `private`) that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key {key:?}: expected ftok:FILE:PROJ, e.g. ftok:shmfile:65")]
    FtokForm { key: String },
    #[error("key {key:?}: proj id {proj:?} is not a number")]
    ProjId { key: String, proj: String },
    #[error("key {key:?}: {source}")]
    File {
        key: String,
        #[source]
        source: FileNameError,
    },
    #[error("key {key:?}: expected \"ftok:FILE:PROJ\", a hex key like \"0x41020001\", or \"private\"")]
    Form { key: String },
    #[error("key {key:?}: {source}")]
    Hex {
        key: String,
        #[source]
        source: std::num::ParseIntError,
    },
}

/// A namespace's `docker` mode that is not one of Docker's `--ipc` modes (or `local`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("docker mode {mode:?}: expected private, shareable, container:NS, host, none or local")]
pub struct UnknownIpcMode {
    pub mode: String,
}

/// A sysctl that is not the IPC namespace's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "sysctl {name:?} is not an IPC namespace sysctl; a scenario may set only {}",
    IpcSysctl::ALL.map(IpcSysctl::name).join(", ")
)]
pub struct UnknownSysctl {
    pub name: String,
}

/// A signal name that is not a signal's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal {name:?}, expected a name like SIGKILL")]
pub struct UnknownSignal {
    pub name: String,
}

/// Permission bits that are not octal 000..777.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mode {mode:?} is not octal permission bits (000..777)")]
pub struct BadMode {
    pub mode: String,
}

/// A name (of a process, namespace, pod, mark, saved id, run or event)
/// that is empty, too long or has a character names may not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} name {name:?}: expected 1-64 characters of letters, digits, '_', '-', '.', '@'")]
pub struct BadName {
    /// What the name names, as the file calls it (`process`, `save_id`...).
    pub kind: &'static str,
    pub name: String,
}

/// An argument's `{NAME}` that no earlier segments step saves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("argument {arg:?} uses {{{name}}}, but no earlier segments step has save_id = {name:?}")]
pub struct UnsavedId {
    pub arg: String,
    pub name: String,
}

/// At run time: an argument's `{NAME}` whose segments step found no
/// segment to save.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("argument uses {{{name}}}, but the segments step that saves it found no segment")]
pub struct MissingSavedId {
    pub name: String,
}

/// A `timeout_ms` out of bounds; `what` is the scenario or the step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeoutError {
    #[error("{what}: timeout_ms must be at least 1")]
    Zero { what: String },
    #[error("{what}: timeout_ms {ms} is more than the limit of {max} ms", max = MAX_TIMEOUT.as_millis())]
    TooLong { what: String, ms: u64 },
}

/// A step's `expect` table that cannot be checked; `stream` is `stdout`
/// or `stderr`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExpectError {
    #[error("expect: give exit or signal, not both")]
    ExitAndSignal,
    #[error("expect.signal: {0}")]
    Signal(#[source] UnknownSignal),
    #[error("expect.{stream}: {source}")]
    Exact {
        stream: &'static str,
        #[source]
        source: BytesError,
    },
    #[error("expect.{stream}_contains: text longer than {max} bytes", max = MAX_EXPECT_BYTES)]
    ContainsTooLong { stream: &'static str },
    #[error("expect.{stream}_regex: {source}")]
    Regex {
        stream: &'static str,
        #[source]
        source: regex::Error,
    },
}

/// One expected row of a segments step that cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    SaveId(#[from] BadName),
    #[error("content: {0}")]
    Content(#[source] BytesError),
    #[error("prefix: {0}")]
    Prefix(#[source] BytesError),
    #[error("segment {key:?}: absent = true takes no other field")]
    AbsentWithOthers { key: String },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Mode(#[from] BadMode),
}

/// A segment of an exploration's initial state that cannot be made, or
/// that the model could not predict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitialSegmentError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("segment \"private\": no run could find it; give an ftok or hex key")]
    Private,
    #[error(
        "segment {key}: the file \"{file}\" does not exist when the segment is made (list it in `files` or create \
         it earlier in `initial`)"
    )]
    NoFile { key: KeySpec, file: FileName },
    #[error("segment {key}: size must be 1..={max}", max = MAX_INITIAL_SIZE)]
    Size { key: KeySpec },
    #[error(transparent)]
    Mode(#[from] BadMode),
    /// A mode the process-level model does not predict (it models no permissions).
    #[error(
        "segment {key}: mode {mode:04o} at granularity \"process\": the model predicts only segments the runs' \
         owner may read and write (0600 set); use granularity \"syscall\" for other modes"
    )]
    UnmodelledMode { key: KeySpec, mode: u32 },
    #[error("segment {key}: content holds a NUL; it is stored with one after it")]
    ContentNul { key: KeySpec },
    #[error("segment {key}: content holds a newline; it is one line, as a writer stores it (no newline)")]
    ContentNewline { key: KeySpec },
    #[error(
        "segment {key}: content of {len} bytes does not fit: at most {room} (size - 1 for its NUL, and {max})",
        max = MAX_INITIAL_CONTENT
    )]
    ContentTooLong {
        key: KeySpec,
        len: usize,
        /// The longest content that fits: size - 1, at most [`MAX_INITIAL_CONTENT`].
        room: usize,
    },
}
