//! Implementations under test: how each role becomes a command line.

use std::path::{Path, PathBuf};

use std::collections::{BTreeMap, BTreeSet};

use crate::outcome::{Expectations, Expected};
use crate::scenario::{ImplOption, Role};

/// `--impl-file`: an implementation described in one file (TOML; schema:
/// `shmconf schema --impl-file`).
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImplFile {
    /// The name in reports.
    pub name: String,
    /// The writer's command line, as shell words; a relative program path
    /// (one with a '/') is relative to this file's folder.
    pub writer: String,
    /// The reader's command line, likewise.
    pub reader: String,
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

impl ImplFile {
    /// The implementation and its deviations; errors are one line, with
    /// file:line:col for the file's content.
    pub fn load(path: &Path) -> Result<(Implementation, Expectations), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("--impl-file {}: {e}", path.display()))?;
        let file: ImplFile = crate::scenario::wire::from_toml(path, &text).map_err(|e| e.to_string())?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |what: &str, line: &str| -> Result<Vec<String>, String> {
            let mut words = split_command(what, line)?;
            let program = Path::new(&words[0]);
            if program.is_relative() && words[0].contains('/') {
                words[0] = base.join(program).display().to_string();
            }
            Ok(words)
        };
        let imp = Implementation {
            name: file.name.clone(),
            writer: resolve("writer", &file.writer)?,
            reader: resolve("reader", &file.reader)?,
            probe: probe_command()?,
            default_expectations: None,
            staging: None,
            builtin: false,
            options: Some(file.options),
        }
        .staged();
        Ok((imp, Expectations(file.deviations)))
    }

    pub fn json_schema() -> String {
        serde_json::to_string_pretty(&schemars::schema_for!(ImplFile)).unwrap_or_default()
    }
}

/// An implementation of the writer/reader pair (and the probe role).
#[derive(Debug, Clone)]
pub struct Implementation {
    pub name: String,
    pub writer: Vec<String>,
    pub reader: Vec<String>,
    /// The raw-syscall probe (`shmconf probe`); the same for every implementation.
    pub probe: Vec<String>,
    /// Known deviations shipped with a built-in implementation (TOML text).
    pub default_expectations: Option<&'static str>,
    /// One of ours (`--impl NAME`), not `--writer/--reader`.
    pub builtin: bool,
    /// The contract's options it has; None: all of them (ours, and
    /// `--writer/--reader`, whose user takes the options on trust).
    pub options: Option<std::collections::BTreeSet<ImplOption>>,
    /// Copies of the binaries that other uids can reach (removed on drop).
    staging: Option<std::sync::Arc<tempfile::TempDir>>,
}

impl Implementation {
    pub fn command(&self, role: Role) -> &[String] {
        match role {
            Role::Writer => &self.writer,
            Role::Reader => &self.reader,
            Role::Probe => &self.probe,
        }
    }

    /// The built-in implementations by name.
    pub fn builtin(name: &str) -> Result<Implementation, String> {
        match name {
            "rust" => Ok(Implementation {
                name: "rust".into(),
                writer: vec![find_binary("shm-writer")?.display().to_string()],
                reader: vec![find_binary("shm-reader")?.display().to_string()],
                probe: probe_command()?,
                default_expectations: None,
                staging: None,
                builtin: true,
                options: None,
            }
            .staged()),
            "c-reference" => Ok(Implementation {
                name: "c-reference".into(),
                writer: vec![find_c_reference("c-writer")?.display().to_string()],
                reader: vec![find_c_reference("c-reader")?.display().to_string()],
                probe: probe_command()?,
                default_expectations: Implementation::builtin_expectations("c-reference"),
                staging: None,
                builtin: true,
                options: None,
            }
            .staged()),
            other => Err(format!(
                "unknown implementation {other:?}: expected rust or c-reference"
            )),
        }
    }

    /// A built-in implementation as installed in our Docker image.
    pub fn in_image(name: &str) -> Result<Implementation, String> {
        let (writer, reader) = match name {
            "rust" => ("shm-writer", "shm-reader"),
            "c-reference" => ("c-writer", "c-reader"),
            other => {
                return Err(format!(
                    "unknown implementation {other:?}: expected rust or c-reference"
                ))
            }
        };
        let bin = |b: &str| vec![format!("/usr/local/bin/{b}")];
        Ok(Implementation {
            name: name.into(),
            writer: bin(writer),
            reader: bin(reader),
            probe: vec!["/usr/local/bin/shmconf".into(), "probe".into()],
            default_expectations: Implementation::builtin_expectations(name),
            staging: None,
            builtin: true,
            options: None,
        })
    }

    fn builtin_expectations(name: &str) -> Option<&'static str> {
        (name == "c-reference").then_some(include_str!("../reference/expectations.toml"))
    }

    /// An implementation from ready argv vectors (tools and tests).
    pub fn from_commands(name: &str, writer: &[&str], reader: &[&str], probe: &[&str]) -> Implementation {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Implementation {
            name: name.into(),
            writer: own(writer),
            reader: own(reader),
            probe: own(probe),
            default_expectations: None,
            staging: None,
            builtin: false,
            options: None,
        }
    }

    /// `--writer CMD --reader CMD`: split like a shell; a relative program
    /// path is taken from the invocation's directory (roles run in the
    /// scenario's temp dir).
    pub fn custom(name: &str, writer: &str, reader: &str) -> Result<Implementation, String> {
        Ok(Implementation {
            name: name.into(),
            writer: split_command("--writer", writer)?,
            reader: split_command("--reader", reader)?,
            probe: probe_command()?,
            default_expectations: None,
            staging: None,
            builtin: false,
            options: None,
        })
    }

    /// Scenarios run roles as other uids (e.g. 65534), which must be able to
    /// reach the binaries: a build tree under a private directory (a 0700
    /// temp dir, a home) is not. Then copy our binaries to a run-scoped dir
    /// anyone can traverse.
    fn staged(mut self) -> Implementation {
        let programs: Vec<String> = [&self.writer[0], &self.reader[0], &self.probe[0]]
            .into_iter()
            .cloned()
            .collect();
        if programs.iter().all(|p| reachable_by_others(Path::new(p))) {
            return self;
        }
        // Inside the run's dir, so a killed run's copies are swept too.
        let Ok(dir) = crate::engine::rundir::scenario_dir("bin-") else {
            return self;
        };
        // Only what others cannot reach (a user's script found through an
        // interpreter in /usr/bin stays where it is).
        for argv in [&mut self.writer, &mut self.reader, &mut self.probe] {
            if reachable_by_others(Path::new(&argv[0])) {
                continue;
            }
            let src = PathBuf::from(&argv[0]);
            let dst = dir.path().join(src.file_name().unwrap_or_default());
            if dst.exists() || std::fs::copy(&src, &dst).is_ok() {
                argv[0] = dst.display().to_string();
            }
        }
        self.staging = Some(std::sync::Arc::new(dir));
        self
    }
}

/// Can a uid other than the owner execute this file (every parent searchable)?
fn reachable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.ancestors()
        .all(|p| p.as_os_str().is_empty() || std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// Preflight: the program of a command exists and is executable (a path, or
/// a name found in PATH), so a typo is one clear error before any scenario
/// runs rather than a BROKEN per scenario.
pub fn check_program(flag: &str, argv: &[String]) -> Result<(), String> {
    use nix::unistd::{access, AccessFlags};
    let program = &argv[0];
    let executable = |p: &Path| p.is_file() && access(p, AccessFlags::X_OK).is_ok();
    if program.contains('/') {
        let p = Path::new(program);
        if !p.exists() {
            return Err(format!("{flag}: program {program:?} not found"));
        }
        if !executable(p) {
            return Err(format!("{flag}: program {program:?} is not an executable file"));
        }
        return Ok(());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| executable(&d.join(program))) {
        Ok(())
    } else {
        Err(format!("{flag}: program {program:?} not found in PATH"))
    }
}

fn split_command(flag: &str, cmd: &str) -> Result<Vec<String>, String> {
    let mut argv = shlex::split(cmd).ok_or_else(|| format!("{flag} {cmd:?}: unbalanced quotes"))?;
    if argv.is_empty() {
        return Err(format!("{flag}: empty command"));
    }
    if argv[0].contains('/') && Path::new(&argv[0]).is_relative() {
        let abs = std::env::current_dir().map_err(|e| e.to_string())?.join(&argv[0]);
        argv[0] = abs.display().to_string();
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

/// Find one of our binaries; if it is not built, build it with cargo.
pub fn find_binary(name: &str) -> Result<PathBuf, String> {
    let look = || search_dirs().into_iter().map(|d| d.join(name)).find(|p| p.is_file());
    if let Some(p) = look() {
        return Ok(p);
    }
    // Not built yet (e.g. `cargo test -p shmconf-harness` alone): build the package that has it.
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
    let built = cmd.status().map(|s| s.success()).unwrap_or(false);
    look().filter(|_| built).ok_or_else(|| {
        format!(
            "cannot find {name} beside {:?}, and building it with cargo failed",
            search_dirs()
        )
    })
}

/// The C reference: beside the executable (Docker image), else where build.rs compiled it.
fn find_c_reference(name: &str) -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = search_dirs().into_iter().map(|d| d.join(name)).collect();
    candidates.push(Path::new(env!("SHMCONF_C_REFERENCE_DIR")).join(name));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| format!("cannot find the C reference {name}"))
}

fn shmconf_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    if exe.file_name().is_some_and(|n| n == "shmconf") {
        Ok(exe)
    } else {
        find_binary("shmconf")
    }
}

fn probe_command() -> Result<Vec<String>, String> {
    Ok(vec![shmconf_binary()?.display().to_string(), "probe".into()])
}

/// `shmconf pid-init`, the init of each scenario's PID namespace.
pub fn pid_init_command() -> Option<Vec<String>> {
    shmconf_binary()
        .ok()
        .map(|p| vec![p.display().to_string(), "pid-init".into()])
}
