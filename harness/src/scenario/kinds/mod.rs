//! Step kinds that are each one module: the table a `[[step]]` gives under
//! the kind's key (its fields, documented for the schema), its lowering into
//! what the engine runs (a process of ours in the step's namespace, with the
//! line it must print), and what that process does there (`shmconf probe
//! step KEY ...`). The engine, the judge and the describer need nothing new:
//! the step is a probe started and judged like any, and the kernel's answer
//! is what the probe prints.
//!
//! Registering a kind is its line in [`with_step_kinds`]: the wire step's
//! field, the list of actions, the lowering and the probe's dispatch follow
//! from it, and `shmconf schema > scenarios/scenario.schema.json` shows its
//! fields.

use std::collections::{BTreeMap, BTreeSet};

use super::{wire, EndingExpect, Expect, KeptCapabilities, Program, Role, Spawn, StreamExpect, UnsavedId};

pub mod ipc_set;
pub mod shm_lock;

/// The step kinds that are modules of their own, one line each (besides
/// the module's `pub mod` line above): the key of the kind's table in a
/// `[[step]]`, and its type (a [`StepKind`]).
macro_rules! with_step_kinds {
    ($then:ident) => {
        $then! {
            shm_lock: $crate::scenario::kinds::shm_lock::ShmLock,
            ipc_set: $crate::scenario::kinds::ipc_set::IpcSet,
        }
    };
}
pub(crate) use with_step_kinds;

/// Why a kind's table cannot be run: said at the step's table, file:line:col.
#[derive(Debug, thiserror::Error)]
pub enum KindError {
    #[error("expect_errno {errno:?} is none of what {call} answers ({})", .errnos.join(", "))]
    UnknownErrno {
        errno: String,
        call: &'static str,
        errnos: &'static [&'static str],
    },
    #[error(transparent)]
    Mode(#[from] super::BadMode),
    #[error("the line the probe must print is not a regex: {0}")]
    Regex(#[from] regex::Error),
    #[error(transparent)]
    UnsavedId(#[from] UnsavedId),
}

/// A kind of step: its table lowered into the probe's arguments and
/// expectation, and the probe's side.
pub trait StepKind {
    /// What the probe is started with and must do.
    fn lower(&self) -> Result<Lowered, KindError>;
    /// In the step's namespace, with the arguments `lower` gave: make the
    /// calls, print one line (`ok ...`, or `errno NAME: ...` when the
    /// kernel refused), and return the exit code (0, 1, or 2 for arguments
    /// it cannot take).
    fn probe(args: &[String]) -> i32;
}

/// A kind's table, lowered.
#[derive(Debug, Clone, Default)]
pub struct Lowered {
    /// The probe's arguments after `step KEY`; `{NAME}` stands for the
    /// segment id an earlier step saved as NAME.
    pub args: Vec<String>,
    /// The uid and gid the probe runs as (default: the harness's).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub expect: Expect,
}

/// What the probe must answer: exit 0 with a line matching `ok` (a regex),
/// or, when the step expects the kernel to refuse, exit 1 with `errno
/// NAME: ...`, NAME one of `errnos` (what `call` can answer).
pub(super) fn answer(
    ok: &str,
    expect_errno: Option<&str>,
    errnos: &'static [&'static str],
    call: &'static str,
) -> Result<Expect, KindError> {
    let (ending, line) = match expect_errno {
        Some(errno) if !errnos.contains(&errno) => {
            return Err(KindError::UnknownErrno {
                errno: errno.into(),
                call,
                errnos,
            })
        }
        Some(errno) => (EndingExpect::Code(1), format!("^errno {errno}: ")),
        None => (EndingExpect::Success, ok.to_string()),
    };
    Ok(Expect {
        ending,
        stdout: StreamExpect {
            regex: Some(regex::bytes::Regex::new(&line)?),
            ..StreamExpect::default()
        },
        ..Expect::default()
    })
}

/// The probe's line when the kernel refused a call, and its exit code.
pub(super) fn refused(e: &shmconf::sysv::Error) -> i32 {
    println!("errno {:?}: {e}", e.errno);
    1
}

/// The probe's line for arguments its kind cannot take, and the usage exit code.
pub(super) fn usage(key: &str, expected: &str, args: &[String]) -> i32 {
    eprintln!("shmconf probe step {key}: expected {expected}, got {args:?}");
    2
}

/// The probe process of step `n` of kind `key`.
fn spawn_of(key: &str, lowered: Lowered, n: usize, saved: &BTreeSet<String>) -> Result<Spawn, KindError> {
    let args: Vec<String> = ["step", key]
        .into_iter()
        .map(String::from)
        .chain(lowered.args)
        .collect();
    Ok(Spawn {
        name: format!("{key}@{n}"),
        program: Program::Role(Role::Probe),
        args: super::parse_args(&args, saved)?,
        stdin: Vec::new(),
        env: BTreeMap::new(),
        uid: lowered.uid,
        gid: lowered.gid,
        keep: KeptCapabilities::default(),
        background: None,
        traced: false,
        expect: lowered.expect,
    })
}

/// What the registered kinds make of a step.
macro_rules! dispatch {
    ($($key:ident: $kind:ty,)*) => {
        /// Every registered kind's key, as files name it.
        pub const KEYS: &[&str] = &[$(stringify!($key)),*];

        /// The kinds whose tables a step sets.
        pub(super) fn set_in(step: &wire::Step) -> Vec<&'static str> {
            let mut set = Vec::new();
            $(if step.$key.is_some() {
                set.push(stringify!($key));
            })*
            set
        }

        /// Step `n`'s kind table lowered into its probe process, if the
        /// step is of a registered kind; `saved`: the ids saved so far.
        pub(super) fn lower(step: &wire::Step, n: usize, saved: &BTreeSet<String>) -> Option<Result<Spawn, KindError>> {
            $(if let Some(table) = &step.$key {
                return Some(StepKind::lower(table).and_then(|l| spawn_of(stringify!($key), l, n, saved)));
            })*
            None
        }

        /// `shmconf probe step KEY ARGS...`: the kind's calls; None for a
        /// key no kind has.
        pub fn probe(key: &str, args: &[String]) -> Option<i32> {
            $(if key == stringify!($key) {
                return Some(<$kind as StepKind>::probe(args));
            })*
            None
        }
    };
}
with_step_kinds!(dispatch);
