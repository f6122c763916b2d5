//! The conformance matrix: one catalogue judged on several targets (local
//! namespaces, Docker, Podman with each OCI runtime, gVisor under `runsc
//! do`), side by side. Each target is a child `shmconf run --format json`
//! (so a target is exactly what a user would run by hand); its report is
//! kept as `<target>.json` and `<target>.junit.xml`, and every report in a
//! folder is merged into one HTML page: scenarios as rows, targets as
//! columns, each cell the verdict with its message one click away, rows
//! where targets disagree highlighted. `--from` merges reports made
//! elsewhere (the GitHub workflow's per-target jobs, a cluster's Jobs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::engine::backend::sandbox::SandboxKind;
use crate::outcome::ScenarioResult;
use crate::outcome::Status;
use crate::report::json::{ResultRecord, RunReport};

/// How a target starts `shmconf run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// This machine, namespaces per scenario where it can make them.
    Local,
    /// `--backend docker`.
    Docker,
    /// `--backend podman --runtime R` with the project's containers.conf.
    Podman(&'static str),
    /// The whole run inside gVisor: `runsc --network=none do shmconf run`.
    RunscDo,
    /// `--backend NAME` (bwrap, flatpak, firejail, unshare, lxc): each
    /// container IPC mode a sandbox; only the scenarios about IPC modes
    /// (`--tag docker`).
    Sandbox(SandboxKind),
}

/// A target the matrix knows by name.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    kind: Kind,
    /// Known divergences (an expectations file), so the column passes only
    /// if nothing else diverges.
    expectations: Option<&'static str>,
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "local",
        about: "this machine: an IPC namespace per scenario (Linux, procfs oracle)",
        kind: Kind::Local,
        expectations: None,
    },
    Target {
        name: "docker",
        about: "Docker, default runtime (runc): each scenario namespace a container",
        kind: Kind::Docker,
        expectations: None,
    },
    Target {
        name: "podman-runc",
        about: "Podman with runc: containers and pods",
        kind: Kind::Podman("runc"),
        expectations: None,
    },
    Target {
        name: "podman-crun",
        about: "Podman with crun",
        kind: Kind::Podman("crun"),
        expectations: None,
    },
    Target {
        name: "podman-runsc",
        about: "Podman with gVisor (runsc) as the OCI runtime: the oracle reads inside each sandbox",
        kind: Kind::Podman("runsc"),
        expectations: Some(include_str!("../runtimes/podman-runsc.toml")),
    },
    Target {
        name: "gvisor",
        about: "the whole run inside gVisor: runsc do (no procfs oracle, no namespace handles)",
        kind: Kind::RunscDo,
        expectations: Some(include_str!("../runtimes/gvisor.toml")),
    },
    Target {
        name: "bwrap",
        about: "bubblewrap: a private namespace is --unshare-ipc, the host's is without it",
        kind: Kind::Sandbox(SandboxKind::Bwrap),
        expectations: None,
    },
    Target {
        name: "flatpak",
        about: "bubblewrap as flatpak run starts an app: private by default, the host's with --share=ipc",
        kind: Kind::Sandbox(SandboxKind::Flatpak),
        expectations: None,
    },
    Target {
        name: "firejail",
        about: "firejail --noprofile: a private namespace is --ipc-namespace, the host's is without it",
        kind: Kind::Sandbox(SandboxKind::Firejail),
        expectations: Some(include_str!("../runtimes/firejail.toml")),
    },
    Target {
        name: "unshare",
        about: "util-linux unshare: a private namespace is --ipc, the host's is --uts alone",
        kind: Kind::Sandbox(SandboxKind::Unshare),
        expectations: None,
    },
    Target {
        name: "lxc",
        about: "LXC application containers (lxc-execute) on the host's root: private, or lxc.namespace.share.ipc",
        kind: Kind::Sandbox(SandboxKind::Lxc),
        expectations: None,
    },
];

/// Limits for targets whose every process start goes through an engine or
/// a sandbox (milliseconds).
const CONTAINER_STEP_MS: u64 = 30_000;
const CONTAINER_SCENARIO_MS: u64 = 180_000;

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// One scenario's verdict as a report gives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub scenario: String,
    pub status: Status,
    pub duration_ms: u64,
    pub message: String,
    #[serde(default)]
    pub problems: Vec<String>,
    /// A failure's diagram (`--record`'s SVG), relative to the matrix's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagram: Option<String>,
}

impl From<ResultRecord> for Cell {
    fn from(r: ResultRecord) -> Cell {
        Cell {
            scenario: r.scenario,
            status: r.status,
            duration_ms: r.duration_ms,
            message: r.message,
            problems: r.problems,
            diagram: None,
        }
    }
}

/// What the matrix keeps of one target: `<target>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetReport {
    pub target: String,
    pub about: String,
    pub implementation: String,
    /// The command that ran, as a user would type it.
    pub command: Vec<String>,
    pub duration_ms: u64,
    /// The run's exit status (0: nothing unexpected).
    pub exit_code: Option<i32>,
    /// Why the target could not run here at all (its column is empty).
    pub not_run: Option<String>,
    pub results: Vec<Cell>,
    /// When, with what and where it was made (absent in reports of older versions).
    #[serde(default)]
    pub made: Option<Provenance>,
    /// The folder the report was read from (`--from`): where its diagrams are.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// When, with which shmconf, on which kernel and with which image a target
/// report was made: a matrix merged from many machines says each column's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// UTC, RFC 3339.
    pub date: String,
    pub shmconf_version: String,
    /// The release of the kernel of the machine that ran shmconf (a
    /// sandbox's own kernel, gVisor's, answers for itself in its results).
    pub host_kernel: String,
    pub hostname: String,
    /// The container image, for the container targets.
    pub image: Option<String>,
}

impl Provenance {
    /// This machine, now.
    pub fn here(image: Option<String>) -> Provenance {
        let kernel_file = |name: &str| crate::report::kernel_fact(name).unwrap_or_else(|| "unknown".into());
        Provenance {
            date: chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            shmconf_version: env!("CARGO_PKG_VERSION").into(),
            host_kernel: kernel_file("osrelease"),
            hostname: kernel_file("hostname"),
            image,
        }
    }

    fn line(&self) -> String {
        let mut line = format!(
            "{} &middot; shmconf {} &middot; kernel {} on {}",
            esc(&self.date),
            esc(&self.shmconf_version),
            esc(&self.host_kernel),
            esc(&self.hostname)
        );
        if let Some(image) = &self.image {
            line.push_str(&format!(" &middot; image {}", esc(image)));
        }
        line
    }
}

impl TargetReport {
    /// How many of its scenarios have this verdict.
    pub fn count(&self, status: Status) -> usize {
        self.results.iter().filter(|c| c.status == status).count()
    }

    /// The JUnit report of this target (one suite, named after it).
    pub fn junit(&self) -> String {
        let results: Vec<ScenarioResult> = self
            .results
            .iter()
            .map(|c| ScenarioResult {
                id: c.scenario.clone(),
                status: c.status,
                duration: Duration::from_millis(c.duration_ms),
                message: c.message.clone(),
                problems: c.problems.clone(),
                failures: vec![],
                log: None,
            })
            .collect();
        crate::report::junit::junit(&format!("{} on {}", self.implementation, self.target), &results, None)
    }
}

/// What the user asked of `shmconf matrix`.
#[derive(Debug, Clone)]
pub struct MatrixRun {
    pub targets: Vec<&'static Target>,
    /// Named with --target: one that cannot run is a failure, not a note.
    pub required: bool,
    pub out: PathBuf,
    pub image: String,
    pub implementation: String,
    pub scenarios: Vec<PathBuf>,
    /// This program, run as each target's child.
    pub shmconf: PathBuf,
    /// The one target's column name, where it is not the target's own.
    pub rename: Option<String>,
}

fn program_answers(argv: &[&str]) -> bool {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A file the matrix could not read or write, or a report it cannot take.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("{}: {source}", .path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{target}: the report cannot be written as JSON: {source}")]
    Encode {
        target: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: not a target report: {source}", .path.display())]
    NotAReport {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: a second report for target {target}", .path.display())]
    SecondReport { path: PathBuf, target: String },
    /// The reports and expectations files would be found as scenarios by
    /// the targets that run after the first.
    #[error(
        "--out {} is inside the scenarios {}: what the matrix writes there would be read as scenarios; put --out elsewhere",
        .out.display(),
        .scenarios.display()
    )]
    OutInsideScenarios { out: PathBuf, scenarios: PathBuf },
}

/// `path` with symbolic links resolved as far as it exists (the rest
/// appended as given), for comparing where two paths lead.
fn resolved(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

impl MatrixError {
    fn file(path: &Path) -> impl FnOnce(std::io::Error) -> MatrixError {
        let path = path.to_path_buf();
        move |source| MatrixError::File { path, source }
    }
}

/// Why a target cannot run on this machine (said in its column's header).
#[derive(Debug, thiserror::Error)]
pub enum NotRunnable {
    #[error("`docker info` fails: no Docker engine here")]
    NoDocker,
    #[error("podman is not installed (Debian: apt-get install podman catatonit)")]
    NoPodman,
    #[error("runsc (gVisor) is not installed (Debian: apt-get install runsc)")]
    NoRunsc,
    #[error("{program} is not installed (Debian: apt-get install {package})")]
    NoSandbox {
        program: &'static str,
        package: &'static str,
    },
    #[error(transparent)]
    File(#[from] MatrixError),
}

impl MatrixRun {
    /// The command of a target, or why it cannot run on this machine.
    fn command(&self, t: &Target) -> Result<Vec<String>, NotRunnable> {
        let exe = self.shmconf.display().to_string();
        let mut argv: Vec<String> = Vec::new();
        let mut run_args: Vec<String> = vec![
            "run".into(),
            "--format".into(),
            "json".into(),
            "--impl".into(),
            self.implementation.clone(),
            // A target whose every scenario SKIPs (a runtime that can start
            // no container here) is a column of SKIPs with their reason,
            // said in its header, not a failed child.
            "--no-tests".into(),
            "pass".into(),
            // Logs and each failure's diagram, linked from its cell.
            "--record".into(),
            self.out.join(record_folder(t.name)).display().to_string(),
        ];
        if matches!(t.kind, Kind::Docker | Kind::Podman(_) | Kind::RunscDo) {
            // Every step of a container target is an `exec` through the
            // engine (1-2 s each under a sandbox on a loaded machine): the
            // default 5 s per step would time out on the engine, not on the
            // implementation.
            run_args.extend([
                "--step-timeout".into(),
                CONTAINER_STEP_MS.to_string(),
                "--scenario-timeout".into(),
                CONTAINER_SCENARIO_MS.to_string(),
            ]);
        }
        match t.kind {
            Kind::Local => argv.push(exe),
            Kind::Docker => {
                if !program_answers(&["docker", "info"]) {
                    return Err(NotRunnable::NoDocker);
                }
                argv.push(exe);
                run_args.extend([
                    "--backend".into(),
                    "docker".into(),
                    "--image".into(),
                    self.image.clone(),
                ]);
            }
            Kind::Podman(runtime) => {
                if !program_answers(&["podman", "--version"]) {
                    return Err(NotRunnable::NoPodman);
                }
                let conf = self.out.join("podman.conf");
                std::fs::write(&conf, crate::engine::backend::containers::PODMAN_CONF)
                    .map_err(MatrixError::file(&conf))?;
                argv.push(exe);
                run_args.extend([
                    "--backend".into(),
                    "podman".into(),
                    "--runtime".into(),
                    runtime.into(),
                    "--image".into(),
                    self.image.clone(),
                    "--containers-conf".into(),
                    conf.display().to_string(),
                ]);
            }
            Kind::RunscDo => {
                if !program_answers(&["runsc", "--version"]) {
                    return Err(NotRunnable::NoRunsc);
                }
                argv.extend(["runsc".into(), "--network=none".into(), "do".into(), exe]);
            }
            Kind::Sandbox(kind) => {
                if !program_answers(&[kind.program(), "--version"]) {
                    return Err(NotRunnable::NoSandbox {
                        program: kind.program(),
                        package: kind.package(),
                    });
                }
                argv.push(exe);
                run_args.extend(["--backend".into(), kind.name().into(), "--tag".into(), "docker".into()]);
            }
        }
        if let Some(text) = t.expectations {
            let dir = self.out.join("expectations");
            std::fs::create_dir_all(&dir).map_err(MatrixError::file(&dir))?;
            let file = dir.join(format!("{}.toml", t.name));
            std::fs::write(&file, text).map_err(MatrixError::file(&file))?;
            run_args.extend(["--expectations".into(), file.display().to_string()]);
        }
        argv.extend(run_args);
        argv.extend(self.scenarios.iter().map(|p| p.display().to_string()));
        Ok(argv)
    }

    /// Run one target and keep its report (its `--record` folder beside it).
    pub fn run_target(&self, t: &Target) -> TargetReport {
        let mut report = TargetReport {
            target: t.name.into(),
            about: t.about.into(),
            implementation: self.implementation.clone(),
            command: vec![],
            duration_ms: 0,
            exit_code: None,
            not_run: None,
            results: vec![],
            made: Some(Provenance::here(
                matches!(t.kind, Kind::Docker | Kind::Podman(_)).then(|| self.image.clone()),
            )),
            source: None,
        };
        // An earlier run's diagrams must not stand for this run's failures.
        let _ = std::fs::remove_dir_all(self.out.join(record_folder(t.name)));
        let argv = match self.command(t) {
            Ok(argv) => argv,
            Err(why) => {
                report.not_run = Some(why.to_string());
                return report;
            }
        };
        report.command = argv.clone();
        let start = Instant::now();
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        report.duration_ms = start.elapsed().as_millis() as u64;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                report.not_run = Some(format!("cannot run {}: {e}", argv[0]));
                return report;
            }
        };
        report.exit_code = out.status.code();
        match serde_json::from_slice::<RunReport>(&out.stdout) {
            Ok(run) => {
                report.implementation = run.implementation;
                report.results = run.results.into_iter().map(Cell::from).collect();
                for cell in report.results.iter_mut().filter(|c| c.status.is_failure()) {
                    let svg = format!(
                        "{}/{}",
                        record_folder(t.name),
                        crate::report::record_name(&cell.scenario, "svg")
                    );
                    cell.diagram = self.out.join(&svg).is_file().then_some(svg);
                }
            }
            Err(_) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let last = stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("(no message)");
                report.not_run = Some(format!("the run gave no report ({}): {}", out.status, last.trim()));
            }
        }
        report
    }

    /// Run every target in turn (they share the machine's cores), writing
    /// each report as it finishes, then the page. Exit status: 0 when every
    /// target that ran had nothing unexpected (and, with `required`, every
    /// target ran).
    pub fn run(&self, progress: &mut dyn FnMut(&TargetReport)) -> Result<(Vec<TargetReport>, bool), MatrixError> {
        let out = resolved(&self.out);
        if let Some(scenarios) = self
            .scenarios
            .iter()
            .find(|p| p.is_dir() && out.starts_with(resolved(p)))
        {
            return Err(MatrixError::OutInsideScenarios {
                out: self.out.clone(),
                scenarios: scenarios.clone(),
            });
        }
        std::fs::create_dir_all(&self.out).map_err(MatrixError::file(&self.out))?;
        let mut reports = Vec::new();
        for t in &self.targets {
            let mut report = self.run_target(t);
            if let Some(name) = &self.rename {
                report.about = format!("{} ({})", report.about, report.target);
                report.target = name.clone();
            }
            write_target(&self.out, &report)?;
            progress(&report);
            reports.push(report);
        }
        let ok = reports.iter().all(|r| {
            if r.not_run.is_some() {
                !self.required
            } else {
                r.exit_code == Some(0)
            }
        });
        write_page(&self.out, &reports)?;
        Ok((reports, ok))
    }
}

/// `<target>.json` and `<target>.junit.xml` in `dir`.
pub fn write_target(dir: &Path, report: &TargetReport) -> Result<(), MatrixError> {
    let json = serde_json::to_string_pretty(report).map_err(|source| MatrixError::Encode {
        target: report.target.clone(),
        source,
    })?;
    let file = dir.join(format!("{}.json", report.target));
    std::fs::write(&file, json).map_err(MatrixError::file(&file))?;
    let file = dir.join(format!("{}.junit.xml", report.target));
    std::fs::write(&file, report.junit()).map_err(MatrixError::file(&file))
}

/// Every target report in these files or folders (`*.json` with a target;
/// a file may hold several, one JSON document per line, as `--print` writes).
pub fn load_reports(paths: &[PathBuf]) -> Result<Vec<TargetReport>, MatrixError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut in_dir: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(MatrixError::file(p))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "json"))
                .collect();
            in_dir.sort();
            files.extend(in_dir);
        } else {
            files.push(p.clone());
        }
    }
    let mut reports: Vec<TargetReport> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(MatrixError::file(&f))?;
        for doc in serde_json::Deserializer::from_str(&text).into_iter::<TargetReport>() {
            let mut report = doc.map_err(|source| MatrixError::NotAReport {
                path: f.clone(),
                source,
            })?;
            // A diagram link is only ever one of the target's record files:
            // anything else in a report (a URL, a path out) is dropped.
            for cell in &mut report.results {
                if cell
                    .diagram
                    .as_deref()
                    .is_some_and(|d| !is_record_file(&report.target, d))
                {
                    cell.diagram = None;
                }
            }
            report.source = f.parent().map(Path::to_path_buf);
            // A target that ran replaces a "not run" placeholder for it (a
            // CI job that could not run it here, run elsewhere); two reports
            // of the same kind for one target are a mistake.
            match reports.iter().position(|r| r.target == report.target) {
                None => reports.push(report),
                Some(i) if reports[i].not_run.is_some() && report.not_run.is_none() => reports[i] = report,
                Some(i) if reports[i].not_run.is_none() && report.not_run.is_some() => {}
                Some(_) => {
                    return Err(MatrixError::SecondReport {
                        path: f.clone(),
                        target: report.target,
                    });
                }
            }
        }
    }
    // Known targets in their usual order, others after them by name.
    let rank = |name: &str| TARGETS.iter().position(|t| t.name == name).unwrap_or(TARGETS.len());
    reports.sort_by(|a, b| (rank(&a.target), &a.target).cmp(&(rank(&b.target), &b.target)));
    Ok(reports)
}

/// A target's `--record` folder, under the matrix's.
fn record_folder(target: &str) -> String {
    format!("{target}.record")
}

/// Is `path` a file of `target`'s record folder (as `report::record_name`
/// makes names: letters, digits, `%`, `.`, `_`, `~`, `-`), and nothing else?
fn is_record_file(target: &str, path: &str) -> bool {
    path.strip_prefix(&format!("{}/", record_folder(target)))
        .is_some_and(|name| {
            name.ends_with(".svg")
                && !name.starts_with('.')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"%._~-".contains(&b))
        })
}

/// Merged reports (`--from`) link diagrams in `out`: copy each from the
/// folder its report came from, and drop a link whose file is not there.
pub fn carry_diagrams(reports: &mut [TargetReport], out: &Path) {
    for report in reports.iter_mut() {
        let source = report.source.clone();
        for cell in &mut report.results {
            let Some(d) = cell.diagram.clone() else { continue };
            let (from, to) = (source.as_ref().map(|s| s.join(&d)), out.join(&d));
            let carried = match from {
                Some(from) if from == to => to.is_file(),
                Some(from) if from.is_file() => {
                    to.parent().is_some_and(|p| std::fs::create_dir_all(p).is_ok()) && std::fs::copy(&from, &to).is_ok()
                }
                _ => false,
            };
            if !carried {
                cell.diagram = None;
            }
        }
    }
}

/// How a verdict reads against Linux's behaviour, for the page.
fn class(status: Status) -> &'static str {
    match status {
        Status::Pass => "pass",
        Status::Xfail => "known",
        Status::Fail | Status::Xpass | Status::Timeout => "fail",
        Status::Broken => "broken",
        Status::Skip | Status::Interrupted => "skip",
    }
}

/// Do the targets that judged this scenario disagree (one passes where
/// another fails, known divergences included)?
pub fn diverges(cells: &[Option<&Cell>]) -> bool {
    let judged: BTreeSet<bool> = cells
        .iter()
        .flatten()
        .filter(|c| !matches!(c.status, Status::Skip | Status::Interrupted | Status::Broken))
        .map(|c| c.status == Status::Pass)
        .collect();
    judged.len() > 1
}

use crate::report::markup as esc;

/// The page: one self-contained HTML file (no script, no fetches), so it
/// opens from an artifact or a file system as it is.
/// A target's column head: its name, what it is, its counts (or why it
/// did not run) and where and when it was made.
fn target_header(r: &TargetReport) -> String {
    let count = |s: Status| r.count(s);
    let summary = match &r.not_run {
        Some(why) => format!("not run: {}", esc(why)),
        None if !r.results.is_empty() && r.results.iter().all(|c| c.status == Status::Skip) => {
            format!(
                "nothing checked here: every scenario a SKIP ({} s)",
                r.duration_ms / 1000
            )
        }
        None => format!(
            "{} pass, {} fail, {} known, {} skip, {} broken &middot; {:.1} s",
            count(Status::Pass),
            count(Status::Fail) + count(Status::Timeout) + count(Status::Xpass),
            count(Status::Xfail),
            count(Status::Skip) + count(Status::Interrupted),
            count(Status::Broken),
            r.duration_ms as f64 / 1000.0
        ),
    };
    let made = r
        .made
        .as_ref()
        .map_or_else(String::new, |m| format!("<div class=\"about\">{}</div>", m.line()));
    format!(
        "<th data-target=\"{t}\">{t}<div class=\"about\">{a}</div><div class=\"counts\">{summary}</div>{made}</th>",
        t = esc(&r.target),
        a = esc(&r.about)
    )
}

/// A verdict's cell: its label, opening to its message and diagram.
fn verdict_cell(c: &Cell) -> String {
    let text = if c.message.is_empty() {
        format!("{} ms", c.duration_ms)
    } else {
        format!("{}\n({} ms)", c.message, c.duration_ms)
    };
    // The file's name has %XX escapes of its own: as a URL
    // its '%' must be one too.
    let diagram = c.diagram.as_ref().map_or_else(String::new, |d| {
        format!("<p><a href=\"{}\">diagram</a></p>", esc(&d.replace('%', "%25")))
    });
    format!(
        "<td class=\"{}\"><details><summary>{}</summary><p>{}</p>{diagram}</details></td>",
        class(c.status),
        c.status.label(),
        esc(&text)
    )
}

pub fn page(reports: &[TargetReport]) -> String {
    let mut scenarios: BTreeSet<&str> = BTreeSet::new();
    for r in reports {
        scenarios.extend(r.results.iter().map(|c| c.scenario.as_str()));
    }
    let by_target: Vec<BTreeMap<&str, &Cell>> = reports
        .iter()
        .map(|r| r.results.iter().map(|c| (c.scenario.as_str(), c)).collect())
        .collect();
    let rows: Vec<(&str, Vec<Option<&Cell>>, bool)> = scenarios
        .iter()
        .map(|s| {
            let cells: Vec<Option<&Cell>> = by_target.iter().map(|m| m.get(s).copied()).collect();
            let d = diverges(&cells);
            (*s, cells, d)
        })
        .collect();
    let divergent = rows.iter().filter(|r| r.2).count();
    let mut h = String::new();
    h.push_str(concat!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n",
        "<title>shmconf conformance matrix</title>\n<style>\n",
        "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f24}\n",
        "h1{font-size:1.4em;margin:0 0 .3em}\n",
        "table{border-collapse:collapse}\n",
        "th,td{border:1px solid #d0d7de;padding:.3em .5em;vertical-align:top;text-align:left}\n",
        "thead th{position:sticky;top:0;background:#f6f8fa}\n",
        "th.scenario{font-family:ui-monospace,monospace;font-weight:normal;white-space:nowrap}\n",
        "tr.diverges th.scenario{background:#fff1b8;font-weight:bold}\n",
        "td.pass{background:#dafbe1}td.fail{background:#ffcecb}td.known{background:#ffdfb6}\n",
        "td.broken{background:#e8d5ff}td.skip{background:#f3f4f6;color:#57606a}td.absent{background:#fff}\n",
        "details summary{cursor:pointer;font-weight:600}\n",
        "details p{margin:.3em 0 0;max-width:32em;font-size:12px;white-space:pre-wrap}\n",
        ".about{font-weight:normal;font-size:12px;color:#57606a;max-width:14em}\n",
        ".counts{font-weight:normal;font-size:12px}\n",
        ".legend span{display:inline-block;padding:0 .5em;margin-right:.4em;border:1px solid #d0d7de}\n",
        "</style></head><body>\n<h1>shmconf conformance matrix</h1>\n"
    ));
    h.push_str(&format!(
        "<p>{} scenarios &times; {} targets; <strong>{divergent}</strong> scenario(s) where targets disagree (highlighted). \
         Click a verdict for its message.</p>\n",
        scenarios.len(),
        reports.len()
    ));
    h.push_str(concat!(
        "<p class=\"legend\"><span class=\"pass\" style=\"background:#dafbe1\">PASS: as Linux</span>",
        "<span style=\"background:#ffdfb6\">XFAIL: a known divergence</span>",
        "<span style=\"background:#ffcecb\">FAIL / TIMEOUT / XPASS</span>",
        "<span style=\"background:#e8d5ff\">BROKEN: not judged</span>",
        "<span style=\"background:#f3f4f6\">SKIP: cannot run there</span></p>\n"
    ));
    h.push_str("<table>\n<thead><tr><th>scenario</th>");
    for r in reports {
        h.push_str(&target_header(r));
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for (scenario, cells, d) in &rows {
        h.push_str(&format!(
            "<tr{}><th class=\"scenario\">{}</th>",
            if *d { " class=\"diverges\"" } else { "" },
            esc(scenario)
        ));
        for cell in cells {
            match cell {
                None => h.push_str("<td class=\"absent\">&ndash;</td>"),
                Some(c) => h.push_str(&verdict_cell(c)),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table>\n");
    for r in reports.iter().filter(|r| !r.command.is_empty()) {
        h.push_str(&format!(
            "<p class=\"counts\"><code>{}</code>: <code>{}</code></p>\n",
            esc(&r.target),
            esc(&r.command.join(" "))
        ));
    }
    h.push_str("</body></html>\n");
    h
}

/// `matrix.html` and `matrix.md` (the same table in Markdown, for
/// docs/runtimes.md and CI summaries) in `dir`.
pub fn write_page(dir: &Path, reports: &[TargetReport]) -> Result<(), MatrixError> {
    let file = dir.join("matrix.html");
    std::fs::write(&file, page(reports)).map_err(MatrixError::file(&file))?;
    let file = dir.join("matrix.md");
    std::fs::write(&file, markdown(reports)).map_err(MatrixError::file(&file))
}

/// The matrix as a Markdown table: a row per scenario, a column per target.
pub fn markdown(reports: &[TargetReport]) -> String {
    let mut scenarios: BTreeSet<&str> = BTreeSet::new();
    for r in reports {
        scenarios.extend(r.results.iter().map(|c| c.scenario.as_str()));
    }
    use crate::report::markdown_cell;
    let mut out = String::from("| scenario |");
    for r in reports {
        out.push_str(&format!(" {} |", markdown_cell(&r.target, false)));
    }
    out.push_str("\n| --- |");
    for _ in reports {
        out.push_str(" --- |");
    }
    out.push('\n');
    for s in &scenarios {
        let cells: Vec<Option<&Cell>> = reports
            .iter()
            .map(|r| r.results.iter().find(|c| c.scenario == *s))
            .collect();
        let name = if diverges(&cells) {
            format!("**{}**", markdown_cell(s, true))
        } else {
            markdown_cell(s, true)
        };
        out.push_str(&format!("| {name} |"));
        for c in cells {
            out.push_str(&format!(" {} |", c.map_or("-", |c| c.status.label())));
        }
        out.push('\n');
    }
    out.push_str("| *time* |");
    for r in reports {
        match &r.not_run {
            Some(_) => out.push_str(" not run |"),
            None => out.push_str(&format!(" {:.0} s |", r.duration_ms as f64 / 1000.0)),
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(s: &str, status: Status, msg: &str) -> Cell {
        Cell {
            scenario: s.into(),
            status,
            duration_ms: 5,
            message: msg.into(),
            problems: vec![],
            diagram: None,
        }
    }

    fn report(target: &str, cells: Vec<Cell>) -> TargetReport {
        TargetReport {
            target: target.into(),
            about: "about".into(),
            implementation: "rust".into(),
            command: vec!["shmconf".into(), "run".into()],
            duration_ms: 1234,
            exit_code: Some(0),
            not_run: None,
            results: cells,
            source: None,
            made: Some(Provenance {
                date: "2026-11-30T22:00:00Z".into(),
                shmconf_version: "0.1.0".into(),
                host_kernel: "6.1.0".into(),
                hostname: "ci-1".into(),
                image: Some("shmconf:ci".into()),
            }),
        }
    }

    #[test]
    fn a_row_diverges_only_where_judged_targets_disagree() {
        let p = cell("a", Status::Pass, "");
        let f = cell("a", Status::Fail, "x");
        let k = cell("a", Status::Xfail, "x");
        let s = cell("a", Status::Skip, "x");
        let b = cell("a", Status::Broken, "x");
        assert!(!diverges(&[Some(&p), Some(&p), None]));
        assert!(
            !diverges(&[Some(&p), Some(&s), Some(&b)]),
            "skips and broken judge nothing"
        );
        assert!(diverges(&[Some(&p), Some(&f)]));
        assert!(diverges(&[Some(&p), Some(&k)]), "a known divergence is still one");
        assert!(!diverges(&[Some(&f), Some(&k)]));
    }

    #[test]
    fn the_page_escapes_messages_and_marks_divergent_rows() {
        let reports = vec![
            report(
                "local",
                vec![cell("x/one", Status::Pass, ""), cell("x/two", Status::Pass, "")],
            ),
            report(
                "gvisor",
                vec![
                    cell("x/one", Status::Xfail, "<script>alert(1)</script> & more"),
                    cell("x/two", Status::Pass, ""),
                ],
            ),
        ];
        let mut reports = reports;
        reports[1].results[0].diagram = Some("gvisor.record/x%2Fone.svg".into());
        let html = page(&reports);
        assert!(
            html.contains("<a href=\"gvisor.record/x%252Fone.svg\">diagram</a>"),
            "a failure links its diagram, its name's % escaped for a URL"
        );
        assert_eq!(html.matches(">diagram</a>").count(), 1);
        assert!(!html.contains("<script>"), "messages are escaped");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
        assert_eq!(html.matches("<tr class=\"diverges\">").count(), 1);
        assert!(html.contains("1</strong> scenario(s) where targets disagree"));
        assert!(
            html.contains(
                "2026-11-30T22:00:00Z &middot; shmconf 0.1.0 &middot; kernel 6.1.0 on ci-1 &middot; image shmconf:ci"
            ),
            "each column says when, with what and where it was made"
        );
        let here = Provenance::here(None);
        assert!(here.date.ends_with('Z') && here.date.len() == 20, "{here:?}");
        assert_eq!(here.shmconf_version, env!("CARGO_PKG_VERSION"));
        let md = markdown(&reports);
        assert!(md.contains("| **`x/one`** | PASS | XFAIL |"), "{md}");
        assert!(md.contains("| `x/two` | PASS | PASS |"), "{md}");
    }

    #[test]
    fn a_target_that_skips_everything_is_a_column_not_a_failed_child() {
        let run = MatrixRun {
            targets: vec![],
            required: true,
            out: PathBuf::from("/nonexistent"),
            image: "shmconf".into(),
            implementation: "rust".into(),
            scenarios: vec![PathBuf::from("scenarios")],
            shmconf: PathBuf::from("/bin/shmconf"),
            rename: None,
        };
        let argv = run.command(target("local").unwrap()).unwrap();
        let joined = argv.join(" ");
        assert!(joined.contains(" --no-tests pass "), "{joined}");
        let all_skipped = report("podman-crun", vec![cell("a", Status::Skip, "crun: cgroups")]);
        assert!(page(&[all_skipped]).contains("nothing checked here: every scenario a SKIP"));
    }

    #[test]
    fn a_bar_in_a_target_or_scenario_name_keeps_the_markdown_table_whole() {
        let reports = vec![
            report("a|b", vec![cell("x|y", Status::Pass, "")]),
            report("c", vec![cell("x|y", Status::Fail, "m")]),
        ];
        let md = markdown(&reports);
        for line in md.lines() {
            let bars = line.matches('|').count() - line.matches("\\|").count();
            assert_eq!(bars, 4, "{line:?} in\n{md}");
        }
        assert!(md.starts_with("| scenario | a\\|b | c |\n"), "{md}");
        assert!(md.contains("| **`x\\|y`** | PASS | FAIL |"), "{md}");
    }

    #[test]
    fn reports_merge_in_target_order_and_refuse_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        for r in [
            report("gvisor", vec![]),
            report("zz-custom", vec![]),
            report("local", vec![]),
        ] {
            write_target(dir.path(), &r).unwrap();
        }
        let merged = load_reports(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<&str> = merged.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(names, ["local", "gvisor", "zz-custom"]);
        let again = dir.path().join("gvisor.json");
        let e = load_reports(&[dir.path().to_path_buf(), again]).unwrap_err();
        assert!(
            matches!(&e, MatrixError::SecondReport { target, .. } if target == "gvisor"),
            "{e}"
        );
        let junit = std::fs::read_to_string(dir.path().join("local.junit.xml")).unwrap();
        assert!(junit.contains("rust on local"), "{junit}");
    }

    /// A report's diagram link is one of its target's record files or
    /// nothing; merged reports carry their diagrams into the new folder.
    #[test]
    fn diagram_links_are_checked_and_carried() {
        assert!(is_record_file("local", "local.record/orders%2Fx.svg"));
        for bad in [
            "javascript:alert(1)",
            "local.record/../../etc/passwd.svg",
            "docker.record/x.svg",
            "local.record/x.json",
            "local.record/a/b.svg",
            "local.record/.svg",
        ] {
            assert!(!is_record_file("local", bad), "{bad}");
        }
        let from = tempfile::tempdir().unwrap();
        let mut failing = cell("orders/x", Status::Fail, "boom");
        failing.diagram = Some("local.record/orders%2Fx.svg".into());
        let mut gone = cell("orders/y", Status::Fail, "boom");
        gone.diagram = Some("local.record/orders%2Fy.svg".into());
        let mut hostile = cell("orders/z", Status::Fail, "boom");
        hostile.diagram = Some("javascript:alert(1)".into());
        write_target(from.path(), &report("local", vec![failing, gone, hostile])).unwrap();
        std::fs::create_dir(from.path().join("local.record")).unwrap();
        std::fs::write(from.path().join("local.record/orders%2Fx.svg"), "<svg/>").unwrap();
        let out = tempfile::tempdir().unwrap();
        let mut merged = load_reports(&[from.path().to_path_buf()]).unwrap();
        carry_diagrams(&mut merged, out.path());
        let links: Vec<Option<&str>> = merged[0].results.iter().map(|c| c.diagram.as_deref()).collect();
        assert_eq!(links, [Some("local.record/orders%2Fx.svg"), None, None]);
        assert!(out.path().join("local.record/orders%2Fx.svg").is_file(), "carried");
    }

    /// A report of a target that ran replaces a "not run" placeholder for
    /// it, in either order; two placeholders are still two reports.
    #[test]
    fn a_real_report_replaces_a_placeholder() {
        let mut placeholder = report("gvisor", vec![]);
        placeholder.not_run = Some("runsc is not installed".into());
        let real = report("gvisor", vec![]);
        for order in [[&placeholder, &real], [&real, &placeholder]] {
            let dir = tempfile::tempdir().unwrap();
            for (i, r) in order.iter().enumerate() {
                let sub = dir.path().join(i.to_string());
                std::fs::create_dir(&sub).unwrap();
                write_target(&sub, r).unwrap();
            }
            let merged = load_reports(&[dir.path().join("0"), dir.path().join("1")]).unwrap();
            assert_eq!(merged.len(), 1);
            assert_eq!(merged[0].not_run, None, "the real one stays");
        }
        let dir = tempfile::tempdir().unwrap();
        for i in 0..2 {
            let sub = dir.path().join(i.to_string());
            std::fs::create_dir(&sub).unwrap();
            write_target(&sub, &placeholder).unwrap();
        }
        let e = load_reports(&[dir.path().join("0"), dir.path().join("1")]).unwrap_err();
        assert!(
            matches!(&e, MatrixError::SecondReport { target, .. } if target == "gvisor"),
            "{e}"
        );
    }

    #[test]
    fn every_target_with_expectations_parses_them() {
        for t in TARGETS.iter().filter(|t| t.expectations.is_some()) {
            crate::outcome::Expectations::parse(Path::new(t.name), t.expectations.unwrap_or_default())
                .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        }
    }
}
