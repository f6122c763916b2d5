//! The implementation zoo: writer/reader pairs written independently of this
//! project, from the contract alone (design.md and the seed's transcripts), in
//! C, Go, Python, Perl and PHP (`tests/zoo/<lang>/`, see its README.md), judged
//! by the `shmconf` binary as any user's programs are: through their
//! implementation files.
//!
//! One trial per pair or variant, named `<lang>::faithful`, `<lang>::hardened`,
//! `<lang>::fault::<name>`:
//! - faithful (the seed ported, its documented defects listed as deviations)
//!   and hardened (every result checked, its own wording, every option) pass
//!   the whole catalogue: exit 0, nothing FAIL, BROKEN, TIMEOUT or XPASS, every
//!   seed-contract scenario PASS;
//! - each injected fault (the hardened pair with `ZOO_FAULT=<name>`) is caught:
//!   exit 1, and the failing scenarios include the ones [`FAULTS`] expects. It
//!   runs over those scenarios and the seed contract only, to keep the zoo's
//!   time reasonable. A fault the catalogue is known to miss ([`Expect::Gap`])
//!   runs over the whole catalogue, is ignored with the reason while it slips
//!   through, and fails the moment a scenario catches it (expect it then).
//!
//! A missing toolchain (cc, go, python3, perl with IPC::SysV, php with shmop)
//! ignores that language's trials with the reason, except under CI (CI=1 or
//! CI=true), where it is a failure: CI installs them (.ci/run).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// One injected fault and the scenarios that must catch it.
struct Fault {
    /// The value of ZOO_FAULT the hardened programs understand.
    name: &'static str,
    /// What the program then does wrong.
    what: &'static str,
    /// Languages whose hardened pair has this fault.
    langs: &'static [&'static str],
    /// Which scenarios must catch it.
    expect: Expect,
}

/// What the catalogue must do with a fault.
enum Expect {
    /// These scenario ids FAIL (or run out of time) with the fault on.
    Caught(&'static [&'static str]),
    /// No scenario catches the fault yet: why (a finding for the catalogue).
    /// Ignored while it slips through; a failure once something catches it.
    #[expect(
        dead_code,
        reason = "no known gap today: the next fault the catalogue misses is listed as one"
    )]
    Gap(&'static str),
}

const ALL: &[&str] = &["c", "go", "python", "perl", "php"];

/// The fault table: fault -> scenarios expected to fail (also in tests/zoo/README.md).
const FAULTS: &[Fault] = &[
    Fault {
        name: "wrong-proj-id",
        what: "both roles use proj_id 66 instead of 65 (a pair consistent with itself)",
        langs: ALL,
        expect: Expect::Caught(&["keys/ftok-key-is-the-kernels", "visibility/writer-then-reader"]),
    },
    Fault {
        name: "writer-no-nul",
        what: "the writer stores the line without its NUL terminator",
        langs: ALL,
        expect: Expect::Caught(&[
            "visibility/second-write-replaces",
            "orders/syscall-over-an-older-line",
            "orders/explore-over-an-older-line",
        ]),
    },
    Fault {
        name: "writer-truncate",
        what: "the writer silently keeps only the first 100 bytes of the line",
        langs: ALL,
        expect: Expect::Caught(&["visibility/longest-line"]),
    },
    Fault {
        name: "writer-silent-exit",
        what: "the writer exits 0 without a word on every error",
        langs: ALL,
        expect: Expect::Caught(&[
            "errors/eof-without-input",
            "errors/line-too-long",
            "keys/missing-key-file",
        ]),
    },
    Fault {
        name: "writer-clear-at-eof",
        what: "at end of input with no line the writer zeroes the segment before it fails",
        langs: ALL,
        expect: Expect::Caught(&["errors/eof-without-input", "persistence/eof-keeps-content"]),
    },
    Fault {
        name: "reader-mode-0600",
        what: "a reader that finds no segment creates it with mode 0600",
        langs: ALL,
        expect: Expect::Caught(&["orders/reader-creates-the-seeds-segment"]),
    },
    Fault {
        name: "reader-no-rmid",
        what: "the reader never removes the segment",
        langs: ALL,
        expect: Expect::Caught(&[
            "visibility/writer-then-reader",
            "orders/reader-first",
            "orders/two-readers",
        ]),
    },
    Fault {
        name: "reader-drop-first",
        what: "the reader prints the text without its first byte",
        langs: ALL,
        expect: Expect::Caught(&["visibility/writer-then-reader", "visibility/binary-bytes"]),
    },
    Fault {
        name: "reader-double-detach",
        what: "the reader detaches twice and reports the second detach's failure",
        langs: &["go", "python"],
        expect: Expect::Caught(&["visibility/writer-then-reader", "orders/reader-first"]),
    },
    Fault {
        name: "reader-double-detach",
        what: "the reader detaches twice and ignores the second detach's EINVAL",
        langs: &["c"],
        // Nothing shows but the failed shmdt(2) itself: the system-call
        // scenarios judge each call's result (property detach-attached).
        expect: Expect::Caught(&["orders/syscall-rmid-before-attach", "orders/syscall-input-in-pieces"]),
    },
    Fault {
        name: "ftok-drops-device",
        what: "a home-made ftok that leaves out st_dev's low byte",
        langs: &["c", "go"],
        expect: Expect::Caught(&["keys/ftok-device-byte"]),
    },
    Fault {
        name: "writer-streams-line",
        what: "the writer copies each byte into the segment as it reads it (what gets() did)",
        langs: &["c", "go", "perl"],
        expect: Expect::Caught(&["orders/syscall-input-in-pieces", "orders/partial-input-line"]),
    },
];

/// A language of the zoo: how to tell its toolchain is there, and how to build.
struct Lang {
    name: &'static str,
    /// Ok, or why the toolchain is missing.
    toolchain: fn() -> Result<(), String>,
    /// Builds the copied sources in place (compiled languages).
    build: fn(&Path) -> Result<(), String>,
}

const LANGS: &[Lang] = &[
    Lang {
        name: "c",
        toolchain: have_c,
        build: build_c,
    },
    Lang {
        name: "go",
        toolchain: have_go,
        build: build_go,
    },
    Lang {
        name: "python",
        toolchain: have_python,
        build: no_build,
    },
    Lang {
        name: "perl",
        toolchain: have_perl,
        build: no_build,
    },
    Lang {
        name: "php",
        toolchain: have_php,
        build: no_build,
    },
];

/// The zoo's work dir (built programs, implementation files), locked for
/// the test process's life. A killed zoo (a CI timeout's SIGKILL, a SIGTERM)
/// runs no destructor: the next zoo removes the dirs whose lock is free.
fn work_dir() -> (tempfile::TempDir, nix::fcntl::Flock<std::fs::File>) {
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let dir = entry.path();
        let named = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("shmconf-zoo-"));
        // A real folder of this user's, never another's or a link.
        let mine = std::fs::symlink_metadata(&dir)
            .is_ok_and(|md| md.is_dir() && std::os::unix::fs::MetadataExt::uid(&md) == nix::unistd::geteuid().as_raw());
        let lock = dir.join(".lock");
        if !named || !mine || !lock.is_file() {
            continue;
        }
        let Ok(file) = std::fs::File::open(&lock) else { continue };
        // Free: its zoo is gone (the kernel released the lock with it).
        if nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let work = tempfile::Builder::new()
        .prefix("shmconf-zoo-")
        .tempdir()
        .expect("temp dir");
    // Locked under another name, then renamed: `.lock` is never seen free
    // while its zoo lives (a sweep in between would take a live dir).
    let partial = work.path().join(".lock.partial");
    let file = std::fs::File::create(&partial).expect("lock file");
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).expect("lock");
    std::fs::rename(&partial, work.path().join(".lock")).expect("lock file in place");
    (work, lock)
}

fn main() {
    let args = Arguments::from_args();
    let (work, _lock) = work_dir();
    let work = Arc::new(work);
    let mut trials = Vec::new();
    for lang in LANGS {
        let built: Arc<OnceLock<Result<PathBuf, String>>> = Arc::new(OnceLock::new());
        // The hardened pair's run over the whole catalogue: its own trial's
        // verdict, and what a known gap's faulty run is compared with.
        let baseline: Arc<OnceLock<Result<Arc<Report>, String>>> = Arc::new(OnceLock::new());
        let prepare = {
            let (work, built) = (Arc::clone(&work), Arc::clone(&built));
            move || -> Result<PathBuf, String> {
                built
                    .get_or_init(|| {
                        (lang.toolchain)()?;
                        prepare_lang(lang, work.path())
                    })
                    .clone()
            }
        };
        let hardened_run = {
            let baseline = Arc::clone(&baseline);
            move |dir: &Path| -> Result<Arc<Report>, Failed> {
                baseline
                    .get_or_init(|| {
                        run_shmconf(&dir.join("hardened.toml"), &[scenarios_dir()])
                            .map(Arc::new)
                            .map_err(|e| e.message().unwrap_or("shmconf failed").to_string())
                    })
                    .clone()
                    .map_err(Failed::from)
            }
        };
        for variant in ["faithful", "hardened"] {
            let (prepare, hardened_run) = (prepare.clone(), hardened_run.clone());
            trials.push(Trial::ignorable_test(format!("{}::{variant}", lang.name), move || {
                let dir = match prepare() {
                    Ok(dir) => dir,
                    Err(why) => return unavailable(lang.name, why),
                };
                let impl_file = dir.join(format!("{variant}.toml"));
                let report = match variant {
                    "hardened" => hardened_run(&dir)?,
                    _ => Arc::new(run_shmconf(&impl_file, &[scenarios_dir()])?),
                };
                passes_the_catalogue(&impl_file, &report)
            }));
        }
        for fault in FAULTS.iter().filter(|f| f.langs.contains(&lang.name)) {
            let (prepare, hardened_run) = (prepare.clone(), hardened_run.clone());
            trials.push(Trial::ignorable_test(
                format!("{}::fault::{}", lang.name, fault.name),
                move || {
                    let dir = match prepare() {
                        Ok(dir) => dir,
                        Err(why) => return unavailable(lang.name, why),
                    };
                    fault_is_caught(lang.name, &dir, fault, &hardened_run)
                },
            ));
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    drop(work);
    conclusion.exit();
}

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A language that cannot be built or run here: ignored locally, a failure on CI.
fn unavailable(lang: &str, why: String) -> Result<Completion, Failed> {
    if on_ci() {
        Err(format!("{lang}: {why} (CI installs every zoo toolchain: see .ci/run)").into())
    } else {
        Ok(Completion::ignored_with(format!("{lang}: {why}")))
    }
}

fn zoo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/zoo")
}

fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// Copy the language's folder into `work` (a folder every uid can enter:
/// scenarios run roles as 65534, and scripts must be readable where they
/// are) and build it there.
fn prepare_lang(lang: &Lang, work: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    let dir = work.join(lang.name);
    copy_tree(&zoo_dir().join(lang.name), &dir).map_err(|e| format!("copying the sources: {e}"))?;
    (lang.build)(&dir)?;
    Ok(dir)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Runs a tool; Ok(stdout) when it exits 0, else its stderr in the error.
fn tool(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("{shown}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{shown}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn have_c() -> Result<(), String> {
    tool(Command::new("cc").arg("--version"))
        .map(drop)
        .map_err(|e| format!("no C compiler: {e}"))
}

fn build_c(dir: &Path) -> Result<(), String> {
    for program in [
        "writer-faithful",
        "reader-faithful",
        "writer-hardened",
        "reader-hardened",
    ] {
        tool(
            Command::new("cc")
                .args([
                    "-std=c11",
                    "-D_DEFAULT_SOURCE",
                    "-Wall",
                    "-Wextra",
                    "-Werror",
                    "-O2",
                    "-o",
                ])
                .arg(dir.join(program))
                .arg(dir.join(format!("{program}.c"))),
        )?;
    }
    Ok(())
}

/// Go's caches live in the target dir; no network (standard library only).
fn go_command(dir: &Path) -> Command {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("zoo-go");
    let mut cmd = Command::new("go");
    cmd.current_dir(dir)
        .env("GOCACHE", cache.join("cache"))
        .env("GOPATH", cache.join("path"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local");
    cmd
}

fn have_go() -> Result<(), String> {
    tool(go_command(Path::new(".")).arg("version"))
        .map(drop)
        .map_err(|e| format!("no Go toolchain: {e}"))
}

fn build_go(dir: &Path) -> Result<(), String> {
    for program in [
        "writer-faithful",
        "reader-faithful",
        "writer-hardened",
        "reader-hardened",
    ] {
        tool(go_command(dir).args(["build", "-o", program, &format!("./cmd/{program}")]))?;
    }
    Ok(())
}

fn no_build(_: &Path) -> Result<(), String> {
    Ok(())
}

/// Interpreters are looked up in the system's directories first: uid 65534
/// runs some roles, and a per-user interpreter (pyenv, under a 0700 home)
/// cannot be started by it.
fn system_first_path() -> String {
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("/usr/local/bin:/usr/bin:/bin:{rest}")
}

fn interpreter(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PATH", system_first_path());
    cmd
}

fn have_python() -> Result<(), String> {
    tool(interpreter("python3").args(["-c", "import ctypes, argparse"]))
        .map(drop)
        .map_err(|e| format!("no python3 with ctypes: {e}"))
}

fn have_perl() -> Result<(), String> {
    tool(interpreter("perl").args(["-MIPC::SysV=shmat,shmdt,memread,memwrite,ftok", "-e1"]))
        .map(drop)
        .map_err(|e| format!("no perl with IPC::SysV: {e}"))
}

fn have_php() -> Result<(), String> {
    tool(interpreter("php").args(["-r", "exit(function_exists('shmop_open') ? 0 : 1);"]))
        .map(drop)
        .map_err(|e| format!("no php-cli with shmop: {e}"))
}

struct Verdict {
    id: String,
    status: String,
    message: String,
}

struct Report {
    verdicts: Vec<Verdict>,
    code: Option<i32>,
    took: Duration,
}

impl Report {
    fn with(&self, statuses: &[&str]) -> BTreeSet<&str> {
        self.verdicts
            .iter()
            .filter(|v| statuses.contains(&v.status.as_str()))
            .map(|v| v.id.as_str())
            .collect()
    }

    fn describe(&self, statuses: &[&str]) -> String {
        self.verdicts
            .iter()
            .filter(|v| statuses.contains(&v.status.as_str()))
            .map(|v| format!("  {} {}: {}", v.status.to_uppercase(), v.id, v.message))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The most a whole run may take: only a safety net (each scenario's own
/// limits, which a busy machine moves, bound the run); an interpreted pair's
/// catalogue took 582 s on two cores under two busy loops and builds.
const SAFETY_NET: Duration = Duration::from_secs(1800);

/// `shmconf run --format json` of the implementation file over `scenarios`.
fn run_shmconf(impl_file: &Path, scenarios: &[PathBuf]) -> Result<Report, Failed> {
    let start = Instant::now();
    let mut std_cmd = std::process::Command::new(env!("CARGO_BIN_EXE_shmconf"));
    shmconf::sysv::process::end_with_parent(&mut std_cmd);
    let mut cmd = assert_cmd::Command::from_std(std_cmd);
    // One scenario at a time: the test harness already runs two trials at
    // once, and interpreters under a loaded machine ran into the scenarios'
    // 5 s step limits at four (zoo-findings F7).
    cmd.args(["run", "--format", "json", "--jobs", "1", "--impl-file"])
        .arg(impl_file)
        .args(scenarios)
        .env("PATH", system_first_path())
        .timeout(SAFETY_NET);
    let out = cmd.output().map_err(|e| format!("shmconf: {e}"))?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        // Killed by the safety net: the clock, not the implementation, says so.
        let killed = if out.status.code().is_none() && start.elapsed() >= SAFETY_NET {
            format!(
                "; killed by this test's safety net after {} s (the machine was too slow for the whole run)",
                SAFETY_NET.as_secs()
            )
        } else {
            String::new()
        };
        format!(
            "shmconf printed no JSON report ({e}), exit {:?}{killed}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let verdicts = report["results"]
        .as_array()
        .ok_or("the JSON report has no results")?
        .iter()
        .map(|r| Verdict {
            id: r["scenario"].as_str().unwrap_or_default().to_string(),
            status: r["status"].as_str().unwrap_or_default().to_string(),
            message: r["message"].as_str().unwrap_or_default().to_string(),
        })
        .collect();
    Ok(Report {
        verdicts,
        code: out.status.code(),
        took: start.elapsed(),
    })
}

/// Ids of the scenarios tagged `tag`, from `shmconf list`.
fn tagged(tag: &str) -> Result<BTreeSet<String>, Failed> {
    let mut cmd = assert_cmd::Command::cargo_bin("shmconf").map_err(|e| e.to_string())?;
    let out = cmd
        .args(["list", "--tag", tag])
        .arg(scenarios_dir())
        .timeout(Duration::from_secs(60))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("shmconf list: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect())
}

const BAD: &[&str] = &["fail", "broken", "timeout", "xpass", "interrupted"];

fn passes_the_catalogue(impl_file: &Path, report: &Report) -> Result<Completion, Failed> {
    let bad = report.with(BAD);
    if !bad.is_empty() || report.code != Some(0) {
        return Err(format!(
            "{} must pass the catalogue; exit {:?}, {} scenario(s) not passing:\n{}",
            impl_file.display(),
            report.code,
            bad.len(),
            report.describe(BAD)
        )
        .into());
    }
    // Never green when nothing was checked: the seed contract ran and passed.
    let seed = tagged("seed-contract")?;
    let passed = report.with(&["pass"]);
    let missing: Vec<&String> = seed.iter().filter(|id| !passed.contains(id.as_str())).collect();
    if seed.is_empty() || !missing.is_empty() {
        return Err(format!("seed-contract scenarios that did not pass: {missing:?} (of {seed:?})").into());
    }
    eprintln!(
        "{}: {} scenarios, {} pass, {} xfail, {} skip in {:.1} s",
        impl_file.display(),
        report.verdicts.len(),
        passed.len(),
        report.with(&["xfail"]).len(),
        report.with(&["skip"]).len(),
        report.took.as_secs_f64()
    );
    Ok(Completion::Completed)
}

/// The hardened implementation file with ZOO_FAULT set and its own name.
fn faulty_impl_file(lang: &str, dir: &Path, fault: &Fault) -> Result<PathBuf, Failed> {
    let text = std::fs::read_to_string(dir.join("hardened.toml")).map_err(|e| e.to_string())?;
    let mut file: toml::Table = toml::from_str(&text).map_err(|e| e.to_string())?;
    file.insert("name".into(), format!("zoo-{lang}-fault-{}", fault.name).into());
    let mut env = toml::Table::new();
    env.insert("ZOO_FAULT".into(), fault.name.into());
    file.insert("env".into(), env.into());
    let path = dir.join(format!("fault-{}.toml", fault.name));
    std::fs::write(&path, toml::to_string(&file).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    Ok(path)
}

fn fault_is_caught(
    lang: &str,
    dir: &Path,
    fault: &Fault,
    hardened_run: &dyn Fn(&Path) -> Result<Arc<Report>, Failed>,
) -> Result<Completion, Failed> {
    let (expected, gap): (&[&str], Option<&str>) = match fault.expect {
        Expect::Caught(ids) => (ids, None),
        Expect::Gap(why) => (&[], Some(why)),
    };
    let impl_file = faulty_impl_file(lang, dir, fault)?;
    // A known gap runs over the whole catalogue, so that the scenario that
    // closes it is noticed; a caught fault over its scenarios and the seed's.
    let files: Vec<PathBuf> = if gap.is_some() {
        vec![scenarios_dir()]
    } else {
        let mut ids: BTreeSet<String> = tagged("seed-contract")?;
        ids.extend(expected.iter().map(|s| s.to_string()));
        ids.iter()
            .map(|id| scenarios_dir().join(format!("{id}.toml")))
            .collect()
    };
    let report = run_shmconf(&impl_file, &files)?;
    // A fault may also show as a scenario's time running out (a writer that
    // never attaches the segment the scenario waits for): a verdict too.
    let failed = report.with(&["fail", "timeout"]);
    eprintln!(
        "{lang} with {}: exit {:?}, failing {failed:?} in {:.1} s",
        fault.name,
        report.code,
        report.took.as_secs_f64()
    );
    let broken = report.with(&["broken", "xpass", "interrupted"]);
    if !broken.is_empty() {
        return Err(format!("{}: not a clean verdict:\n{}", fault.name, report.describe(BAD)).into());
    }
    if let Some(gap) = gap {
        // Caught means failing where the same pair without the fault does not.
        let baseline = hardened_run(dir)?;
        let before = baseline.with(&["fail", "timeout"]);
        let mut failed: BTreeSet<String> = failed.difference(&before).map(|s| s.to_string()).collect();
        if !failed.is_empty() {
            // A scenario that fails now and then whatever the program (issue
            // 20's one-thread barrier) must not pass for a catch: both runs
            // again, over those scenarios only.
            let files: Vec<PathBuf> = failed
                .iter()
                .map(|id| scenarios_dir().join(format!("{id}.toml")))
                .collect();
            let again = run_shmconf(&impl_file, &files)?;
            let without = run_shmconf(&dir.join("hardened.toml"), &files)?;
            let (again, without) = (again.with(&["fail", "timeout"]), without.with(&["fail", "timeout"]));
            failed.retain(|id| again.contains(id.as_str()) && !without.contains(id.as_str()));
        }
        return if failed.is_empty() {
            Ok(Completion::ignored_with(format!(
                "known gap, not caught yet: {} ({gap})",
                fault.what
            )))
        } else {
            Err(format!(
                "{} ({}) is caught now, by {failed:?}: expect those in FAULTS and drop its gap",
                fault.name, fault.what
            )
            .into())
        };
    }
    let missed: Vec<&&str> = expected.iter().filter(|id| !failed.contains(**id)).collect();
    if report.code != Some(1) || failed.is_empty() || !missed.is_empty() {
        return Err(format!(
            "{} ({}) must be caught: exit {:?} (want 1), expected failures not seen: {missed:?}; verdicts:\n{}",
            fault.name,
            fault.what,
            report.code,
            report.describe(&["fail", "xfail", "pass"])
        )
        .into());
    }
    Ok(Completion::Completed)
}
