//! The commands the docs show are commands shmconf takes. Every `shmconf`
//! line in a fenced block of README.md, BENCHMARKS.md, docs/*.md and scenarios/README.md
//! (a command continued with `\\` read whole; also `target/release/shmconf ...`,
//! `docker/dist/shmconf ...`, and the
//! words after the image in `docker run ... shmconf ...`) is one trial named
//! by its file and line:
//! - it parses: run with `--help` appended, which clap honours only once
//!   every word before it parsed, so a renamed flag, a removed subcommand or
//!   a value of the wrong form (`--step-timeout 5q`) fails here;
//! - the read-only ones (`list`, `show`, `schema`, `completions`, `man`)
//!   run for real from the repository's root and must succeed;
//! - `run` lines run for real, as from the repository's root (its
//!   `scenarios`, outputs in a scratch folder), and must reach a verdict
//!   (exit 0 or 1); one that names a file the reader brings (`./mywriter`,
//!   `impl.toml`) is ignored saying so, as are `matrix` and `bench` (engines,
//!   minutes: their own tests run them).
//!
//! Shell around the command (a pipe, a redirection, a comment) is cut off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// Marks the arguments of a `docker run ... shmconf ...` line (first word):
/// they run in the image, which the container tests and CI's suite run.
const IN_THE_IMAGE: &str = "(in the image)";

/// Subcommands whose documented lines are run as written.
const RUN_FOR_REAL: &[&str] = &["list", "show", "schema", "completions", "man"];

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

/// shmconf's arguments on one line of a code block, if it runs shmconf.
fn shmconf_args(line: &str) -> Option<Vec<String>> {
    let line = line.trim().trim_start_matches("$ ");
    let mut words = shlex::split(line)?;
    // Shell around the command: cut at a comment, pipe, redirection or list.
    if let Some(end) = words.iter().position(|w| {
        w.starts_with('#')
            || ["|", "||", "&&", ";", "&"].contains(&w.as_str())
            || w.starts_with('>')
            || w.starts_with('<')
            || w.starts_with("2>")
    }) {
        words.truncate(end);
    }
    let first = words.first()?;
    let program = Path::new(first).file_name()?.to_str()?;
    if program == "shmconf" && !first.contains("~") {
        return Some(words[1..].to_vec());
    }
    if ["docker", "podman"].contains(&first.as_str()) && words.get(1).is_some_and(|w| w == "run") {
        // The image is the first word naming shmconf that is not an option's
        // value; its default command is `run`.
        let image = words.iter().position(|w| w == "shmconf" || w.starts_with("shmconf:"))?;
        let mut args = vec![IN_THE_IMAGE.to_string()];
        args.extend(words[image + 1..].iter().cloned());
        return Some(args);
    }
    None
}

/// (file:line, shmconf's arguments) of every documented command.
fn documented() -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(repo()).unwrap_or(&file).display().to_string();
        let mut in_block = false;
        // A command continued with a trailing `\`: (its first line, the text so far).
        let mut pending: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_block = !in_block;
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
            if let Some(args) = shmconf_args(&whole) {
                found.push((format!("{name}:{first}"), args));
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

/// What a documented command needs that the docs' reader brings (their
/// own programs, an implementation file): the first such path, if any.
/// Outputs (`--junit`, `--record`, `--summary`, `--json`, `--svg`, `--out`)
/// are made, not needed; `--order` and `--tag` values are not paths.
fn brought_by_the_reader(args: &[String], root: &Path) -> Option<String> {
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
    ];
    let mut words = args.iter().skip(1).peekable();
    while let Some(word) = words.next() {
        if NOT_NEEDED.contains(&word.as_str()) {
            words.next();
            continue;
        }
        // A program's command: its first word, when it is a path.
        let path = if word == "--writer" || word == "--reader" {
            let Some(cmd) = words.next() else { break };
            let program = shlex::split(cmd).and_then(|w| w.into_iter().next()).unwrap_or_default();
            if !program.contains('/') {
                continue;
            }
            program
        } else if word.starts_with('-') {
            continue;
        } else {
            word.clone()
        };
        let looks_like_a_file = path.contains('/') || path.ends_with(".toml");
        // `run` takes scenario ids as `show` does.
        let an_id = root.join("scenarios").join(format!("{path}.toml")).is_file();
        if looks_like_a_file && !an_id && path != "/dev/null" && !root.join(&path).exists() {
            return Some(path);
        }
    }
    None
}

/// A folder to run a documented command in, as a reader of the docs would
/// at the repository's root: `scenarios` there, outputs (`out/...`) made
/// here, not in the repository.
fn scratch_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo().join("scenarios"), dir.path().join("scenarios")).unwrap();
    dir
}

fn check(args: &[String]) -> Result<Completion, Failed> {
    let (in_image, args) = match args.split_first() {
        Some((first, rest)) if first == IN_THE_IMAGE => (true, rest),
        _ => (false, args),
    };
    let mut with_help = args.to_vec();
    with_help.push("--help".into());
    let parsed = shmconf(&with_help).output().map_err(|e| e.to_string())?;
    if !parsed.status.success() {
        return Err(format!(
            "`shmconf {}` does not parse: {}",
            args.join(" "),
            String::from_utf8_lossy(&parsed.stderr).trim()
        )
        .into());
    }
    let sub = args.first().map_or("run", String::as_str);
    if in_image {
        return Ok(Completion::ignored_with(
            "parsed; not run here: it runs in the image (the container tests and CI's suite run it)",
        ));
    }
    if RUN_FOR_REAL.contains(&sub) {
        let ran = shmconf(args).output().map_err(|e| e.to_string())?;
        if !ran.status.success() || ran.stdout.is_empty() {
            return Err(format!(
                "`shmconf {}` exits {:?} with {} bytes of output: {}",
                args.join(" "),
                ran.status.code(),
                ran.stdout.len(),
                String::from_utf8_lossy(&ran.stderr).trim()
            )
            .into());
        }
    } else if sub == "run" {
        let root = scratch_root();
        if let Some(missing) = brought_by_the_reader(args, root.path()) {
            // The catalogue is ours: a scenario path the docs name must exist.
            if missing.starts_with("scenarios/") {
                return Err(format!("`shmconf {}` names {missing}, which does not exist", args.join(" ")).into());
            }
            return Ok(Completion::ignored_with(format!(
                "parsed; not run: {missing} is the reader's own"
            )));
        }
        let mut cmd = shmconf(args);
        cmd.current_dir(root.path())
            .env("TMPDIR", root.path())
            .timeout(Duration::from_secs(600));
        let ran = cmd.output().map_err(|e| e.to_string())?;
        // A verdict either way (the docs show failures too), never a usage
        // error, nothing checked, or a crash.
        if !matches!(ran.status.code(), Some(0 | 1)) || ran.stdout.is_empty() {
            return Err(format!(
                "`shmconf {}` exits {:?}: {}",
                args.join(" "),
                ran.status.code(),
                String::from_utf8_lossy(&ran.stderr).trim()
            )
            .into());
        }
    } else {
        return Ok(Completion::ignored_with(format!(
            "parsed; not run: `{sub}` needs engines or minutes (its own tests run it)"
        )));
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
    for (place, words) in commands {
        trials.push(Trial::ignorable_test(place, move || check(&words)));
    }
    // The extraction itself, on lines whose answer is known.
    trials.push(Trial::test("extraction reads commands and cuts the shell off", || {
        let cases: [(&str, Option<&[&str]>); 7] = [
            ("shmconf run --tag keys   # a comment", Some(&["run", "--tag", "keys"])),
            ("$ shmconf man | man -l -", Some(&["man"])),
            ("shmconf completions bash > ~/x", Some(&["completions", "bash"])),
            (
                "target/release/shmconf bench --json out/b.json",
                Some(&["bench", "--json", "out/b.json"]),
            ),
            (
                "docker run --rm --cap-add SYS_ADMIN shmconf run --impl c-reference",
                Some(&[IN_THE_IMAGE, "run", "--impl", "c-reference"]),
            ),
            ("cargo test --workspace", None),
            ("shmconf is a harness", Some(&["is", "a", "harness"])),
        ];
        for (line, want) in cases {
            let got = shmconf_args(line);
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            if got != want {
                return Err(format!("{line:?}: {got:?}, expected {want:?}").into());
            }
        }
        let root = scratch_root();
        let needs: [(&str, Option<&str>); 6] = [
            (
                "run --writer './mywriter' --reader 'python3 ./r.py'",
                Some("./mywriter"),
            ),
            ("run --impl-file impl.toml", Some("impl.toml")),
            ("run scenarios/orders --junit out/junit.xml --record out/logs", None),
            ("run orders/paused-writer --order 'w,r'", None),
            ("run scenarios/nope.toml", Some("scenarios/nope.toml")),
            (
                "run scenarios/orders/syscall-rmid-before-attach.toml --expectations /dev/null",
                None,
            ),
        ];
        for (line, want) in needs {
            let args = shlex::split(line).unwrap();
            let got = brought_by_the_reader(&args, root.path());
            if got.as_deref() != want {
                return Err(format!("{line:?}: needs {got:?}, expected {want:?}").into());
            }
        }
        Ok(())
    }));
    libtest_mimic::run(&args, trials).exit();
}
