//! The wire format of scenario files: what serde reads from TOML, with spans
//! for error locations, and what the JSON Schema (`shmconf schema`) is made
//! from. Nothing here is used at run time: [`super::lower`] turns it into the
//! typed scenario once, at load, and every check of the file happens there.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// One scenario file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// One paragraph: what the scenario shows and why a user should care.
    pub description: String,
    /// Tags for selection (`--tag`); `seed-contract` marks what the original programs pass.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Man page or reference-suite behaviour this mirrors (e.g. "shmctl(2); LTP shmctl01").
    #[serde(default)]
    pub reference: Option<String>,
    /// Key files created (empty) before the first step. Default: ["shmfile"].
    #[serde(default = "default_files")]
    #[schemars(with = "Vec<String>")]
    pub files: Spanned<Vec<String>>,
    /// Named IPC namespaces beyond the default "main": `b = {}` is a new one,
    /// `b = { share = "a" }` is the same namespace as `a`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, NamespaceDecl>")]
    pub namespaces: BTreeMap<String, Spanned<NamespaceDecl>>,
    /// Limit for the whole scenario in milliseconds (default 30000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// "tmpfs": the scenario's directory (its key files) is a tmpfs mounted
    /// for it, whose device number's low byte (which ftok puts in the key)
    /// is not 0, unlike many disks'; SKIP where none can be mounted.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub filesystem: Option<Spanned<String>>,
    /// The steps, in order (a scenario has steps or an `[explore]` table).
    #[serde(rename = "step", default)]
    #[schemars(with = "Vec<Step>")]
    pub steps: Vec<Spanned<Step>>,
    /// Order exploration: run every order (or a sample) of a set of processes
    /// and judge each against the reference model.
    #[serde(default)]
    #[schemars(with = "Option<Explore>")]
    pub explore: Option<Spanned<Explore>>,
}

/// `[explore]`: a set of runs whose orders are explored.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Explore {
    /// The processes; each is one event, or two (attach, input) with `pause = true`.
    #[schemars(with = "Vec<ExploreRun>")]
    pub runs: Vec<Spanned<ExploreRun>>,
    /// Key-file events ordered among the runs.
    #[serde(default)]
    #[schemars(with = "Vec<ExploreEvent>")]
    pub events: Vec<Spanned<ExploreEvent>>,
    /// "all" (the default), or { sample = N, seed = S }.
    #[serde(default)]
    pub orders: Orders,
    /// "process" (the default): each run (or a paused writer's attach and
    /// input) is one event. "syscall": every run is traced, unmodified, and
    /// interleaved at its shared-memory system calls, its input pieces and
    /// its reads and writes of the standard streams (x86_64, local backend).
    #[schemars(with = "Option<String>")]
    pub granularity: Option<Spanned<String>>,
    /// "syscall": explore one order per class of equivalent interleavings
    /// (dynamic partial-order reduction; the default), or every one (false).
    pub reduction: Option<bool>,
    /// "syscall": properties every order must keep beyond "no role is
    /// killed by a signal": "whole-lines" (a reader never prints part of a
    /// writer's line), "detach-attached" (a run detaches each of its
    /// attachments once: no shmdt(2) of an address its shmat(2) returned
    /// fails).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub properties: Vec<Spanned<String>>,
    /// What the table and the key files hold before the runs start, made in
    /// this order in every order's fresh namespace: segments (`segment` =
    /// its key, with `size`, `mode`, `content`) and key-file operations
    /// (`recreate_file`, `remove_file`, `create_file`).
    #[serde(default)]
    #[schemars(with = "Vec<ExploreInitial>")]
    pub initial: Vec<Spanned<ExploreInitial>>,
}

/// One item of `[explore] initial`: a segment, or a key-file operation.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExploreInitial {
    /// A segment's key: "ftok:FILE:PROJ" (computed when it is made, from
    /// the file as it is then) or a hex key like "0x41020001".
    pub segment: Option<String>,
    /// The segment's size in bytes (default 1024).
    pub size: Option<usize>,
    /// The segment's permission bits, octal (default "0666").
    pub mode: Option<String>,
    /// The text the segment holds, followed by a NUL (default: none, all zero).
    pub content: Option<String>,
    /// Replace the file by a new one (new inode, new key).
    pub recreate_file: Option<String>,
    pub remove_file: Option<String>,
    pub create_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExploreRun {
    pub name: String,
    /// "writer" or "reader".
    pub role: String,
    /// Writer's input.
    pub stdin: Option<Bytes>,
    /// Writer's input in pieces, each fed as an event of its own (for
    /// granularity "syscall"; instead of stdin). The last piece closes it.
    #[schemars(with = "Option<Vec<Bytes>>")]
    pub stdin_pieces: Option<Vec<Bytes>>,
    /// Writer: attach (and wait at the prompt) and get the input as two events.
    #[serde(default)]
    pub pause: bool,
    /// Reader: --keep (no IPC_RMID).
    #[serde(default)]
    pub keep: bool,
    /// Default "shmfile" (passed as --key-file when different).
    pub key_file: Option<String>,
    /// Default 65 (passed as --proj-id when different).
    pub proj_id: Option<i32>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExploreEvent {
    pub name: String,
    /// Replace the file by a new one (new inode, new key).
    pub recreate_file: Option<String>,
    pub remove_file: Option<String>,
    pub create_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Orders {
    /// "all": every order.
    All(String),
    Sample {
        sample: usize,
        seed: u64,
    },
}

impl Default for Orders {
    fn default() -> Self {
        Orders::All("all".into())
    }
}

fn default_files() -> Spanned<Vec<String>> {
    Spanned::new(0..0, vec!["shmfile".into()])
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceDecl {
    /// Share the namespace of this name instead of making a new one.
    #[serde(default)]
    pub share: Option<String>,
    /// Container backends (Docker, Podman) only: the container's `--ipc`
    /// mode: "private", "shareable", "container:NS", "host", "none", or
    /// "local" (no container: the harness's own namespace, where `host`
    /// containers should appear).
    #[serde(default)]
    pub docker: Option<String>,
    /// Container backends only: this namespace is a container of pod P;
    /// every container of one pod shares one IPC namespace, as in a
    /// Kubernetes pod (Podman: `podman pod create --share ipc`; Docker: an
    /// infra container with `--ipc shareable` that the members join).
    #[serde(default)]
    pub pod: Option<String>,
    /// Container backends: starting this namespace's container must fail
    /// with an error containing this text (e.g. joining a non-shareable donor).
    #[serde(default)]
    pub expect_error: Option<String>,
}

/// Bytes given as text (TOML escapes apply), as hex, or as a repeated text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Bytes {
    Text(String),
    Hex {
        /// Bytes as hex digits, e.g. "636166e9ff0a".
        hex: String,
    },
    Repeat {
        /// Text repeated `count` times...
        repeat: String,
        count: usize,
        /// ...then this text.
        #[serde(default)]
        suffix: String,
    },
}

/// Expected exit: a code, or "any", "nonzero", "refusal" or
/// "success-or-refusal".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ExitExpect {
    Code(i32),
    Word(ExitWord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ExitWord {
    /// Any ending, a signal included.
    Any,
    /// Anything but exit 0 (a signal included).
    Nonzero,
    /// The contract's refusal: the process exits by itself with a nonzero
    /// code and says why on stderr (any wording). A signal is a crash, not a
    /// refusal.
    Refusal,
    /// Exit 0, or a refusal: where the contract allows either (e.g. a
    /// reader whose IPC_RMID finds the segment already gone).
    SuccessOrRefusal,
}

/// What a process must do. Absent fields are not checked, except that a
/// process with neither `exit` nor `signal` given must exit 0.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub exit: Option<ExitExpect>,
    /// Killed by this signal, e.g. "SIGSEGV".
    pub signal: Option<String>,
    pub stdout: Option<Bytes>,
    #[serde(default)]
    pub stdout_contains: Vec<String>,
    pub stdout_regex: Option<String>,
    pub stderr: Option<Bytes>,
    #[serde(default)]
    pub stderr_contains: Vec<String>,
    pub stderr_regex: Option<String>,
}

/// One expected row of the segment table (or its absence).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentExpect {
    /// "ftok:FILE:PROJ" (FILE in the scenario dir), a hex key "0x41020001", or "private".
    pub key: String,
    /// The key must have no segment.
    #[serde(default)]
    pub absent: bool,
    pub size: Option<u64>,
    /// Permission bits in octal, e.g. "0666".
    pub mode: Option<String>,
    pub nattch: Option<u64>,
    /// Marked for destruction (SHM_DEST).
    pub dest: Option<bool>,
    /// The segment's text up to its first NUL (read by the harness, read-only).
    pub content: Option<Bytes>,
    /// The segment's first bytes, exactly (e.g. to check the NUL terminator).
    pub prefix: Option<Bytes>,
    /// Segments with this key (several only for "private").
    pub count: Option<usize>,
    /// Remember the segment's id as `{NAME}`, usable in later steps' `args`
    /// (ids differ between runs and namespaces; keys change after IPC_RMID).
    pub save_id: Option<String>,
}

/// Defines [`Step`]: the fields below, and one for each step kind that is a
/// module of its own (`super::kinds::with_step_kinds`, which lists them).
macro_rules! define_step {
    ($($key:ident: $kind:ty,)*) => {
        /// One step. Exactly one action field (run, exec, feed, wait, kill,
        /// segments, create_file, remove_file, recreate_file, link_file, sysctl) is set.
        #[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct Step {
            /// Run an implementation role: "writer", "reader" or "probe".
            pub run: Option<String>,
            /// Run any command (argv), e.g. ["ipcs", "-m"].
            pub exec: Option<Vec<String>>,
            /// Write `stdin` to a background process (then close it unless `close_stdin = false`).
            pub feed: Option<String>,
            /// Wait for a background process: until it exits (default) or prints `until_stdout`.
            pub wait: Option<String>,
            /// Send `signal` (default SIGKILL) to a background process and wait for it to end.
            pub kill: Option<String>,
            /// Check the kernel's segment table in `ns`.
            pub segments: Option<Vec<SegmentExpect>>,
            /// Create an empty file in the scenario dir.
            pub create_file: Option<String>,
            /// Remove a file.
            pub remove_file: Option<String>,
            /// Replace a file by a new one (a new inode, hence a new ftok key).
            pub recreate_file: Option<String>,
            /// Hard-link `to` to `from`.
            pub link_file: Option<LinkFile>,
            /// Set a sysctl in `ns`, e.g. { name = "kernel.shm_rmid_forced", value = "1" }.
            pub sysctl: Option<Sysctl>,
            /// Docker backend: remove the container of this namespace (`docker rm -f`).
            pub stop: Option<String>,
            /// Make two files whose inodes are equal modulo 65536 (so their ftok keys
            /// collide), by creating files until two match; named as given.
            pub collide_files: Option<[String; 2]>,
            /// Close the harness's handle on this namespace: it then lives only as long
            /// as processes in it (no later step may use it).
            pub drop_ns: Option<String>,
            /// Remember the machine's `Shmem` (/proc/meminfo) under this name.
            pub shmem_mark: Option<String>,
            /// Wait until `Shmem` is at least `at_least_kib` below the named mark: the
            /// kernel freed segment memory (e.g. when a namespace died).
            pub shmem_freed: Option<ShmemFreed>,
            /// Run these operations in one process of ours (`shmconf probe
            /// program`) and hold every answer, and the segment table after each,
            /// against the reference model: e.g. ["shmget(0x5f000001, 64,
            /// 0600|IPC_CREAT)", "seteuid/setegid(65534)", "shmget(0x5f000001, 64,
            /// 0600)"]. What `shmconf fuzz --out` writes.
            #[schemars(with = "Option<Vec<String>>")]
            pub program: Option<Vec<Spanned<String>>>,

            /// Process name for later feed/wait/kill (default: role and step number).
            pub name: Option<String>,
            /// Arguments after the implementation's command; `{NAME}` is replaced by an
            /// id saved with `save_id` in an earlier segments step.
            #[serde(default)]
            pub args: Vec<String>,
            pub stdin: Option<Bytes>,
            /// Environment variables added for the process.
            #[serde(default)]
            pub env: BTreeMap<String, String>,
            /// Run as this uid (and gid, default the same).
            pub uid: Option<u32>,
            pub gid: Option<u32>,
            /// Start and leave running; later steps feed, wait for or kill it.
            #[serde(default)]
            pub background: bool,
            /// After writing `stdin`, close it (default true; false keeps a background process waiting).
            pub close_stdin: Option<bool>,
            /// For `wait`: wait until stdout contains this text instead of the exit.
            pub until_stdout: Option<String>,
            /// For `wait`: wait until the kernel shows a segment with this key attached
            /// (nattch >= 1, equal to the mappings the namespace's processes hold, so
            /// no shmat is still under way), e.g. "ftok:shmfile:65": a barrier on
            /// kernel state that does not depend on when the process flushes its prompt.
            pub until_attached: Option<String>,
            /// For `wait`: wait until the process is blocked reading its stdin (so
            /// it has consumed everything fed so far and waits for more), or has
            /// ended: a barrier that needs no cooperation from the program (e.g. a
            /// writer given part of a line).
            #[serde(default)]
            pub until_reading: bool,
            /// For `kill`: the signal name.
            pub signal: Option<String>,
            /// Namespace the step runs in (default "main").
            pub ns: Option<String>,
            /// For `segments`: other segments may exist besides those listed.
            #[serde(default)]
            pub partial: bool,
            /// For `segments`: total number of segments in the namespace.
            pub count: Option<usize>,
            /// Limit for this step in milliseconds (default 5000).
            pub timeout_ms: Option<u64>,
            pub expect: Option<Expect>,
            $(
                #[doc = concat!("A `", stringify!($key), "` step: see the table's fields.")]
                pub $key: Option<$kind>,
            )*
        }
    };
}
super::kinds::with_step_kinds!(define_step);

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkFile {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShmemFreed {
    pub since: String,
    pub at_least_kib: u64,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
}

/// A scenario file that could not be loaded: where and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Line 0: about the file as a whole (unreadable, refused, a duplicate id).
        if self.line == 0 {
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    /// An error at a byte offset of `text`, located by line and column.
    pub fn at(file: &Path, text: &str, offset: usize, message: String) -> LoadError {
        let (line, column) = line_col(text, offset);
        LoadError {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    }

    pub fn unreadable(file: &Path, e: std::io::Error) -> LoadError {
        LoadError {
            file: file.to_owned(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        }
    }
}

/// Deserialize a TOML file's text, errors located by line and column.
pub fn from_toml<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, LoadError> {
    toml::from_str(text).map_err(|e| {
        LoadError::at(
            file,
            text,
            e.span().map_or(0, |s| s.start),
            e.message().trim().to_string(),
        )
    })
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The JSON Schema of scenario files, for editors.
pub fn json_schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(Scenario)).expect("schema serialises")
}
