//! Implementations under test: how each role becomes a command line.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::outcome::{Expectations, Expected};
use crate::scenario::{ImplOption, Role};

/// `--impl-file`: an implementation described in one file (TOML; schema:
/// `shmconf schema --impl-file`). The built-in implementations are described
/// the same way (`harness/impls/*.toml`).
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImplFile {
    /// The name in reports.
    pub name: String,
    /// The writer's command line, as shell words. A relative program path
    /// (one with a '/') and any argument starting with "./" or "../" are
    /// relative to `dir`. The roles themselves always run in the scenario's
    /// own directory: the contract's key file is relative to it.
    pub writer: String,
    /// The reader's command line, likewise.
    pub reader: String,
    /// The folder relative paths in the commands are taken from, itself
    /// relative to this file's folder (default: this file's folder).
    #[serde(default)]
    pub dir: Option<String>,
    /// Environment variables set for both roles (e.g. PYTHONPATH); a
    /// scenario's own `env` wins for a name both set.
    #[serde(default)]
    pub env: BTreeMap<EnvName, String>,
    /// The options of the contract it has ("keep", "size", "key-file",
    /// "proj-id", "key", "mode", "exclusive"); a scenario that needs another
    /// is a SKIP naming it, never a FAIL. The seed programs have none.
    #[serde(default)]
    pub options: BTreeSet<ImplOption>,
    /// Known deviations, as an expectations file holds them: scenario id ->
    /// { status = "fail" | "skip", reason = "..." }.
    #[serde(default)]
    pub deviations: BTreeMap<String, Expected>,
}

/// An environment variable's name: not empty, no '=' and no NUL (checked at
/// load, where the file's line and column can be said).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String")]
pub struct EnvName(String);

/// A name an environment variable cannot have.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a valid environment variable name")]
pub struct InvalidEnvName(String);

impl TryFrom<String> for EnvName {
    type Error = InvalidEnvName;
    fn try_from(name: String) -> Result<Self, InvalidEnvName> {
        if name.is_empty() || name.contains(['=', '\0']) {
            Err(InvalidEnvName(name))
        } else {
            Ok(EnvName(name))
        }
    }
}

/// Where an implementation came from: what a replay command names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `--impl NAME`.
    Builtin,
    /// `--impl-file PATH`.
    File(PathBuf),
    /// `--writer CMD --reader CMD`.
    Commands,
}

/// Why an implementation cannot be had: each says what and where in one
/// line (file:line:col for an implementation file's content).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ImplError {
    #[error("--impl-file {}: {source}", .path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The file's content (its position is in the message).
    #[error("{0}")]
    FileContent(Arc<crate::scenario::wire::LoadError>),
    #[error("{}: dir: {source}", .path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("unknown implementation {name:?}: expected one of {}", .known.join(", "))]
    Unknown { name: String, known: Vec<&'static str> },
    #[error("the current folder: {0}")]
    CurrentFolder(#[source] Arc<std::io::Error>),
    #[error("{what} {command:?}: unbalanced quotes")]
    UnbalancedQuotes { what: String, command: String },
    #[error("{what}: empty command")]
    EmptyCommand { what: String },
    #[error("{flag}: program {program:?} not found")]
    ProgramNotFound { flag: String, program: String },
    #[error("{flag}: program {program:?} is not an executable file")]
    NotExecutable { flag: String, program: String },
    #[error("{flag}: program {program:?} not found in PATH")]
    NotInPath { flag: String, program: String },
    #[error("cannot find {name} beside {searched:?} (is it built? cargo build --bin {name})")]
    NotBuilt { name: String, searched: Vec<PathBuf> },
    #[error("this executable's path: {0}")]
    OwnPath(#[source] Arc<std::io::Error>),
    #[error("{0}")]
    RunDir(Arc<crate::rundir::RunDirError>),
    #[error("cannot write the built-in programs into {}: {source}", .dir.display())]
    Unpack {
        dir: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
}

/// Why a program's folder is not staged with it (the program alone is).
#[derive(Debug, thiserror::Error)]
enum StageError {
    #[error("it holds more than {STAGE_MAX_FILES} files or {} MiB", STAGE_MAX_BYTES >> 20)]
    TooBig,
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ImplFile {
    fn parse(path: &Path, text: &str) -> Result<ImplFile, ImplError> {
        crate::scenario::wire::from_toml(path, text).map_err(|e| ImplError::FileContent(Arc::new(e)))
    }

    /// The implementation and its deviations; errors are one line, with
    /// file:line:col for the file's content.
    pub fn load(path: &Path) -> Result<(Implementation, Expectations), ImplError> {
        let text = std::fs::read_to_string(path).map_err(|e| ImplError::ReadFile {
            path: path.to_path_buf(),
            source: Arc::new(e),
        })?;
        let file = ImplFile::parse(path, &text)?;
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = match &file.dir {
            Some(dir) => folder.join(dir),
            None => folder.to_path_buf(),
        };
        let base = std::path::absolute(&base).map_err(|e| ImplError::Dir {
            path: path.to_path_buf(),
            source: Arc::new(e),
        })?;
        let resolve = |what: &str, line: &str| -> Result<Vec<String>, ImplError> {
            let mut words = split_words(what, line)?;
            resolve_paths(&mut words, &base);
            Ok(words)
        };
        let writer = resolve("writer", &file.writer)?;
        let reader = resolve("reader", &file.reader)?;
        // Not staged yet: the caller checks the programs as given first.
        Ok(file.into_implementation(writer, reader, probe_command()?, Origin::File(path.to_path_buf())))
    }

    fn into_implementation(
        self,
        writer: Vec<String>,
        reader: Vec<String>,
        probe: Vec<String>,
        origin: Origin,
    ) -> (Implementation, Expectations) {
        let imp = Implementation {
            name: self.name,
            writer,
            reader,
            probe,
            env: self.env.into_iter().map(|(k, v)| (k.0, v)).collect(),
            origin,
            options: Some(self.options),
            staging: None,
            for_other_uids: None,
            notes: Vec::new(),
            given: None,
        };
        (imp, Expectations(self.deviations))
    }

    pub fn json_schema() -> String {
        serde_json::to_string_pretty(&schemars::schema_for!(ImplFile)).unwrap_or_default()
    }
}

/// The built-in implementations' files, embedded.
const BUILTINS: [(&str, &str); 2] = [
    ("rust", include_str!("../impls/rust.toml")),
    ("c-reference", include_str!("../impls/c-reference.toml")),
];

/// An implementation of the writer/reader pair (and the probe role).
#[derive(Debug, Clone)]
pub struct Implementation {
    pub name: String,
    pub writer: Vec<String>,
    pub reader: Vec<String>,
    /// The raw-syscall probe (`shmconf probe`); the same for every implementation.
    pub probe: Vec<String>,
    /// Environment of the writer and reader (not of the probe).
    pub env: BTreeMap<String, String>,
    pub origin: Origin,
    /// The contract's options it has; None: all of them (`--writer/--reader`,
    /// whose user takes the options on trust).
    pub options: Option<BTreeSet<ImplOption>>,
    /// Copies of the binaries that other uids can reach (removed on drop).
    staging: Option<std::sync::Arc<tempfile::TempDir>>,
    /// The writer's, reader's and probe's commands with those copies, for a
    /// process that runs as another uid; every other process runs the
    /// programs where they are (a copy of a venv's interpreter, or of a
    /// binary without the libraries around it, is not the same program).
    for_other_uids: Option<Box<[Vec<String>; 3]>>,
    /// What staging had to leave out, said once to the user.
    pub notes: Vec<String>,
    /// The writer's and reader's commands as given, before staging.
    given: Option<Box<(Vec<String>, Vec<String>)>>,
}

impl Implementation {
    /// A role's command as a process of the harness's own uid runs it.
    pub fn command(&self, role: Role) -> &[String] {
        match role {
            Role::Writer => &self.writer,
            Role::Reader => &self.reader,
            Role::Probe => &self.probe,
        }
    }

    /// A role's command for a process started as `uid` (None: the
    /// harness's own): where another uid cannot reach a program, its staged
    /// copy.
    pub fn command_as(&self, role: Role, uid: Option<u32>) -> &[String] {
        let other = uid.is_some_and(|u| u != nix::unistd::geteuid().as_raw());
        match (&self.for_other_uids, other) {
            (Some(staged), true) => &staged[role_index(role)],
            _ => self.command(role),
        }
    }

    /// A role's command as the user gave it (before staging), for replay commands.
    pub fn given(&self, role: Role) -> &[String] {
        match (&self.given, role) {
            (Some(g), Role::Writer) => &g.0,
            (Some(g), Role::Reader) => &g.1,
            _ => self.command(role),
        }
    }

    /// The environment a role runs with (the probe is ours: none).
    pub fn env(&self, role: Role) -> Option<&BTreeMap<String, String>> {
        (role != Role::Probe).then_some(&self.env)
    }

    fn builtin_file(name: &str) -> Result<ImplFile, ImplError> {
        let (_, text) = BUILTINS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| ImplError::Unknown {
                name: name.into(),
                known: BUILTINS.iter().map(|(n, _)| *n).collect(),
            })?;
        ImplFile::parse(&Path::new("harness/impls").join(format!("{name}.toml")), text)
    }

    /// A built-in implementation by name, with its known deviations: our
    /// binaries found beside this executable or in the build tree.
    pub fn builtin(name: &str) -> Result<(Implementation, Expectations), ImplError> {
        let find = |program: &str| find_builtin_program(program).map(|p| p.display().to_string());
        let (imp, deviations) = Self::builtin_located(name, find, probe_command()?)?;
        Ok((imp.staged(), deviations))
    }

    /// A built-in implementation as installed in our container image.
    pub fn in_image(name: &str) -> Result<(Implementation, Expectations), ImplError> {
        let installed = |program: &str| Ok(format!("/usr/local/bin/{program}"));
        let probe = vec!["/usr/local/bin/shmconf".into(), "probe".into()];
        Self::builtin_located(name, installed, probe)
    }

    /// A built-in's file with each bare program name replaced by `locate`.
    fn builtin_located(
        name: &str,
        locate: impl Fn(&str) -> Result<String, ImplError>,
        probe: Vec<String>,
    ) -> Result<(Implementation, Expectations), ImplError> {
        let file = Self::builtin_file(name)?;
        let command = |line: &str| -> Result<Vec<String>, ImplError> {
            let mut words = split_words(name, line)?;
            words[0] = locate(&words[0])?;
            Ok(words)
        };
        let (writer, reader) = (command(&file.writer)?, command(&file.reader)?);
        Ok(file.into_implementation(writer, reader, probe, Origin::Builtin))
    }

    /// The names of the built-in implementations.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTINS.iter().map(|(n, _)| *n)
    }

    /// An implementation from ready argv vectors (tools and tests).
    pub fn from_commands(name: &str, writer: &[&str], reader: &[&str], probe: &[&str]) -> Implementation {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Implementation {
            name: name.into(),
            writer: own(writer),
            reader: own(reader),
            probe: own(probe),
            env: BTreeMap::new(),
            origin: Origin::Commands,
            staging: None,
            for_other_uids: None,
            options: None,
            notes: Vec::new(),
            given: None,
        }
    }

    /// `--writer CMD --reader CMD`: split like a shell; relative paths are
    /// taken from the invocation's directory as an implementation file's
    /// are from its folder ([`resolve_paths`]; roles run in the scenario's
    /// temp dir).
    pub fn custom(name: &str, writer: &str, reader: &str) -> Result<Implementation, ImplError> {
        let cwd = std::env::current_dir().map_err(|e| ImplError::CurrentFolder(Arc::new(e)))?;
        let from_cwd = |flag: &str, line: &str| -> Result<Vec<String>, ImplError> {
            let mut argv = split_words(flag, line)?;
            resolve_paths(&mut argv, &cwd);
            Ok(argv)
        };
        // As given, for messages and replay commands (`./w` stays `./w`).
        let given = (split_words("--writer", writer)?, split_words("--reader", reader)?);
        Ok(Implementation {
            name: name.into(),
            writer: from_cwd("--writer", writer)?,
            reader: from_cwd("--reader", reader)?,
            probe: probe_command()?,
            env: BTreeMap::new(),
            origin: Origin::Commands,
            staging: None,
            for_other_uids: None,
            options: None,
            notes: Vec::new(),
            given: Some(Box::new(given)),
        })
    }

    /// Scenarios run roles as other uids (e.g. 65534), which must be able to
    /// reach the programs: a build tree under a private directory (a 0700
    /// temp dir, a home) is not. Then copy them to a run-scoped dir anyone
    /// can traverse, each program's folder to a folder of its own, so
    /// `./good/prog` and `./bad/prog` stay two programs. What is copied:
    /// our own programs (self-contained) alone; another implementation's
    /// program with the regular files of its folder (a script's modules, a
    /// binary's libraries beside it; up to [`STAGE_MAX_FILES`] files and
    /// [`STAGE_MAX_BYTES`], else the program alone, said in a note), and
    /// likewise a file its command names by absolute path (`python3
    /// /home/me/impl/reader.py`).
    pub fn staged(mut self) -> Implementation {
        let wanted = self.unreachable_words();
        if wanted.is_empty() {
            return self;
        }
        // Inside a run dir, so a killed run's copies are swept too.
        match crate::rundir::dir_for_other_uids("bin-") {
            Ok(crate::rundir::ReachableDir::RunDir(dir)) => self.staged_in(dir, wanted),
            Ok(crate::rundir::ReachableDir::Elsewhere { dir, tmp, blocked }) => {
                self.notes.push(format!(
                    "other uids cannot reach the temp dir {} (TMPDIR; {} is not searchable by others): \
                     the programs they run are copied to {}",
                    tmp.display(),
                    blocked.display(),
                    dir.path().display()
                ));
                self.staged_in(dir, wanted)
            }
            Err(e) => {
                self.notes
                    .push(format!("cannot stage the programs for other uids: {e}"));
                self
            }
        }
    }

    /// Stage the `wanted` words (role, word index, with its folder?) into
    /// `dir`, for the processes that run as other uids.
    fn staged_in(mut self, dir: tempfile::TempDir, wanted: Vec<(Role, usize, bool)>) -> Implementation {
        let mut staged = Box::new([self.writer.clone(), self.reader.clone(), self.probe.clone()]);
        // One staged folder per source folder (a writer and a reader of one
        // folder share it), one per program when only the program is taken.
        let mut folders: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
        for (role, i, folder) in wanted {
            let src = PathBuf::from(&staged[role_index(role)][i]);
            let (Some(parent), Some(file_name)) = (src.parent(), src.file_name()) else {
                continue;
            };
            let key = if folder {
                std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf())
            } else {
                src.clone()
            };
            let staged_folder = match folders.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let f = dir.path().join(folders.len().to_string());
                    let made = std::fs::create_dir(&f)
                        .and_then(|()| std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)));
                    if let Err(e) = made {
                        self.notes.push(format!("cannot stage {}: {e}", src.display()));
                        continue;
                    }
                    if folder {
                        if let Err(why) = copy_folder_files(parent, &f) {
                            self.notes.push(format!(
                                "{}: only the program is staged for other uids, not its folder ({why})",
                                src.display()
                            ));
                        }
                    }
                    folders.insert(key, f.clone());
                    f
                }
            };
            let dst = staged_folder.join(file_name);
            if dst.is_file() || std::fs::copy(&src, &dst).is_ok() {
                staged[role_index(role)][i] = dst.display().to_string();
            } else {
                self.notes
                    .push(format!("cannot stage {} for other uids", src.display()));
            }
        }
        self.staging = Some(std::sync::Arc::new(dir));
        self.for_other_uids = Some(staged);
        self
    }
}

fn role_index(role: Role) -> usize {
    match role {
        Role::Writer => 0,
        Role::Reader => 1,
        Role::Probe => 2,
    }
}

impl Implementation {
    /// The words of the commands other uids cannot reach: (role, word
    /// index, take its folder's files too?). A role's program (a path), and
    /// an absolute path to a file among its arguments (a script).
    fn unreachable_words(&self) -> Vec<(Role, usize, bool)> {
        let whole_folder = self.origin != Origin::Builtin;
        let mut wanted = Vec::new();
        for role in [Role::Writer, Role::Reader, Role::Probe] {
            let folder = whole_folder && role != Role::Probe;
            for (i, word) in self.command(role).iter().enumerate() {
                let path = Path::new(word);
                let unreachable = if i == 0 {
                    word.contains('/') && !reachable_by_others(path)
                } else {
                    path.is_absolute() && path.is_file() && !readable_by_others(path)
                };
                if unreachable {
                    wanted.push((role, i, folder));
                }
            }
        }
        wanted
    }
}

/// Most files, and bytes, staged from one program's folder.
pub const STAGE_MAX_FILES: usize = 256;
pub const STAGE_MAX_BYTES: u64 = 256 << 20;

/// Copy the regular files (not folders, not other kinds; links followed to
/// regular files) of `from` into `to`, within the bounds; nothing is copied
/// when the folder exceeds them.
fn copy_folder_files(from: &Path, to: &Path) -> Result<(), StageError> {
    let mut files = Vec::new();
    let mut bytes = 0u64;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StageError::Io { path, source }
    };
    for entry in std::fs::read_dir(from).map_err(io(from))?.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(md) = std::fs::metadata(&path) else { continue };
        if !md.is_file() {
            continue;
        }
        bytes += md.len();
        files.push(path);
        if files.len() > STAGE_MAX_FILES || bytes > STAGE_MAX_BYTES {
            return Err(StageError::TooBig);
        }
    }
    for f in files {
        if let Some(name) = f.file_name() {
            std::fs::copy(&f, to.join(name)).map_err(io(&f))?;
        }
    }
    Ok(())
}

/// Can a uid other than the owner execute this file (every parent searchable)?
///
/// A link is judged by the folders that lead to it (and the mode of the
/// file it names), not by where it leads: a venv's `bin/python` is a link
/// that must run as that link (its location is what makes it the venv's);
/// a copy of the interpreter it leads to is not the venv's python.
fn reachable_by_others(path: &Path) -> bool {
    crate::rundir::blocked_for_others(path).is_none()
}

/// Can a uid other than the owner read this file (every parent searchable)?
fn readable_by_others(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
        && path.parent().is_some_and(reachable_by_others)
}

/// Preflight: the program of a command exists and is executable (a path, or
/// a name found in PATH), so a typo is one clear error before any scenario
/// runs rather than a BROKEN per scenario.
pub fn check_program(flag: &str, argv: &[String]) -> Result<(), ImplError> {
    use nix::unistd::{access, AccessFlags};
    let program = &argv[0];
    let (flag_, program_) = (flag.to_string(), program.clone());
    let executable = |p: &Path| p.is_file() && access(p, AccessFlags::X_OK).is_ok();
    if program.contains('/') {
        let p = Path::new(program);
        if !p.exists() {
            return Err(ImplError::ProgramNotFound {
                flag: flag_,
                program: program_,
            });
        }
        if !executable(p) {
            return Err(ImplError::NotExecutable {
                flag: flag_,
                program: program_,
            });
        }
        return Ok(());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| executable(&d.join(program))) {
        Ok(())
    } else {
        Err(ImplError::NotInPath {
            flag: flag_,
            program: program_,
        })
    }
}

/// Make a command's relative paths absolute against `base` (the caller's
/// folder for `--writer`/`--reader`, the file's folder for an
/// implementation file), since the roles run in the scenario's temp dir: the
/// program when it has a `/` (`./writer`, `bin/writer`; a bare name is looked
/// up in PATH), and an argument written as a relative path (`./reader.py`,
/// `../lib/reader.py`). Any other argument stays a word, whatever files the
/// base holds: `reader.py`, `writer` or `keys/k` may be a role name, an
/// option value or a file of the scenario's own dir; write `./impl/reader.py`
/// for a file of yours.
pub fn resolve_paths(words: &mut [String], base: &Path) {
    for (i, word) in words.iter_mut().enumerate() {
        let path = Path::new(word.as_str());
        let relative_path = if i == 0 {
            word.contains('/') && path.is_relative()
        } else {
            word.starts_with("./") || word.starts_with("../")
        };
        if relative_path {
            let tail = word.trim_start_matches("./");
            *word = base.join(tail).display().to_string();
        }
    }
}

fn split_words(what: &str, cmd: &str) -> Result<Vec<String>, ImplError> {
    let argv = shlex::split(cmd).ok_or_else(|| ImplError::UnbalancedQuotes {
        what: what.into(),
        command: cmd.into(),
    })?;
    if argv.is_empty() {
        return Err(ImplError::EmptyCommand { what: what.into() });
    }
    Ok(argv)
}

/// Directories to look for our binaries in: beside the running executable,
/// and its parent (cargo puts test binaries in target/<profile>/deps).
fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            dirs.push(dir.to_path_buf());
            if let Some(up) = dir.parent() {
                dirs.push(up.to_path_buf());
            }
        }
    }
    dirs
}

/// Find one of our binaries beside this executable. (A unit test binary of
/// this crate, built without them, has them built first: see
/// [`build_for_unit_tests`]; production code never runs cargo.)
pub fn find_binary(name: &str) -> Result<PathBuf, ImplError> {
    let look = || search_dirs().into_iter().map(|d| d.join(name)).find(|p| p.is_file());
    if let Some(p) = look() {
        return Ok(p);
    }
    #[cfg(test)]
    if build_for_unit_tests(name) {
        if let Some(p) = look() {
            return Ok(p);
        }
    }
    Err(ImplError::NotBuilt {
        name: name.into(),
        searched: search_dirs(),
    })
}

/// `cargo test -p shmconf-harness --lib` alone builds no binary: build the
/// package that has `name`, as the test profile would.
#[cfg(test)]
fn build_for_unit_tests(name: &str) -> bool {
    let package = if name == "shmconf" {
        "shmconf-harness"
    } else {
        "shmconf"
    };
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args([
        "build",
        "--quiet",
        "--manifest-path",
        manifest,
        "-p",
        package,
        "--bin",
        name,
    ]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    cmd.status().map(|s| s.success()).unwrap_or(false)
}

/// A built-in's program by its bare name: beside this executable (a build
/// tree, the container image), the C reference where build.rs compiled it,
/// else from this executable itself (an installed binary: see [`unpacked_builtins`]).
fn find_builtin_program(name: &str) -> Result<PathBuf, ImplError> {
    let built = Path::new(env!("SHMCONF_C_REFERENCE_DIR")).join(name);
    if let Some(found) = search_dirs().into_iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        Ok(found)
    } else if name.starts_with("c-") && built.is_file() {
        Ok(built)
    } else {
        Ok(unpacked_builtins()?.join(name))
    }
}

/// The C reference's binaries as build.rs compiled them, carried inside this
/// executable: an installed shmconf has no build tree to find them in.
const C_REFERENCE: [(&str, &[u8]); 2] = [
    (
        "c-writer",
        include_bytes!(concat!(env!("SHMCONF_C_REFERENCE_DIR"), "/c-writer")),
    ),
    (
        "c-reader",
        include_bytes!(concat!(env!("SHMCONF_C_REFERENCE_DIR"), "/c-reader")),
    ),
];

/// The file name of the PID namespaces' init (native/pid-init.c).
const PID_INIT: &str = "pid-init";

/// The built-in programs from this executable alone, in a folder of the
/// run's dir (gone with it): the C reference's bytes written out, and
/// `shm-writer` / `shm-reader` as links to the shmconf binary, which runs
/// that program when started under its name (`shmconf::programs`). Written
/// once per process, before the files are used, each under a temporary name
/// and renamed into place, so no one ever runs a half-written program.
fn unpacked_builtins() -> Result<&'static Path, ImplError> {
    static DIR: std::sync::OnceLock<Result<PathBuf, ImplError>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let shmconf = shmconf_binary()?;
        let run = crate::rundir::current().map_err(|e| ImplError::RunDir(Arc::new(e)))?;
        let dir = run.path().join("builtin");
        let write = || -> std::io::Result<()> {
            std::fs::DirBuilder::new().mode(0o755).create(&dir)?;
            for (name, bytes) in C_REFERENCE {
                let partial = dir.join(format!(".{name}.partial"));
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o755)
                    .open(&partial)?;
                std::io::Write::write_all(&mut f, bytes)?;
                drop(f);
                std::fs::rename(&partial, dir.join(name))?;
            }
            // Ours under their names: links to shmconf where other uids
            // can reach it; else the file itself in the run dir (a hard
            // link, or a copy across filesystems), as an installed binary
            // in a private ~/.cargo/bin is.
            let writer = dir.join("shm-writer");
            if shmconf.parent().is_some_and(reachable_by_others) {
                std::os::unix::fs::symlink(&shmconf, &writer)?;
                std::os::unix::fs::symlink(&shmconf, dir.join("shm-reader"))?;
            } else {
                if std::fs::hard_link(&shmconf, &writer).is_err() {
                    let partial = dir.join(".shm-writer.partial");
                    std::fs::copy(&shmconf, &partial)?;
                    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
                    std::fs::rename(&partial, &writer)?;
                }
                std::fs::hard_link(&writer, dir.join("shm-reader"))?;
            }
            Ok(())
        };
        write().map_err(|e| ImplError::Unpack {
            dir: dir.clone(),
            source: Arc::new(e),
        })?;
        Ok(dir)
    })
    .as_deref()
    .map_err(Clone::clone)
}

/// This executable when it is shmconf, whatever its file is named (an
/// installed or released binary may be `shmconf-x86_64-linux`); a cargo
/// test binary (in a `deps` folder) finds the shmconf built beside it.
fn shmconf_binary() -> Result<PathBuf, ImplError> {
    let exe = std::env::current_exe().map_err(|e| ImplError::OwnPath(Arc::new(e)))?;
    let a_test_binary = exe.parent().and_then(Path::file_name).is_some_and(|d| d == "deps");
    if a_test_binary {
        find_binary("shmconf")
    } else {
        Ok(exe)
    }
}

fn probe_command() -> Result<Vec<String>, ImplError> {
    Ok(vec![shmconf_binary()?.display().to_string(), "probe".into()])
}

/// The init of each scenario's PID namespace: native/pid-init.c as build.rs
/// compiled it, where the build tree is (a few kilobytes to exec per
/// scenario, and per order of an exploration, instead of the whole harness);
/// else `shmconf pid-init`, which does the same. An installed shmconf uses
/// its own: a copy unpacked into the run dir could sit on a noexec mount.
pub fn pid_init_command() -> Option<Vec<String>> {
    let built = Path::new(env!("SHMCONF_C_REFERENCE_DIR")).join(PID_INIT);
    if built.is_file() {
        return Some(vec![built.display().to_string()]);
    }
    shmconf_pid_init_command()
}

/// `shmconf pid-init`: the init whose binary also serves `kernel-view` in
/// its namespace (the shared backend asks it which segments were made there).
pub fn shmconf_pid_init_command() -> Option<Vec<String>> {
    shmconf_binary()
        .ok()
        .map(|p| vec![p.display().to_string(), "pid-init".into()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A link is judged by the folders that lead to it: one in a private
    /// folder is not reachable though it leads to /bin/sh; one in a public
    /// folder is, whatever it leads to (a venv's python must run as itself).
    #[test]
    fn a_link_is_judged_by_the_folders_that_lead_to_it() {
        let public = tempfile::tempdir().unwrap();
        std::fs::set_permissions(public.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let private = public.path().join("home");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = |name: &str, dir: &Path, to: &Path| {
            let l = dir.join(name);
            std::os::unix::fs::symlink(to, &l).unwrap();
            l
        };
        let system = Path::new("/bin/sh");
        assert!(reachable_by_others(system));
        assert!(
            reachable_by_others(&link("sh", public.path(), system)),
            "public to public"
        );
        assert!(
            !reachable_by_others(&link("py", &private, system)),
            "a private link to /bin/sh"
        );
    }

    /// Relative paths in a command are taken from its base folder, the
    /// same way for the CLI and implementation files; words stay words.
    #[test]
    fn relative_paths_are_taken_from_the_base_folder() {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir(base.path().join("impl")).unwrap();
        std::fs::write(base.path().join("impl/reader.py"), "").unwrap();
        let b = |rel: &str| base.path().join(rel).display().to_string();
        let resolved = |line: &str| {
            let mut words = split_words("t", line).unwrap();
            resolve_paths(&mut words, base.path());
            words
        };
        assert_eq!(resolved("./writer writer"), [b("writer"), "writer".into()]);
        assert_eq!(resolved("python3 ./reader.py"), ["python3".into(), b("reader.py")]);
        assert_eq!(
            resolved("python3 ../x/reader.py"),
            ["python3".into(), b("../x/reader.py")]
        );
        assert_eq!(
            resolved("python3 ./impl/reader.py"),
            ["python3".into(), b("impl/reader.py")]
        );
        assert_eq!(
            resolved("python3 impl/reader.py"),
            ["python3", "impl/reader.py"],
            "a word, though it names a file there"
        );
        assert_eq!(resolved("bin/w --out a/b"), [b("bin/w"), "--out".into(), "a/b".into()]);
        assert_eq!(
            resolved("python3 reader.py"),
            ["python3", "reader.py"],
            "a bare word stays"
        );
        assert_eq!(resolved("/usr/bin/env x"), ["/usr/bin/env", "x"]);
    }

    /// Two programs of one name in two private folders stay two programs;
    /// one folder's programs share its staged copy, with its other files.
    #[test]
    fn staging_keeps_programs_distinct_and_takes_their_folder() {
        let root = tempfile::tempdir().unwrap();
        let private = root.path().join("private");
        for (rel, text) in [
            ("good/prog", "#!/bin/sh\necho good\n"),
            ("bad/prog", "#!/bin/sh\necho bad\n"),
            ("bad/lib.sh", "x=1\n"),
        ] {
            let p = private.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = |rel: &str| private.join(rel).display().to_string();
        let mut imp = Implementation::from_commands("t", &[&path("good/prog")], &[&path("bad/prog")], &["/bin/true"]);
        imp.origin = Origin::File(root.path().join("impl.toml"));
        // Its own staging folder, not the test process's shared run dir.
        let into = tempfile::Builder::new().prefix("bin-").tempdir_in(root.path()).unwrap();
        std::fs::set_permissions(into.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let wanted = imp.unreachable_words();
        assert_eq!(
            wanted,
            [(Role::Writer, 0, true), (Role::Reader, 0, true)],
            "the private programs, not the probe others reach"
        );
        let staged = imp.staged_in(into, wanted);
        let other = Some(65534);
        let (w, r) = (
            PathBuf::from(&staged.command_as(Role::Writer, other)[0]),
            PathBuf::from(&staged.command_as(Role::Reader, other)[0]),
        );
        assert_ne!(w, r, "two programs of one name stay two");
        assert_eq!(std::fs::read_to_string(&w).unwrap(), "#!/bin/sh\necho good\n");
        assert_eq!(std::fs::read_to_string(&r).unwrap(), "#!/bin/sh\necho bad\n");
        assert!(r.with_file_name("lib.sh").is_file(), "the folder's files come along");
        assert!(reachable_by_others(&w) && reachable_by_others(&r));
        assert_eq!(staged.given(Role::Reader), [path("bad/prog")], "as given, for messages");
        assert_eq!(
            staged.command_as(Role::Probe, other),
            ["/bin/true"],
            "what others reach stays where it is"
        );
        // The harness's own uid runs the programs where they are: a copy of
        // a venv's interpreter is not the venv's.
        let own = Some(nix::unistd::geteuid().as_raw());
        for uid in [None, own] {
            assert_eq!(staged.command_as(Role::Writer, uid), [path("good/prog")]);
            assert_eq!(staged.command_as(Role::Reader, uid), [path("bad/prog")]);
        }
    }
}
