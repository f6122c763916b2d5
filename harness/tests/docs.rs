//! The commands the docs show are commands shmconf takes, and they run.
//! Every `shmconf` line in a fenced block of README.md, BENCHMARKS.md,
//! docs/*.md and scenarios/README.md (a command continued with `\\` read
//! whole; also `target/release/shmconf ...`, `docker/dist/shmconf ...`, and
//! `docker run ... shmconf ...`) is one trial named by its file and line:
//! - it parses: run with `--help` appended, which clap honours only once
//!   every word before it parsed, so a renamed flag, a removed subcommand or
//!   a value of the wrong form (`--step-timeout 5q`) fails here;
//! - the read-only ones (`list`, `show`, `schema`, `completions`, `man`)
//!   run for real from the repository's root and must succeed;
//! - `run` lines run for real, as from the repository's root (or the folder
//!   an earlier `cd DIR` of the same block went to), with `scenarios` there
//!   and outputs in a scratch folder, and must reach a verdict (exit 0 or 1).
//!   What the reader brings is provided: a program (`./mywriter`,
//!   `python3 ./reader.py`) is built from the sources beside it in the
//!   repository when there are some (the tutorial's `writer.cpp`), else it
//!   runs our own program for its role; an implementation file names ours;
//!   `matrix --from` reports are made by a local matrix first;
//! - lines that need a container engine or minutes (`docker run` of the
//!   image, `matrix` of targets, `bench`) run only in the full pass:
//!   `SHMCONF_DOCS_IMAGE=IMAGE` (the image built from this tree, put where
//!   the docs say `shmconf`), which `.ci/run` sets after building the image;
//!   otherwise they are ignored saying so. The full pass runs only those
//!   (every other line ran in the first pass, `cargo test`, of the same CI
//!   run; running the whole catalogue six times again took 12 minutes).
//!
//! Shell around the command (a pipe, a redirection, a comment) is cut off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// The image the full pass runs `docker run` and `matrix` lines with.
const FULL_PASS: &str = "SHMCONF_DOCS_IMAGE";

/// One documented shmconf command.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    /// The engine's words before the image, for `docker run ... shmconf`.
    engine: Option<Vec<String>>,
    /// How the line names shmconf (`shmconf`, `target/release/shmconf`).
    program: String,
    args: Vec<String>,
}

/// A documented command and where the docs show it.
#[derive(Debug, Clone)]
struct Documented {
    place: String,
    /// Where an earlier `cd DIR` of the same block went (from the root).
    cwd: Option<String>,
    line: Line,
}

/// Subcommands whose documented lines are run as written.
const RUN_FOR_REAL: &[&str] = &["list", "show", "schema", "completions", "man", "fuzz"];

/// The fewest documented commands expected: a change that makes the
/// extraction find (nearly) nothing fails instead of checking nothing.
const FEWEST_COMMANDS: usize = 15;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![
        repo().join("README.md"),
        repo().join("BENCHMARKS.md"),
        repo().join("scenarios/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The shell words of one line of a code block, cut where the command ends
/// (a comment, pipe, redirection or list).
fn command_words(line: &str) -> Option<Vec<String>> {
    let line = line.trim().trim_start_matches("$ ");
    let mut words = shlex::split(line)?;
    if let Some(end) = words.iter().position(|w| {
        w.starts_with('#')
            || ["|", "||", "&&", ";", "&"].contains(&w.as_str())
            || w.starts_with('>')
            || w.starts_with('<')
            || w.starts_with("2>")
    }) {
        words.truncate(end);
    }
    Some(words)
}

/// The shmconf command on one line of a code block, if it runs shmconf.
fn shmconf_line(line: &str) -> Option<Line> {
    let words = command_words(line)?;
    let first = words.first()?;
    let program = Path::new(first).file_name()?.to_str()?;
    if program == "shmconf" && !first.contains("~") {
        return Some(Line {
            engine: None,
            program: first.clone(),
            args: words[1..].to_vec(),
        });
    }
    if ["docker", "podman"].contains(&first.as_str()) && words.get(1).is_some_and(|w| w == "run") {
        // The image is the first word naming shmconf that is not an option's
        // value; its default command is `run`.
        let image = words.iter().position(|w| w == "shmconf" || w.starts_with("shmconf:"))?;
        return Some(Line {
            engine: Some(words[..image].to_vec()),
            program: words[image].clone(),
            args: words[image + 1..].to_vec(),
        });
    }
    None
}

/// Every documented command, in the order of the docs.
fn documented() -> Vec<Documented> {
    let mut found = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(repo()).unwrap_or(&file).display().to_string();
        let mut in_block = false;
        let mut cwd: Option<String> = None;
        // A command continued with a trailing `\`: (its first line, the text so far).
        let mut pending: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_block = !in_block;
                cwd = None;
                continue;
            }
            if !in_block {
                continue;
            }
            let (first, mut whole) = pending.take().unwrap_or((i + 1, String::new()));
            whole.push_str(line);
            if let Some(head) = whole.strip_suffix('\\') {
                pending = Some((first, format!("{head} ")));
                continue;
            }
            if let Some(words) = command_words(&whole) {
                if let [cd, dir, ..] = &words[..] {
                    if cd == "cd" {
                        cwd = Some(dir.clone());
                    }
                }
            }
            if let Some(line) = shmconf_line(&whole) {
                found.push(Documented {
                    place: format!("{name}:{first}"),
                    cwd: cwd.clone(),
                    line,
                });
            }
        }
    }
    found
}

fn shmconf(args: &[String]) -> assert_cmd::Command {
    let mut std_cmd = std::process::Command::new(env!("CARGO_BIN_EXE_shmconf"));
    shmconf::sysv::process::end_with_parent(&mut std_cmd);
    let mut cmd = assert_cmd::Command::from_std(std_cmd);
    cmd.args(args).current_dir(repo()).timeout(Duration::from_secs(120));
    cmd
}

/// Something a documented command needs that the docs' reader brings.
#[derive(Debug, Clone, PartialEq)]
enum Brought {
    /// Their program for a role (`writer`/`reader`), run by `interpreter`
    /// (`python3`) when one is named first.
    Program {
        path: String,
        role: &'static str,
        interpreter: Option<String>,
    },
    /// Their implementation file.
    ImplFile(String),
    /// A file the test cannot provide.
    Other(String),
}

/// What a documented command needs that the docs' reader brings, as seen
/// from `cwd`: paths that do not exist there. Outputs (`--junit`,
/// `--record`, `--summary`, `--json`, `--svg`, `--out`) are made, not
/// needed; `--order`, `--tag`, `--skip`, `--name` values are not paths.
fn brought_by_the_reader(args: &[String], cwd: &Path) -> Vec<Brought> {
    const NOT_NEEDED: &[&str] = &[
        "--junit",
        "--record",
        "--summary",
        "--json",
        "--svg",
        "--out",
        "--order",
        "--tag",
        "--skip",
        "--name",
        "--image",
        "--target",
        "--from",
    ];
    let missing = |path: &str| {
        let looks_like_a_file = path.contains('/') || path.ends_with(".toml");
        // `run` takes scenario ids as `show` does.
        let an_id = cwd.join("scenarios").join(format!("{path}.toml")).is_file();
        looks_like_a_file && !an_id && path != "/dev/null" && !cwd.join(path).exists()
    };
    let mut found = vec![];
    let mut words = args.iter().skip(1).peekable();
    while let Some(word) = words.next() {
        if NOT_NEEDED.contains(&word.as_str()) {
            words.next();
            continue;
        }
        if word == "--writer" || word == "--reader" {
            let Some(cmd) = words.next() else { break };
            let cmd_words = shlex::split(cmd).unwrap_or_default();
            // The program: the first word naming a path (after an interpreter).
            let Some(at) = cmd_words.iter().position(|w| w.contains('/')) else {
                continue;
            };
            if missing(&cmd_words[at]) {
                found.push(Brought::Program {
                    path: cmd_words[at].clone(),
                    role: if word == "--writer" { "writer" } else { "reader" },
                    interpreter: (at > 0).then(|| cmd_words[0].clone()),
                });
            }
        } else if word == "--impl-file" {
            if let Some(path) = words.next().filter(|p| missing(p)) {
                found.push(Brought::ImplFile(path.clone()));
            }
        } else if !word.starts_with('-') && missing(word) {
            found.push(Brought::Other(word.clone()));
        }
    }
    found
}

/// Our own program for `role`, under the name the multicall binary answers
/// to (`shm-writer`, `shm-reader`). A copy in a folder every uid may enter,
/// made once per run: scenarios run programs as uid 65534 too, and the
/// build's own path (a checkout in a 0700 folder, as `mktemp -d` makes)
/// need not be reachable by it (README.md:49 failed so in a .ci/run from
/// such a clone).
fn our_program(_root: &Path, role: &str) -> PathBuf {
    let dir = OURS.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new().prefix("shmconf-docs-ours").tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let writer = dir.path().join("shm-writer");
        std::fs::copy(env!("CARGO_BIN_EXE_shmconf"), &writer).unwrap();
        std::fs::set_permissions(&writer, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::hard_link(&writer, dir.path().join("shm-reader")).unwrap();
        dir
    });
    dir.path().join(format!("shm-{role}"))
}

/// The folder of `our_program`'s copies, removed when the run ends (a
/// static is never dropped).
static OURS: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();

/// Whether a provided program is ours (a correct pair: the run must pass)
/// or built from the repository's sources (the tutorial's: any verdict).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Provided {
    Ours,
    Built,
}

/// Make what the reader brings, in `cwd` (inside the scratch `root`):
/// their program built from the sources the repository has beside the
/// docs' folder (`writer.cpp` for `./writer`), else one that runs ours.
fn provide(brought: &Brought, root: &Path, cwd: &Path, repo_cwd: &Path) -> Result<Provided, String> {
    let write = |path: &Path, text: String, exec: bool| -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| e.to_string())?;
        if exec {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    match brought {
        Brought::Program {
            path,
            role,
            interpreter,
        } => {
            let target = cwd.join(path);
            let stem = Path::new(path).file_stem().unwrap().to_string_lossy().into_owned();
            let source = ["cpp", "c"]
                .iter()
                .map(|ext| repo_cwd.join(format!("{stem}.{ext}")))
                .find(|p| p.is_file());
            match (source, interpreter) {
                (Some(source), None) => {
                    let compiler = if source.extension().is_some_and(|e| e == "cpp") {
                        vec!["g++", "-std=c++11"]
                    } else {
                        vec!["cc"]
                    };
                    let built = std::process::Command::new(compiler[0])
                        .args(&compiler[1..])
                        .arg("-o")
                        .arg(&target)
                        .arg(&source)
                        .status()
                        .map_err(|e| format!("{}: {e}", compiler[0]))?;
                    built.success().then_some(Provided::Built).ok_or(format!(
                        "{} {} failed",
                        compiler[0],
                        source.display()
                    ))
                }
                (_, Some(interpreter)) if interpreter.starts_with("python") => {
                    let ours = our_program(root, role);
                    write(
                        &target,
                        format!(
                            "import os, sys\nos.execv({p:?}, [{p:?}] + sys.argv[1:])\n",
                            p = ours.display().to_string()
                        ),
                        false,
                    )
                    .map(|()| Provided::Ours)
                }
                (_, Some(interpreter)) => Err(format!("no fixture for a program run by {interpreter}")),
                (None, None) => {
                    let ours = our_program(root, role);
                    write(
                        &target,
                        format!("#!/bin/sh\nexec {:?} \"$@\"\n", ours.display().to_string()),
                        true,
                    )
                    .map(|()| Provided::Ours)
                }
            }
        }
        Brought::ImplFile(path) => {
            let (writer, reader) = (our_program(root, "writer"), our_program(root, "reader"));
            write(
                &cwd.join(path),
                format!(
                    "name = \"readers-own\"\nwriter = {:?}\nreader = {:?}\n\
                     options = [\"keep\", \"size\", \"key-file\", \"proj-id\", \"key\", \"mode\", \"exclusive\"]\n",
                    writer.display().to_string(),
                    reader.display().to_string()
                ),
                false,
            )
            .map(|()| Provided::Ours)
        }
        Brought::Other(path) => Err(format!("{path} is the reader's own, and the test cannot make it")),
    }
}

/// A folder to run a documented command in, as a reader of the docs would
/// at the repository's root: `scenarios` there, outputs (`out/...`) made
/// here, not in the repository.
fn scratch_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("scenarios"), dir.path().join("scenarios")).unwrap();
    dir
}

fn ignored(why: impl Into<String>) -> Result<Completion, Failed> {
    Ok(Completion::ignored_with(why.into()))
}

/// Run `cmd` and require a verdict: exit 0 or 1 (the docs show failures
/// too) with something on stdout, never a usage error, an empty run or a
/// crash.
fn must_reach_a_verdict(cmd: &mut assert_cmd::Command, shown: &str) -> Result<(), Failed> {
    must_exit(cmd, shown, &[0, 1])
}

/// A program of the machine's (a sandbox, an engine) that a line needs:
/// where it is missing the line is ignored saying so, except under CI,
/// which installs them (there it is an error). None: it is there.
fn machine_program_missing(program: &str, shown: &str) -> Option<Result<Completion, Failed>> {
    let installed = std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        return None;
    }
    if std::env::var_os("CI").is_some() {
        return Some(Err(format!("`{shown}`: CI must provide {program}").into()));
    }
    Some(ignored(format!("parsed; not run: {program} is not installed here")))
}

fn must_exit(cmd: &mut assert_cmd::Command, shown: &str, codes: &[i32]) -> Result<(), Failed> {
    let ran = cmd.output().map_err(|e| format!("`{shown}`: {e}"))?;
    if !ran.status.code().is_some_and(|c| codes.contains(&c)) || ran.stdout.is_empty() {
        // The verdicts that are not a pass, so a failure here says which
        // scenario and why (the whole output can be long).
        let stdout = String::from_utf8_lossy(&ran.stdout);
        let verdicts: Vec<&str> = stdout
            .lines()
            .filter(|l| {
                ["FAIL", "BROKEN", "TIMEOUT", "XPASS", "--- "]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .take(20)
            .collect();
        return Err(format!(
            "`{shown}` exits {:?} with {} bytes of output: {}\n{}",
            ran.status.code(),
            ran.stdout.len(),
            String::from_utf8_lossy(&ran.stderr).trim(),
            verdicts.join("\n")
        )
        .into());
    }
    Ok(())
}

/// `matrix --from reports/*/`: the reports another machine made, made here
/// by two small local matrices (one folder each), the glob expanded as a
/// shell would.
fn reports_for(args: &[String], root: &Path) -> Result<Vec<String>, Failed> {
    let mut out = vec![];
    let mut words = args.iter();
    while let Some(w) = words.next() {
        out.push(w.clone());
        if w != "--from" {
            continue;
        }
        let mut rest: Vec<String> = words.by_ref().cloned().collect();
        let pattern = rest.remove(0);
        let Some(dir) = pattern.strip_suffix("*/") else {
            return Err(format!("--from {pattern}: not a folder glob the test can make").into());
        };
        for name in ["ci-1", "ci-2"] {
            let folder = format!("{dir}{name}");
            let mut make = shmconf(&[
                "matrix".into(),
                "--target".into(),
                "local".into(),
                "--as".into(),
                format!("local-{name}"),
                "--out".into(),
                folder.clone(),
                "scenarios/keys".into(),
            ]);
            make.current_dir(root)
                .env("TMPDIR", root)
                .timeout(Duration::from_secs(600));
            must_reach_a_verdict(&mut make, "shmconf matrix --target local (the reports to merge)")?;
            out.push(format!("{folder}/"));
        }
        out.extend(rest);
        break;
    }
    Ok(out)
}

fn check(d: &Documented) -> Result<Completion, Failed> {
    let args = &d.line.args;
    let shown = format!("shmconf {}", args.join(" "));
    let mut with_help = args.clone();
    with_help.push("--help".into());
    let parsed = shmconf(&with_help).output().map_err(|e| e.to_string())?;
    if !parsed.status.success() {
        return Err(format!(
            "`{shown}` does not parse: {}",
            String::from_utf8_lossy(&parsed.stderr).trim()
        )
        .into());
    }
    let image = std::env::var(FULL_PASS).ok().filter(|i| !i.is_empty());
    let image_pass = image.is_some();
    let sub = args.first().map_or("run", String::as_str);
    // The full pass runs what the first (`cargo test`) could not: a line
    // that needs no image ran there, the same way, in the same CI run.
    let needs_image = d.line.engine.is_some()
        || matches!(sub, "bench")
        || (sub == "matrix" && !args.iter().any(|a| a == "--from"))
        || (sub == "fuzz" && args.windows(2).any(|w| w == ["--target", "docker"]));
    if image_pass && !needs_image {
        return ignored("parsed; needs no image: the first pass (cargo test) runs it");
    }
    let root = scratch_root();
    if let Some(engine) = &d.line.engine {
        let Some(image) = image else {
            return ignored(format!(
                "parsed; runs in the image: the full pass ({FULL_PASS}=IMAGE) runs it"
            ));
        };
        let pwd = root.path().display().to_string();
        let words: Vec<String> = engine.iter().map(|w| w.replace("$PWD", &pwd)).collect();
        let mut cmd = assert_cmd::Command::new(&words[0]);
        cmd.args(&words[1..])
            .arg(&image)
            .args(args)
            .current_dir(root.path())
            .timeout(Duration::from_secs(1800));
        must_reach_a_verdict(&mut cmd, &format!("{} {image} {}", words.join(" "), args.join(" ")))?;
        return Ok(Completion::Completed);
    }
    // Fuzzing gVisor finds its divergences: exit 1, and it needs runsc.
    if sub == "fuzz" && args.windows(2).any(|w| w == ["--target", "gvisor"]) {
        if let Some(missing) = machine_program_missing("runsc", &shown) {
            return missing;
        }
        // In the scratch dir: `--out found/` writes there, not in the repository.
        must_exit(shmconf(args).current_dir(root.path()), &shown, &[1])?;
        return Ok(Completion::Completed);
    }
    // Fuzzing in containers needs the image: the full pass runs it with its own.
    if sub == "fuzz" && args.windows(2).any(|w| w == ["--target", "docker"]) {
        let Some(image) = image else {
            return ignored(format!(
                "parsed; `--target docker` needs the image: the full pass ({FULL_PASS}=IMAGE) runs it"
            ));
        };
        let mut args = args.clone();
        if let Some(at) = args.iter().position(|a| a == "--image") {
            args[at + 1] = image;
        }
        must_exit(shmconf(&args).current_dir(root.path()), &shown, &[0])?;
        return Ok(Completion::Completed);
    }
    if RUN_FOR_REAL.contains(&sub) {
        must_exit(shmconf(args).current_dir(root.path()), &shown, &[0])?;
        return Ok(Completion::Completed);
    }
    let cwd = root.path().join(d.cwd.as_deref().unwrap_or(""));
    std::fs::create_dir_all(&cwd).map_err(|e| e.to_string())?;
    // A backend's program (a sandbox, an engine) is the machine's: where it
    // is missing the line is ignored saying so, except under CI, which
    // installs them.
    if let Some(backend) = args
        .iter()
        .position(|a| a == "--backend")
        .and_then(|at| args.get(at + 1))
    {
        let program = match backend.as_str() {
            "local" => "",
            other => shmconf_harness::compose::SandboxKind::named(other).map_or(other, |k| k.program()),
        };
        if let Some(missing) = (!program.is_empty())
            .then(|| machine_program_missing(program, &shown))
            .flatten()
        {
            return missing;
        }
    }
    let mut args = args.clone();
    // Our own programs in the reader's place: a correct pair must pass.
    let mut ours = false;
    match sub {
        "run" => {
            for b in brought_by_the_reader(&args, &cwd) {
                if let Brought::Other(path) = &b {
                    // The catalogue is ours: a scenario path the docs name must exist.
                    if path.contains("scenarios/") {
                        return Err(format!("`{shown}` names {path}, which does not exist").into());
                    }
                }
                let repo_cwd = repo().join(d.cwd.as_deref().unwrap_or(""));
                ours |=
                    provide(&b, root.path(), &cwd, &repo_cwd).map_err(|e| format!("`{shown}`: {e}"))? == Provided::Ours;
            }
        }
        "matrix" if args.iter().any(|a| a == "--from") => args = reports_for(&args, &cwd)?,
        "matrix" | "bench" => {
            let Some(image) = image else {
                return ignored(format!(
                    "parsed; `{sub}` needs engines or minutes: the full pass ({FULL_PASS}=IMAGE) runs it"
                ));
            };
            if let Some(at) = args.iter().position(|a| a == "--image") {
                args[at + 1] = image;
            }
            // A matrix line names no scenarios: it would run the whole
            // catalogue on every target, which CI's own matrix step does
            // next (7 of the full pass's 10 minutes); here every target it
            // names runs, on one folder of the catalogue.
            if sub == "matrix" && !args.iter().any(|a| a.starts_with("scenarios")) {
                args.push("scenarios/keys".into());
            }
        }
        _ if image_pass => return Err(format!("`{shown}`: the full pass has no way to run `{sub}`").into()),
        _ => return ignored(format!("parsed; not run: no way to run `{sub}` here")),
    }
    let mut cmd = shmconf(&args);
    // A line that names a build (`target/release/shmconf`) runs that build,
    // which the full pass makes first as the docs say.
    if d.line.program.contains('/') && image_pass {
        let built = repo().join(&d.line.program);
        if !built.is_file() {
            return Err(format!("`{shown}`: {} is not built (the docs build it first)", d.line.program).into());
        }
        cmd = assert_cmd::Command::new(built);
        cmd.args(&args);
    }
    cmd.current_dir(&cwd)
        .env("TMPDIR", root.path())
        .timeout(Duration::from_secs(1800));
    if ours {
        must_exit(&mut cmd, &format!("{shown} (the reader's programs: ours)"), &[0])?;
    } else {
        must_reach_a_verdict(&mut cmd, &shown)?;
    }
    Ok(Completion::Completed)
}

fn main() {
    let args = Arguments::from_args();
    let commands = documented();
    let mut trials = vec![Trial::test("the docs show enough commands to check", {
        let n = commands.len();
        move || {
            if n < FEWEST_COMMANDS {
                return Err(format!(
                    "only {n} documented shmconf commands found (expected at least {FEWEST_COMMANDS})"
                )
                .into());
            }
            Ok(())
        }
    })];
    for d in commands {
        trials.push(Trial::ignorable_test(d.place.clone(), move || check(&d)));
    }
    // The extraction itself, on lines whose answer is known.
    trials.push(Trial::test("extraction reads commands and cuts the shell off", || {
        let line = |engine: Option<&[&str]>, program: &str, args: &[&str]| Line {
            engine: engine.map(|e| e.iter().map(|s| s.to_string()).collect()),
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        let cases = [
            (
                "shmconf run --tag keys   # a comment",
                Some(line(None, "shmconf", &["run", "--tag", "keys"])),
            ),
            ("$ shmconf man | man -l -", Some(line(None, "shmconf", &["man"]))),
            (
                "shmconf completions bash > ~/x",
                Some(line(None, "shmconf", &["completions", "bash"])),
            ),
            (
                "target/release/shmconf bench --json out/b.json",
                Some(line(None, "target/release/shmconf", &["bench", "--json", "out/b.json"])),
            ),
            (
                "docker run --rm --cap-add SYS_ADMIN shmconf run --impl c-reference",
                Some(line(
                    Some(&["docker", "run", "--rm", "--cap-add", "SYS_ADMIN"]),
                    "shmconf",
                    &["run", "--impl", "c-reference"],
                )),
            ),
            ("cargo test --workspace", None),
            (
                "shmconf is a harness",
                Some(line(None, "shmconf", &["is", "a", "harness"])),
            ),
        ];
        for (text, want) in cases {
            let got = shmconf_line(text);
            if got != want {
                return Err(format!("{text:?}: {got:?}, expected {want:?}").into());
            }
        }
        let root = scratch_root();
        let program = |path: &str, role, interpreter: Option<&str>| Brought::Program {
            path: path.into(),
            role,
            interpreter: interpreter.map(String::from),
        };
        let needs: [(&str, Vec<Brought>); 6] = [
            (
                "run --writer './mywriter' --reader 'python3 ./r.py'",
                vec![
                    program("./mywriter", "writer", None),
                    program("./r.py", "reader", Some("python3")),
                ],
            ),
            ("run --impl-file impl.toml", vec![Brought::ImplFile("impl.toml".into())]),
            ("run scenarios/orders --junit out/junit.xml --record out/logs", vec![]),
            ("run orders/paused-writer --order 'w,r'", vec![]),
            (
                "run scenarios/nope.toml",
                vec![Brought::Other("scenarios/nope.toml".into())],
            ),
            (
                "run scenarios/orders/syscall-rmid-before-attach.toml --expectations /dev/null",
                vec![],
            ),
        ];
        for (text, want) in needs {
            let args = shlex::split(text).unwrap();
            let got = brought_by_the_reader(&args, root.path());
            if got != want {
                return Err(format!("{text:?}: needs {got:?}, expected {want:?}").into());
            }
        }
        Ok(())
    }));
    let conclusion = libtest_mimic::run(&args, trials);
    if let Some(ours) = OURS.get() {
        let _ = std::fs::remove_dir_all(ours.path());
    }
    conclusion.exit();
}
