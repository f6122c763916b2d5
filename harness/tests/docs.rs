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
//!   run for real from the repository's root and must succeed.
//!
//! Shell around the command (a pipe, a redirection, a comment) is cut off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};

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
        // The image is the first word naming shmconf that is not an option's value.
        let image = words.iter().position(|w| w == "shmconf" || w.starts_with("shmconf:"))?;
        return Some(words[image + 1..].to_vec());
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

fn check(args: &[String]) -> Result<(), Failed> {
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
    if args.first().is_some_and(|sub| RUN_FOR_REAL.contains(&sub.as_str())) {
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
    }
    Ok(())
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
        trials.push(Trial::test(place, move || check(&words)));
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
                Some(&["run", "--impl", "c-reference"]),
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
        Ok(())
    }));
    libtest_mimic::run(&args, trials).exit();
}
