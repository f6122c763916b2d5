//! Scenario files: the TOML format, loading with precise errors, validation.
//!
//! A scenario is a list of steps run in order in a fresh temp dir (holding an
//! empty `shmfile` unless `files` says otherwise) and its own IPC
//! namespace(s). The format is documented in `scenarios/README.md`; the JSON
//! Schema (`shmconf schema`) is generated from these types.

use std::collections::{BTreeMap, BTreeSet};
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
    pub files: Vec<String>,
    /// Named IPC namespaces beyond the default "main": `b = {}` is a new one,
    /// `b = { share = "a" }` is the same namespace as `a`.
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespaceDecl>,
    /// Limit for the whole scenario in milliseconds (default 30000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// The steps, in order (a scenario has steps or an `[explore]` table).
    #[serde(rename = "step", default)]
    #[schemars(with = "Vec<Step>")]
    pub steps: Vec<Spanned<Step>>,
    /// Order exploration: run every order (or a sample) of a set of processes
    /// and judge each against the reference model.
    #[serde(default)]
    pub explore: Option<Explore>,
}

/// `[explore]`: a set of runs whose orders are explored.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Explore {
    /// The processes; each is one event, or two (attach, input) with `pause = true`.
    pub runs: Vec<ExploreRun>,
    /// Key-file events ordered among the runs.
    #[serde(default)]
    pub events: Vec<ExploreEvent>,
    /// "all" (the default), or { sample = N, seed = S }.
    #[serde(default)]
    pub orders: Orders,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExploreRun {
    pub name: String,
    /// "writer" or "reader".
    pub role: String,
    /// Writer's input.
    pub stdin: Option<Bytes>,
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

fn default_files() -> Vec<String> {
    vec!["shmfile".into()]
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceDecl {
    /// Share the namespace of this name instead of making a new one.
    #[serde(default)]
    pub share: Option<String>,
    /// Docker backend only: the container's `--ipc` mode: "private",
    /// "shareable", "container:NS", "host", "none", or "local" (no container:
    /// the harness's own namespace, where `host` containers should appear).
    #[serde(default)]
    pub docker: Option<String>,
    /// Docker backend: starting this namespace's container must fail with an
    /// error containing this text (e.g. joining a non-shareable donor).
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

impl Bytes {
    pub fn to_vec(&self) -> Result<Vec<u8>, String> {
        match self {
            Bytes::Text(s) => Ok(s.as_bytes().to_vec()),
            Bytes::Hex { hex } => {
                let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
                if digits.len() % 2 != 0 {
                    return Err(format!("hex {hex:?} has an odd number of digits"));
                }
                digits
                    .chunks(2)
                    .map(|p| {
                        u8::from_str_radix(std::str::from_utf8(p).unwrap_or("zz"), 16)
                            .map_err(|_| format!("hex {hex:?} has a non-hex digit"))
                    })
                    .collect()
            }
            Bytes::Repeat { repeat, count, suffix } => {
                let mut v = repeat.repeat(*count).into_bytes();
                v.extend_from_slice(suffix.as_bytes());
                Ok(v)
            }
        }
    }
}

/// Expected exit: a code, or "any" / "nonzero".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ExitExpect {
    Code(i32),
    Word(ExitWord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExitWord {
    Any,
    Nonzero,
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
    /// (nattch >= 1), e.g. "ftok:shmfile:65": a barrier on kernel state that
    /// does not depend on when the process flushes its prompt.
    pub until_attached: Option<String>,
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
}

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

/// What a step does, derived from the one action field that is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Run,
    Exec,
    Feed,
    Wait,
    Kill,
    Segments,
    CreateFile,
    RemoveFile,
    RecreateFile,
    LinkFile,
    Sysctl,
    Stop,
    CollideFiles,
    DropNs,
    ShmemMark,
    ShmemFreed,
}

pub const ACTION_NAMES: &str = "run, exec, feed, wait, kill, segments, create_file, remove_file, recreate_file, \
link_file, collide_files, sysctl, stop, drop_ns, shmem_mark, shmem_freed";

impl Step {
    fn actions(&self) -> Vec<(Action, &'static str)> {
        let mut v = Vec::new();
        let mut add = |set: bool, a, n| {
            if set {
                v.push((a, n))
            }
        };
        add(self.run.is_some(), Action::Run, "run");
        add(self.exec.is_some(), Action::Exec, "exec");
        add(self.feed.is_some(), Action::Feed, "feed");
        add(self.wait.is_some(), Action::Wait, "wait");
        add(self.kill.is_some(), Action::Kill, "kill");
        add(self.segments.is_some(), Action::Segments, "segments");
        add(self.create_file.is_some(), Action::CreateFile, "create_file");
        add(self.remove_file.is_some(), Action::RemoveFile, "remove_file");
        add(self.recreate_file.is_some(), Action::RecreateFile, "recreate_file");
        add(self.link_file.is_some(), Action::LinkFile, "link_file");
        add(self.sysctl.is_some(), Action::Sysctl, "sysctl");
        add(self.stop.is_some(), Action::Stop, "stop");
        add(self.collide_files.is_some(), Action::CollideFiles, "collide_files");
        add(self.drop_ns.is_some(), Action::DropNs, "drop_ns");
        add(self.shmem_mark.is_some(), Action::ShmemMark, "shmem_mark");
        add(self.shmem_freed.is_some(), Action::ShmemFreed, "shmem_freed");
        v
    }

    /// The step's action (validated at load time: exactly one is set).
    pub fn action(&self) -> Action {
        self.actions()[0].0
    }

    pub fn ns(&self) -> &str {
        self.ns.as_deref().unwrap_or(MAIN_NS)
    }

    /// Does this step start a process?
    pub fn spawns(&self) -> bool {
        matches!(self.action(), Action::Run | Action::Exec)
    }
}

pub const MAIN_NS: &str = "main";

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

/// What the scenario needs from the machine, derived from its steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// More than one distinct IPC namespace.
    pub namespaces: usize,
    /// Runs a process as another uid.
    pub other_uid: bool,
    /// Sets a sysctl (only safe in a namespace of the scenario's own).
    pub sysctl: bool,
    /// Declares Docker IPC modes or stops containers: Docker backend only.
    pub docker: bool,
    /// Signals a process (the Docker backend cannot reach processes in containers).
    pub kill: bool,
    /// Drops a namespace handle (only namespaces the harness makes itself).
    pub drop_ns: bool,
}

impl Scenario {
    pub fn parse(file: &Path, text: &str) -> Result<Scenario, LoadError> {
        let scenario: Scenario = from_toml(file, text)?;
        scenario
            .validate()
            .map_err(|(offset, msg)| LoadError::at(file, text, offset, msg))?;
        Ok(scenario)
    }

    pub fn load(file: &Path) -> Result<Scenario, LoadError> {
        let text = std::fs::read_to_string(file).map_err(|e| LoadError::unreadable(file, e))?;
        Self::parse(file, &text)
    }

    /// Cross-field checks that serde cannot make; errors carry the step's offset.
    fn validate(&self) -> Result<(), (usize, String)> {
        if let Some(ex) = &self.explore {
            if !self.steps.is_empty() {
                return Err((0, "a scenario has either [[step]]s or [explore], not both".into()));
            }
            return validate_explore(ex).map_err(|m| (0, m));
        }
        if self.steps.is_empty() {
            return Err((0, "expected at least one [[step]] (or an [explore] table)".into()));
        }
        for (name, decl) in &self.namespaces {
            if let Some(target) = &decl.share {
                if target != MAIN_NS && !self.namespaces.contains_key(target) {
                    return Err((0, format!("namespace {name:?} shares unknown namespace {target:?}")));
                }
            }
            if let Some(mode) = &decl.docker {
                match crate::docker::IpcMode::parse(mode).map_err(|e| (0, format!("namespace {name:?}: {e}")))? {
                    crate::docker::IpcMode::Container(target)
                        if target != MAIN_NS && !self.namespaces.contains_key(&target) =>
                    {
                        return Err((0, format!("namespace {name:?} joins unknown namespace {target:?}")));
                    }
                    _ => {}
                }
                if decl.share.is_some() {
                    return Err((
                        0,
                        format!("namespace {name:?}: use docker = \"container:NS\" instead of share"),
                    ));
                }
            }
        }
        let mut procs: BTreeSet<String> = BTreeSet::new();
        let mut background: BTreeSet<String> = BTreeSet::new();
        let mut dropped_ns: Option<String> = None;
        let mut marks: BTreeSet<String> = BTreeSet::new();
        for (i, spanned) in self.steps.iter().enumerate() {
            let at = spanned.span().start;
            let step = spanned.get_ref();
            let n = i + 1;
            let actions = step.actions();
            if actions.len() != 1 {
                let found: Vec<_> = actions.iter().map(|a| a.1).collect();
                return Err((
                    at,
                    format!(
                        "step {n}: expected exactly one action ({ACTION_NAMES}), found {}",
                        if found.is_empty() {
                            "none".to_string()
                        } else {
                            found.join(" and ")
                        }
                    ),
                ));
            }
            if let Some(dropped) = &dropped_ns {
                if step.ns() == dropped.as_str() {
                    return Err((
                        at,
                        format!("step {n}: namespace {dropped:?} was dropped by an earlier step"),
                    ));
                }
            }
            if let Some(target) = &step.drop_ns {
                if target == MAIN_NS {
                    return Err((at, format!("step {n}: the main namespace cannot be dropped")));
                }
                dropped_ns = Some(target.clone());
            }
            if let Some(f) = &step.shmem_freed {
                if !marks.contains(&f.since) {
                    return Err((at, format!("step {n}: no earlier shmem_mark named {:?}", f.since)));
                }
            }
            if let Some(m) = &step.shmem_mark {
                marks.insert(m.clone());
            }
            for ns in [Some(step.ns()), step.stop.as_deref(), step.drop_ns.as_deref()]
                .into_iter()
                .flatten()
            {
                if ns != MAIN_NS && !self.namespaces.contains_key(ns) {
                    return Err((
                        at,
                        format!("step {n}: namespace {ns:?} is not declared in [namespaces]"),
                    ));
                }
            }
            if let Some(role) = &step.run {
                if !["writer", "reader", "probe"].contains(&role.as_str()) {
                    return Err((
                        at,
                        format!("step {n}: unknown role {role:?}, expected writer, reader or probe"),
                    ));
                }
            }
            if let Some(argv) = &step.exec {
                if argv.is_empty() {
                    return Err((at, format!("step {n}: exec needs a command")));
                }
            }
            if step.spawns() {
                let name = step.name.clone().unwrap_or_else(|| default_proc_name(step, n));
                if !procs.insert(name.clone()) {
                    return Err((at, format!("step {n}: process name {name:?} is already used")));
                }
                if step.background {
                    background.insert(name);
                }
            } else {
                for (field, set) in [
                    ("background", step.background),
                    ("args", !step.args.is_empty()),
                    ("uid", step.uid.is_some()),
                    ("env", !step.env.is_empty()),
                    ("name", step.name.is_some()),
                ] {
                    if set {
                        return Err((at, format!("step {n}: '{field}' only applies to run and exec steps")));
                    }
                }
            }
            if step.background && step.expect.is_some() {
                return Err((
                    at,
                    format!(
                        "step {n}: a background process's expectations go on the step that waits for it or kills it"
                    ),
                ));
            }
            for target in [&step.feed, &step.wait, &step.kill].into_iter().flatten() {
                if !background.contains(target) {
                    return Err((
                        at,
                        format!("step {n}: no background process named {target:?} started before this step"),
                    ));
                }
            }
            if step.feed.is_some() && step.stdin.is_none() {
                return Err((at, format!("step {n}: feed needs stdin")));
            }
            if let Some(k) = &step.until_attached {
                parse_key_spec(k).map_err(|e| (at, format!("step {n}: until_attached: {e}")))?;
                if step.wait.is_none() || step.until_stdout.is_some() || step.expect.is_some() {
                    return Err((
                        at,
                        format!("step {n}: until_attached goes on a wait, without until_stdout or expect"),
                    ));
                }
            }
            if step.until_stdout.is_some() && step.wait.is_none() {
                return Err((at, format!("step {n}: until_stdout only applies to wait")));
            }
            if step.expect.is_some() && !(step.spawns() || step.wait.is_some() || step.kill.is_some()) {
                return Err((at, format!("step {n}: expect only applies to run, exec, wait and kill")));
            }
            if step.wait.is_some() && step.until_stdout.is_some() && step.expect.is_some() {
                return Err((
                    at,
                    format!("step {n}: a wait for output has no exit to check; drop expect or until_stdout"),
                ));
            }
            if let Some(segs) = &step.segments {
                for s in segs {
                    parse_key_spec(&s.key).map_err(|e| (at, format!("step {n}: {e}")))?;
                    if let Some(m) = &s.mode {
                        u32::from_str_radix(m.trim_start_matches("0o"), 8)
                            .map_err(|_| (at, format!("step {n}: mode {m:?} is not octal")))?;
                    }
                }
            }
            for b in [&step.stdin].into_iter().flatten() {
                b.to_vec().map_err(|e| (at, format!("step {n}: stdin: {e}")))?;
            }
            if let Some(sig) = &step.signal {
                parse_signal(sig).map_err(|e| (at, format!("step {n}: {e}")))?;
            }
            if let Some(exp) = &step.expect {
                if let Some(sig) = &exp.signal {
                    parse_signal(sig).map_err(|e| (at, format!("step {n}: expect.signal: {e}")))?;
                }
                for re in [&exp.stdout_regex, &exp.stderr_regex].into_iter().flatten() {
                    regex::bytes::Regex::new(re).map_err(|e| (at, format!("step {n}: bad regex: {e}")))?;
                }
            }
        }
        Ok(())
    }

    /// Distinct namespaces after sharing is resolved.
    pub fn distinct_namespaces(&self) -> usize {
        if self.explore.is_some() {
            return 2; // a fresh namespace per order
        }
        let mut used: BTreeSet<String> = BTreeSet::new();
        used.insert(MAIN_NS.into());
        for s in &self.steps {
            used.insert(self.resolve_ns(s.get_ref().ns()).to_string());
        }
        used.len()
    }

    /// Follow `share` links to the namespace that is really created.
    pub fn resolve_ns<'a>(&'a self, mut name: &'a str) -> &'a str {
        for _ in 0..=self.namespaces.len() {
            match self.namespaces.get(name).and_then(|d| d.share.as_deref()) {
                Some(t) => name = t,
                None => break,
            }
        }
        name
    }

    pub fn needs(&self) -> Needs {
        let steps = || self.steps.iter().map(|s| s.get_ref());
        Needs {
            namespaces: self.distinct_namespaces(),
            other_uid: steps().any(|s| s.uid.is_some() || s.gid.is_some()),
            sysctl: steps().any(|s| s.sysctl.is_some()),
            docker: self
                .namespaces
                .values()
                .any(|d| d.docker.is_some() || d.expect_error.is_some())
                || steps().any(|s| s.stop.is_some()),
            kill: steps().any(|s| s.kill.is_some()),
            drop_ns: steps().any(|s| s.drop_ns.is_some()),
        }
    }
}

fn validate_explore(ex: &Explore) -> Result<(), String> {
    if let Orders::All(word) = &ex.orders {
        if word != "all" {
            return Err(format!(
                "explore.orders: expected \"all\" or {{ sample = N, seed = S }}, found {word:?}"
            ));
        }
    }
    let mut names = BTreeSet::new();
    for r in &ex.runs {
        if !names.insert(r.name.clone()) || r.name.contains([',', ':']) {
            return Err(format!("explore: run name {:?} is repeated or has ',' or ':'", r.name));
        }
        match r.role.as_str() {
            "writer" => {}
            "reader" if r.pause || r.stdin.is_some() => {
                return Err(format!("explore: reader {:?} takes no stdin and cannot pause", r.name))
            }
            "reader" => {}
            other => {
                return Err(format!(
                    "explore: run {:?}: unknown role {other:?}, expected writer or reader",
                    r.name
                ))
            }
        }
        if let Some(b) = &r.stdin {
            b.to_vec()
                .map_err(|e| format!("explore: run {:?}: stdin: {e}", r.name))?;
        }
    }
    for e in &ex.events {
        let set = [&e.recreate_file, &e.remove_file, &e.create_file]
            .iter()
            .filter(|f| f.is_some())
            .count();
        if set != 1 || !names.insert(e.name.clone()) || e.name.contains([',', ':']) {
            return Err(format!(
                "explore: event {:?} needs a unique name (no ',' or ':') and exactly one of recreate_file, remove_file, create_file",
                e.name
            ));
        }
    }
    if ex.runs.is_empty() {
        return Err("explore: expected at least one run".into());
    }
    Ok(())
}

pub fn default_proc_name(step: &Step, n: usize) -> String {
    let base = match (&step.run, &step.exec) {
        (Some(role), _) => role.clone(),
        (_, Some(argv)) => Path::new(&argv[0])
            .file_name()
            .map_or("exec".into(), |f| f.to_string_lossy().into()),
        _ => "step".into(),
    };
    format!("{base}@{n}")
}

/// A key as scenarios write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySpec {
    Ftok { file: String, proj_id: i32 },
    Raw(i32),
    Private,
}

pub fn parse_key_spec(s: &str) -> Result<KeySpec, String> {
    if s == "private" {
        return Ok(KeySpec::Private);
    }
    if let Some(rest) = s.strip_prefix("ftok:") {
        let (file, proj) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("key {s:?}: expected ftok:FILE:PROJ, e.g. ftok:shmfile:65"))?;
        let proj_id = proj
            .parse()
            .map_err(|_| format!("key {s:?}: proj id {proj:?} is not a number"))?;
        return Ok(KeySpec::Ftok {
            file: file.into(),
            proj_id,
        });
    }
    let digits = s.strip_prefix("0x").ok_or_else(|| {
        format!("key {s:?}: expected \"ftok:FILE:PROJ\", a hex key like \"0x41020001\", or \"private\"")
    })?;
    u32::from_str_radix(digits, 16)
        .map(|v| KeySpec::Raw(v as i32))
        .map_err(|e| format!("key {s:?}: {e}"))
}

pub fn parse_signal(name: &str) -> Result<nix::sys::signal::Signal, String> {
    let full = if name.starts_with("SIG") {
        name.to_string()
    } else {
        format!("SIG{name}")
    };
    full.parse()
        .map_err(|_| format!("unknown signal {name:?}, expected a name like SIGKILL"))
}

/// The JSON Schema of scenario files, for editors.
pub fn json_schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(Scenario)).expect("schema serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn parse(text: &str) -> Result<Scenario, LoadError> {
        Scenario::parse(Path::new("t.toml"), text)
    }

    const OK: &str = r#"
description = "writer then reader"
tags = ["seed-contract"]

[[step]]
run = "writer"
stdin = "hello\n"
expect = { exit = 0, stdout = "Write Data: Data written in memory: hello\n" }

[[step]]
segments = [{ key = "ftok:shmfile:65", size = 1024, mode = "0666", nattch = 0 }]
"#;

    #[test]
    fn parses_a_scenario() {
        let s = parse(OK).unwrap();
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.steps[0].get_ref().action(), Action::Run);
        assert_eq!(s.files, vec!["shmfile"]);
        assert_eq!(
            s.needs(),
            Needs {
                namespaces: 1,
                ..Needs::default()
            }
        );
    }

    #[rstest]
    #[case::unknown_key(
        "description = \"x\"\nbogus = 1\n[[step]]\nrun = \"writer\"\n",
        2,
        1,
        "unknown field `bogus`"
    )]
    #[case::unknown_step_key(
        "description = \"x\"\n[[step]]\nrun = \"writer\"\nstdn = \"x\"\n",
        4,
        1,
        "unknown field `stdn`"
    )]
    #[case::two_actions(
        "description = \"x\"\n[[step]]\nrun = \"writer\"\nfeed = \"w\"\n",
        2,
        1,
        "found run and feed"
    )]
    #[case::no_action("description = \"x\"\n[[step]]\nstdin = \"x\"\n", 2, 1, "found none")]
    #[case::bad_role(
        "description = \"x\"\n[[step]]\nrun = \"writter\"\n",
        2,
        1,
        "unknown role \"writter\""
    )]
    #[case::wrong_type("description = \"x\"\n[[step]]\nrun = 3\n", 3, 7, "invalid type")]
    #[case::feed_unknown(
        "description = \"x\"\n[[step]]\nfeed = \"w\"\nstdin = \"x\"\n",
        2,
        1,
        "no background process named \"w\""
    )]
    #[case::bad_key(
        "description = \"x\"\n[[step]]\nsegments = [{ key = \"shmfile\" }]\n",
        2,
        1,
        "expected \"ftok:FILE:PROJ\""
    )]
    #[case::bad_ns(
        "description = \"x\"\n[[step]]\nrun = \"reader\"\nns = \"b\"\n",
        2,
        1,
        "not declared"
    )]
    #[case::no_steps("description = \"x\"\n", 1, 1, "expected at least one [[step]]")]
    #[case::bad_signal(
        "description = \"x\"\n[[step]]\nrun = \"reader\"\nexpect = { signal = \"SIGFOO\" }\n",
        2,
        1,
        "unknown signal"
    )]
    fn load_errors_say_where_and_what(
        #[case] text: &str,
        #[case] line: usize,
        #[case] column: usize,
        #[case] needle: &str,
    ) {
        let e = parse(text).unwrap_err();
        assert!(e.message.contains(needle), "{e}");
        assert_eq!((e.line, e.column), (line, column), "{e}");
        assert!(e.to_string().starts_with(&format!("t.toml:{line}:{column}: ")), "{e}");
    }

    #[test]
    fn bytes_forms() {
        assert_eq!(Bytes::Text("a\n".into()).to_vec().unwrap(), b"a\n");
        assert_eq!(
            Bytes::Hex { hex: "00ff 0a".into() }.to_vec().unwrap(),
            vec![0, 0xff, 0x0a]
        );
        assert!(Bytes::Hex { hex: "0".into() }.to_vec().is_err());
        let r = Bytes::Repeat {
            repeat: "x".into(),
            count: 3,
            suffix: "\n".into(),
        };
        assert_eq!(r.to_vec().unwrap(), b"xxx\n");
    }

    #[test]
    fn key_specs() {
        assert_eq!(
            parse_key_spec("ftok:a:b:65").unwrap(),
            KeySpec::Ftok {
                file: "a:b".into(),
                proj_id: 65
            }
        );
        assert_eq!(parse_key_spec("0xffffffff").unwrap(), KeySpec::Raw(-1));
        assert_eq!(parse_key_spec("private").unwrap(), KeySpec::Private);
    }

    #[test]
    fn shared_namespaces_resolve() {
        let s = parse(
            "description = \"x\"\n[namespaces]\na = {}\nb = { share = \"a\" }\n[[step]]\nrun = \"writer\"\nns = \"a\"\n[[step]]\nrun = \"reader\"\nns = \"b\"\n",
        )
        .unwrap();
        assert_eq!(s.resolve_ns("b"), "a");
        assert_eq!(s.distinct_namespaces(), 2);
    }

    #[test]
    fn schema_mentions_every_action() {
        let schema = json_schema();
        for a in ACTION_NAMES.split(", ") {
            assert!(schema.contains(&format!("\"{a}\"")), "{a}");
        }
    }
}
