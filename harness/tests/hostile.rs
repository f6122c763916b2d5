//! The hostile-input corpus (`hostile/*.toml`) as cargo tests: every
//! case runs `shmconf run` and then proves that nothing was harmed or left:
//! the exit code and message are the documented ones, no process started in
//! the case is still running, no segment is left in the IPC namespace the
//! run was given, no temp dir is left (after a SIGKILL: once the next run
//! has swept), and the decoy tree beside the scenario is byte for byte
//! unchanged. A case may also make things before the run (`setup`: files,
//! copies, links, FIFOs, folders; `before`: a command), give other paths,
//! environment or TMPDIR, and check texts that must not appear, files the
//! run wrote (`written`), paths it removed (`gone`), and what a command
//! finds after it (`after`); whatever the case put in the temp dir must be
//! unchanged unless listed in `gone`.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use serde::Deserialize;

mod common;
use common::leftovers;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    case: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    scenario: String,
    #[serde(default)]
    args: Vec<String>,
    exit: i32,
    #[serde(default)]
    stdout: Vec<String>,
    #[serde(default)]
    stderr: Vec<String>,
    signal: Option<SignalAt>,
    max_rss_mib: Option<u64>,
    max_report_kib: Option<u64>,
    max_seconds: Option<u64>,
    /// The scenario file's name (default: the case's name + ".toml").
    file_name: Option<String>,
    /// What `shmconf run` is given instead of the scenario file.
    paths: Option<Vec<String>>,
    /// Made before the run, relative to the case's root.
    #[serde(default)]
    setup: Vec<Setup>,
    /// Environment of the run (besides TMPDIR).
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// TMPDIR of the run (default: a fresh folder in the case's root).
    tmpdir: Option<String>,
    #[serde(default)]
    stdout_not: Vec<String>,
    #[serde(default)]
    stderr_not: Vec<String>,
    /// Paths that must be gone after the run (a dead run's dirs it swept).
    #[serde(default)]
    gone: Vec<String>,
    /// Files the run must have written, with texts each must hold.
    #[serde(default)]
    written: BTreeMap<String, Vec<String>>,
    /// A command run before the run (it must succeed), e.g. to make a
    /// container a killed run would have left.
    before: Option<Vec<String>>,
    /// A command run after every other check that must succeed: what the
    /// run did to things outside the case's folders.
    after: Option<Vec<String>>,
}

/// Run a case's own command; it must succeed.
fn case_command(what: &str, argv: &[String], root: &Path) -> Result<(), String> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what} {:?}: {e}", argv[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} command failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// One thing made before the run: a file (with `text` and `mode`), a copy of
/// a file (`copy` to `to`), a symbolic link (`link` to `target`), a FIFO, or
/// a folder (`dir`, with `mode`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Setup {
    file: Option<String>,
    text: Option<String>,
    copy: Option<String>,
    to: Option<String>,
    link: Option<String>,
    target: Option<String>,
    fifo: Option<String>,
    dir: Option<String>,
    mode: Option<u32>,
}

impl Setup {
    fn make(&self, root: &Path, subst: &dyn Fn(&str) -> String) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let at = |rel: &str| root.join(subst(rel));
        let parent_of = |p: &Path| std::fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string());
        let made: PathBuf = if let Some(f) = &self.file {
            let p = at(f);
            parent_of(&p)?;
            std::fs::write(&p, subst(self.text.as_deref().unwrap_or(""))).map_err(|e| e.to_string())?;
            p
        } else if let (Some(from), Some(to)) = (&self.copy, &self.to) {
            let p = at(to);
            parent_of(&p)?;
            std::fs::copy(subst(from), &p).map_err(|e| format!("copy {from}: {e}"))?;
            p
        } else if let (Some(link), Some(target)) = (&self.link, &self.target) {
            let p = at(link);
            parent_of(&p)?;
            std::os::unix::fs::symlink(subst(target), &p).map_err(|e| e.to_string())?;
            return Ok(());
        } else if let Some(f) = &self.fifo {
            let p = at(f);
            parent_of(&p)?;
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|e| e.to_string())?;
            p
        } else if let Some(d) = &self.dir {
            let p = at(d);
            std::fs::create_dir_all(&p).map_err(|e| e.to_string())?;
            p
        } else {
            return Err(format!("a setup entry that makes nothing: {self:?}"));
        };
        if let Some(mode) = self.mode {
            std::fs::set_permissions(&made, std::fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalAt {
    name: String,
    /// Send once a process of the case whose command line contains this runs ("" = at once).
    #[serde(default)]
    when: String,
    /// Or once a file of this name exists in a scenario dir of the case.
    when_file: Option<String>,
    /// Or once any process working in the case's root (shmconf's own
    /// children too, e.g. an engine it probes) has this in its command line.
    when_in_root: Option<String>,
    /// Then SIGCONT this many ms after the signal (after SIGSTOP: Ctrl-Z, then `fg`).
    continue_after_ms: Option<u64>,
}

/// Is there a file named `name` in a scenario dir under `tmp` (tmp/shmconf-runs/RUN/DIR/name)?
fn case_file_exists(tmp: &Path, name: &str) -> bool {
    let runs = tmp.join("shmconf-runs");
    std::fs::read_dir(runs)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .any(|run| {
            std::fs::read_dir(run.path())
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .any(|dir| dir.path().join(name).exists())
        })
}

fn bin(name: &str) -> PathBuf {
    assert_cmd::cargo::cargo_bin(name)
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok) {
        let p = e.path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        if md.is_dir() {
            out.extend(snapshot(&p));
        } else {
            out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
        }
    }
    out
}

/// A live (not zombie) process other than this test: pid, cwd, command line.
struct Live {
    pid: String,
    cwd: PathBuf,
    cmdline: String,
}

fn live_processes() -> Vec<Live> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().filter_map(Result::ok) {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == me {
            continue;
        }
        let state = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if state
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        {
            continue;
        }
        found.push(Live {
            cwd: std::fs::read_link(e.path().join("cwd")).unwrap_or_default(),
            cmdline: std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default(),
            pid,
        });
    }
    found
}

/// Processes whose working directory or command line is inside `root`.
fn processes_inside(root: &Path) -> Vec<String> {
    let root_text = root.display().to_string();
    live_processes()
        .into_iter()
        .filter(|p| p.cwd.starts_with(root) || p.cmdline.contains(&root_text))
        .map(|p| format!("pid {} cwd {} cmd {}", p.pid, p.cwd.display(), p.cmdline))
        .collect()
}

/// Is a process of the case (working dir under `root`) running `needle`?
fn case_process_running(root: &Path, needle: &str) -> bool {
    live_processes()
        .iter()
        .any(|p| p.cmdline.contains(needle) && p.cwd.starts_with(root))
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn run_case(case: &Case) -> Result<(), Failed> {
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root_path = root.path().canonicalize().map_err(|e| e.to_string())?;
    let decoy = root_path.join("decoy");
    std::fs::create_dir_all(decoy.join("sub")).unwrap();
    std::fs::write(decoy.join("victim"), b"precious bytes\n").unwrap();
    std::fs::write(decoy.join("sub/victim2"), b"more\n").unwrap();
    std::fs::write(decoy.join("shmfile"), b"").unwrap();
    let before = snapshot(&decoy);
    let scen_dir = root_path.join("scen/cases");
    std::fs::create_dir_all(&scen_dir).unwrap();
    let file_name = case.file_name.clone().unwrap_or_else(|| format!("{}.toml", case.name));
    let file = scen_dir.join(file_name);
    let default_tmp = root_path.join("tmp");
    let subst = |s: &str| {
        s.replace("@DECOY@", &decoy.display().to_string())
            .replace("@FILE@", &file.display().to_string())
            .replace("@ROOT@", &root_path.display().to_string())
            .replace("@TMP@", &default_tmp.display().to_string())
            .replace("@MARKER@", shmconf_harness::rundir::MARKER)
            .replace("@WRITER@", &bin("shm-writer").display().to_string())
            .replace("@READER@", &bin("shm-reader").display().to_string())
            .replace("@SHMCONF@", &bin("shmconf").display().to_string())
    };
    std::fs::write(&file, subst(&case.scenario)).unwrap();
    std::fs::create_dir(&default_tmp).unwrap();
    let tmp = case
        .tmpdir
        .as_deref()
        .map_or_else(|| default_tmp.clone(), |t| PathBuf::from(subst(t)));
    for s in &case.setup {
        s.make(&root_path, &subst)?;
    }
    if let Some(before) = &case.before {
        let argv: Vec<String> = before.iter().map(|a| subst(a)).collect();
        case_command("before", &argv, &root_path)?;
    }
    // What the case put in the temp dir is the user's: it must stay as it is.
    let tmp_before = if tmp.is_dir() { snapshot(&tmp) } else { BTreeMap::new() };
    let left_before = leftovers(&tmp);

    let mut args: Vec<String> = case.args.iter().map(|a| subst(a)).collect();
    match &case.paths {
        Some(paths) => args.extend(paths.iter().map(|p| subst(p))),
        None => args.push(file.display().to_string()),
    }
    let limit = Duration::from_secs(case.max_seconds.unwrap_or(150));
    // The run gets an IPC namespace of the test's own, so what it leaves in
    // "its host's" namespace (the shared isolation) can be read afterwards.
    let outcome = shmconf::ipcns::in_private_ipc_ns(|| -> Result<_, String> {
        let start = Instant::now();
        // A case that signals shmconf judges how it handles the signal as a
        // user's shell starts it, not with what this test process was
        // started ignoring (`nohup cargo test`, a background job): shmconf
        // rightly keeps an inherited SIG_IGN of SIGHUP and SIGINT.
        let mut command = Command::new(bin("shmconf"));
        shmconf::sysv::process::end_with_parent(&mut command);
        if case.signal.is_some() {
            shmconf::sysv::process::with_default_signals(&mut command);
        }
        let mut child = command
            .arg("run")
            .args(&args)
            .current_dir(&root_path)
            .envs(case.env.iter().map(|(k, v)| (k, subst(v))))
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let pid = child.id();
        let out_reader = {
            let mut out = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = std::io::Read::read_to_end(&mut out, &mut v);
                v
            })
        };
        let err_reader = {
            let mut err = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = std::io::Read::read_to_end(&mut err, &mut v);
                v
            })
        };
        let mut signalled = case.signal.is_none();
        let mut continue_at: Option<Instant> = None;
        let mut peak_kib = 0;
        let status = loop {
            if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                break s;
            }
            peak_kib = peak_kib.max(vm_hwm_kib(pid).unwrap_or(0));
            if !signalled {
                let sig = case.signal.as_ref().unwrap();
                let due = match (&sig.when_file, &sig.when_in_root) {
                    (Some(f), _) => case_file_exists(&tmp, f),
                    (None, Some(needle)) => case_process_running(&root_path, needle),
                    (None, None) => sig.when.is_empty() || case_process_running(&tmp, &sig.when),
                };
                if due {
                    let signal: nix::sys::signal::Signal = sig.name.parse().map_err(|_| "bad signal".to_string())?;
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
                        .map_err(|e| e.to_string())?;
                    signalled = true;
                    continue_at = sig
                        .continue_after_ms
                        .map(|ms| Instant::now() + Duration::from_millis(ms));
                }
            }
            if continue_at.is_some_and(|at| Instant::now() >= at) {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGCONT,
                )
                .map_err(|e| e.to_string())?;
                continue_at = None;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("shmconf did not finish within {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        // Processes killed by the parent-death signal die asynchronously.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !processes_inside(&root_path).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left_procs = processes_inside(&root_path);
        let segments = shmconf::SegTable::read().map(|t| t.rows.len()).unwrap_or(usize::MAX);
        Ok((status, stdout, stderr, peak_kib, left_procs, segments))
    })
    .map_err(|e| format!("cannot make a private IPC namespace for the case: {e}"))??;
    let (status, stdout, stderr, peak_kib, left_procs, segments) = outcome;
    let stdout_s = String::from_utf8_lossy(&stdout);
    let stderr_s = String::from_utf8_lossy(&stderr);
    let show = || format!("\n--- stdout ---\n{stdout_s}\n--- stderr ---\n{stderr_s}");
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    if code != case.exit {
        return Err(format!("exit {code}, expected {}{}", case.exit, show()).into());
    }
    for want in &case.stdout {
        let want = subst(want);
        if !stdout_s.contains(&want) {
            return Err(format!("stdout lacks {want:?}{}", show()).into());
        }
    }
    for want in &case.stderr {
        let want = subst(want);
        if !stderr_s.contains(&want) {
            return Err(format!("stderr lacks {want:?}{}", show()).into());
        }
    }
    for unwanted in &case.stdout_not {
        let unwanted = subst(unwanted);
        if stdout_s.contains(&unwanted) {
            return Err(format!("stdout has {unwanted:?}{}", show()).into());
        }
    }
    for unwanted in &case.stderr_not {
        let unwanted = subst(unwanted);
        if stderr_s.contains(&unwanted) {
            return Err(format!("stderr has {unwanted:?}{}", show()).into());
        }
    }
    if let Some(max) = case.max_rss_mib {
        if peak_kib > max * 1024 {
            return Err(format!("peak RSS {} MiB, limit {max} MiB{}", peak_kib / 1024, show()).into());
        }
        eprintln!("{}: peak RSS of shmconf {} MiB", case.name, peak_kib / 1024);
    }
    if let Some(max) = case.max_report_kib {
        if stdout.len() as u64 > max * 1024 {
            return Err(format!("report of {} bytes, limit {max} KiB", stdout.len()).into());
        }
    }
    if !left_procs.is_empty() {
        return Err(format!("processes left running: {left_procs:?}{}", show()).into());
    }
    if segments != 0 {
        return Err(format!("{segments} segment(s) left in the run's IPC namespace{}", show()).into());
    }
    if status.signal() == Some(libc::SIGKILL) {
        // A killed run cannot clean up: the next run must sweep its dir.
        let sweeper = scen_dir.join("sweeper.toml");
        std::fs::write(&sweeper, "description = \"x\"\n[[step]]\nexec = [\"true\"]\n").unwrap();
        let ok = Command::new(bin("shmconf"))
            .arg("run")
            .arg(&sweeper)
            .env("TMPDIR", &tmp)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        if !ok.success() {
            return Err("the sweeping run failed".into());
        }
    }
    let left: Vec<PathBuf> = leftovers(&tmp)
        .into_iter()
        .filter(|p| !left_before.contains(p))
        .collect();
    if !left.is_empty() {
        return Err(format!("temp files left: {left:?}{}", show()).into());
    }
    for (path, bytes) in &tmp_before {
        let gone = case.gone.iter().any(|g| path.starts_with(subst(g)));
        if !gone && std::fs::read(path).ok().as_ref() != Some(bytes) {
            return Err(format!("{} in the temp dir was changed or removed{}", path.display(), show()).into());
        }
    }
    for (path, wants) in &case.written {
        let path = subst(path);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}{}", show()))?;
        for want in wants {
            if !text.contains(&subst(want)) {
                return Err(format!("{path} lacks {want:?}:\n{text}{}", show()).into());
            }
        }
    }
    for g in &case.gone {
        let p = PathBuf::from(subst(g));
        if std::fs::symlink_metadata(&p).is_ok() {
            return Err(format!("{} is still there{}", p.display(), show()).into());
        }
    }
    if snapshot(&decoy) != before {
        return Err(format!("the decoy tree outside the scenario changed{}", show()).into());
    }
    if let Some(after) = &case.after {
        let argv: Vec<String> = after.iter().map(|a| subst(a)).collect();
        case_command("after", &argv, &root_path).map_err(|e| format!("{e}{}", show()))?;
    }
    Ok(())
}

/// Every `*.toml` of the corpus folder, in name order: one file per class of
/// attack, so separate changes add cases without touching each other's file.
fn corpus() -> Vec<(String, Case)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/hostile is readable")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a corpus file is readable");
        let manifest: Manifest = toml::from_str(&text).unwrap_or_else(|e| panic!("{} parses: {e}", file.display()));
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        cases.extend(manifest.case.into_iter().map(|c| (stem.clone(), c)));
    }
    cases
}

fn main() {
    let args = Arguments::from_args();
    let cases = corpus();
    assert!(cases.len() >= 90, "the corpus holds at least 90 cases");
    let mut names = std::collections::BTreeSet::new();
    for (_, case) in &cases {
        assert!(
            names.insert(case.name.clone()),
            "two corpus cases are named {}",
            case.name
        );
    }
    let root_needed = !nix::unistd::geteuid().is_root();
    let trials = cases
        .into_iter()
        .map(|(file, case)| {
            let name = format!("hostile::{file}::{}", case.name);
            Trial::test(name, move || run_case(&case)).with_ignored_flag(root_needed)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
