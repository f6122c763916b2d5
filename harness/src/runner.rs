//! From paths to results: find scenario files, select, decide what can run
//! here, execute in parallel, judge, and apply the expectations file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::check::{check, Status};
use crate::events::Log;
use crate::exec::{execute, Isolation, Options};
use crate::impls::Implementation;
use crate::scenario::{LoadError, Scenario};

/// A loaded scenario and its id (path under the scenarios root, without `.toml`).
#[derive(Debug, Clone)]
pub struct ScenarioFile {
    pub id: String,
    pub path: PathBuf,
    pub scenario: Scenario,
}

/// Expand paths (files, directories, globs) into scenario files, sorted by id.
/// Every file that fails to load is reported, not just the first.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<ScenarioFile>, Vec<LoadError>> {
    let mut files: Vec<(PathBuf, PathBuf)> = Vec::new(); // (root, file)
    let mut errors = Vec::new();
    for p in paths {
        let text = p.to_string_lossy();
        let expanded: Vec<PathBuf> = if text.contains(['*', '?', '[']) {
            glob::glob(&text)
                .map(|g| g.filter_map(Result::ok).collect())
                .unwrap_or_default()
        } else {
            vec![p.clone()]
        };
        if expanded.is_empty() || !expanded[0].exists() {
            errors.push(LoadError {
                file: p.clone(),
                line: 0,
                column: 0,
                message: "no such file or directory".into(),
            });
            continue;
        }
        for e in expanded {
            if e.is_dir() {
                // Ids stay relative to the `scenarios` folder when given a theme folder.
                let root = e
                    .ancestors()
                    .find(|a| a.file_name().is_some_and(|n| n == "scenarios"))
                    .map_or_else(|| e.clone(), Path::to_path_buf);
                collect_dir(&root, &e, &mut files);
            } else {
                files.push((root_of(&e), e));
            }
        }
    }
    let mut out = Vec::new();
    for (root, file) in files {
        match Scenario::load(&file) {
            Ok(scenario) => {
                let rel = file.strip_prefix(&root).unwrap_or(&file).with_extension("");
                let id = rel.to_string_lossy().trim_start_matches('/').to_string();
                out.push(ScenarioFile {
                    id,
                    path: file,
                    scenario,
                });
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

fn collect_dir(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_dir(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "toml") && p.file_name().is_some_and(|n| n != "expectations.toml")
        {
            out.push((root.to_path_buf(), p));
        }
    }
}

/// For a single file: ids are relative to the nearest `scenarios` folder above it.
fn root_of(file: &Path) -> PathBuf {
    file.ancestors()
        .skip(1)
        .find(|a| a.file_name().is_some_and(|n| n == "scenarios"))
        .map(Path::to_path_buf)
        .unwrap_or_else(|| file.parent().unwrap_or(Path::new(".")).to_path_buf())
}

/// Keep scenarios with any of `tags` (all when empty) and none matching `skip`.
pub fn select(all: Vec<ScenarioFile>, tags: &[String], skip: &[String]) -> Vec<ScenarioFile> {
    all.into_iter()
        .filter(|s| tags.is_empty() || s.scenario.tags.iter().any(|t| tags.contains(t)))
        .filter(|s| !skip.iter().any(|pat| matches_pattern(pat, &s.id)))
        .collect()
}

fn matches_pattern(pat: &str, id: &str) -> bool {
    match glob::Pattern::new(pat) {
        Ok(p) if pat.contains(['*', '?', '[']) => p.matches(id),
        _ => id.contains(pat),
    }
}

/// What this process can do, probed once.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    pub namespaces: bool,
    pub other_uids: bool,
    /// /proc/sys/kernel is writable (Docker mounts it read-only).
    pub sysctls: bool,
}

impl Capabilities {
    pub fn detect() -> Capabilities {
        let namespaces = shmconf::ipcns::can_unshare_ipc();
        // Running as another uid needs real root: root in a user namespace
        // of our own maps a single uid.
        let other_uids = nix::unistd::geteuid().is_root()
            && std::fs::read_to_string("/proc/self/uid_map")
                .map(|m| m.lines().any(|l| l.split_whitespace().nth(2).is_some_and(|n| n != "1")))
                .unwrap_or(false);
        let sysctls = nix::unistd::access("/proc/sys/kernel/shm_rmid_forced", nix::unistd::AccessFlags::W_OK).is_ok();
        Capabilities {
            namespaces,
            other_uids,
            sysctls,
        }
    }

    pub fn isolation(&self) -> Isolation {
        if self.namespaces {
            Isolation::Namespaces
        } else {
            Isolation::Shared
        }
    }

    /// Why a scenario cannot run here, if it cannot.
    pub fn skip_reason(&self, s: &Scenario, isolation: Isolation) -> Option<String> {
        let needs = s.needs();
        if s.explore.is_some() && isolation != Isolation::Namespaces {
            return Some(
                "explores orders, each in a fresh IPC namespace: needs the local backend with namespaces".into(),
            );
        }
        if isolation == Isolation::Docker {
            if needs.sysctl {
                return Some(
                    "sets a sysctl: a container's /proc/sys is read-only (run it with the local backend)".into(),
                );
            }
            if needs.drop_ns {
                return Some("drops a namespace: the docker backend's namespaces belong to containers".into());
            }
            if needs.kill {
                return Some("signals a process: the docker backend cannot reach processes inside containers".into());
            }
            return None;
        }
        if needs.docker {
            return Some("uses Docker IPC modes or containers: run it with --backend docker".into());
        }
        if needs.namespaces > 1 && !self.namespaces {
            return Some(format!(
                "needs {} IPC namespaces, and this process cannot create namespaces (needs root or CAP_SYS_ADMIN, e.g. docker run --cap-add SYS_ADMIN)",
                needs.namespaces
            ));
        }
        if needs.sysctl && !self.namespaces {
            return Some(
                "sets a sysctl, which needs an IPC namespace of the scenario's own (root or CAP_SYS_ADMIN)".into(),
            );
        }
        if needs.sysctl && !self.sysctls {
            return Some(
                "sets a sysctl, and /proc/sys/kernel is not writable here (in Docker: --security-opt systempaths=unconfined)"
                    .into(),
            );
        }
        if needs.other_uid && !self.other_uids {
            return Some("runs a process as another uid, which needs real root".into());
        }
        None
    }
}

/// Known deviations of an implementation: scenario id → expected outcome.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Expectations(pub BTreeMap<String, Expected>);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// "fail" (also matches timeout), or "skip" (not run).
    pub status: ExpectedStatus,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectedStatus {
    Fail,
    Skip,
}

impl Expectations {
    pub fn load(path: &Path) -> Result<Expectations, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::unreadable(path, e))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Expectations, LoadError> {
        crate::scenario::from_toml(path, text)
    }
}

/// One scenario's outcome.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub id: String,
    pub status: Status,
    pub duration: Duration,
    pub message: String,
    pub problems: Vec<String>,
    pub log: Option<Log>,
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub implementation: Implementation,
    /// Exploration scenarios: run only this order (`--order "w1:attach,r1,w1:input"`).
    pub replay_order: Option<String>,
    pub exec: Options,
    pub jobs: usize,
    pub expectations: Expectations,
    pub capabilities: Capabilities,
}

/// Run scenarios, `jobs` at a time (one at a time without namespaces),
/// calling `progress` as each finishes. Results come back in input order.
pub fn run_all(
    scenarios: &[ScenarioFile],
    cfg: &RunConfig,
    progress: &(dyn Fn(&ScenarioResult) + Sync),
) -> Vec<ScenarioResult> {
    let jobs = if cfg.exec.isolation == Isolation::Shared {
        1
    } else {
        cfg.jobs.max(1)
    };
    parallel_map(
        scenarios.len(),
        jobs,
        || false,
        |i| {
            let result = run_one(&scenarios[i], cfg);
            progress(&result);
            result
        },
    )
}

/// Run `f(0..n)` on up to `jobs` threads, taking indices in order, until all
/// are done or `stop()` says so; results come back in index order, without
/// the indices that were never started.
pub fn parallel_map<T: Send>(
    n: usize,
    jobs: usize,
    stop: impl Fn() -> bool + Sync,
    f: impl Fn(usize) -> T + Sync,
) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n || stop() {
                    break;
                }
                let r = f(i);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    results.into_inner().unwrap().into_iter().flatten().collect()
}

/// Execute, check and apply expectations for one scenario.
pub fn run_one(sf: &ScenarioFile, cfg: &RunConfig) -> ScenarioResult {
    let expected = cfg.expectations.0.get(&sf.id);
    let skipped = |message: String| ScenarioResult {
        id: sf.id.clone(),
        status: Status::Skip,
        duration: Duration::ZERO,
        message,
        problems: vec![],
        log: None,
    };
    if let Some(e) = expected.filter(|e| e.status == ExpectedStatus::Skip) {
        return skipped(format!("expectations: {}", e.reason));
    }
    if let Some(reason) = cfg.capabilities.skip_reason(&sf.scenario, cfg.exec.isolation) {
        return skipped(reason);
    }
    if crate::procs::interrupted() {
        return skipped("interrupted (Ctrl-C) before it started".into());
    }
    if sf.scenario.explore.is_some() {
        let r = crate::explore::run(sf, cfg, cfg.replay_order.as_deref());
        return match (expected, r.status) {
            (Some(e), Status::Fail) => ScenarioResult {
                status: Status::Xfail,
                message: format!("{} (expected: {})", r.message, e.reason),
                ..r
            },
            (Some(e), Status::Pass) => ScenarioResult {
                status: Status::Xpass,
                message: format!("passed, but the expectations file says it fails: {}", e.reason),
                ..r
            },
            _ => r,
        };
    }
    let start = Instant::now();
    let mut opts = cfg.exec.clone();
    if let Some(ms) = sf.scenario.timeout_ms {
        opts.scenario_timeout = Duration::from_millis(ms);
    }
    let log = execute(&sf.id, &sf.scenario, &cfg.implementation, &opts);
    let verdict = check(&sf.scenario, &log);
    let (status, message) = match (expected, verdict.status) {
        (Some(e), Status::Fail | Status::Timeout) => {
            (Status::Xfail, format!("{} (expected: {})", verdict.message, e.reason))
        }
        (Some(e), Status::Pass) => (
            Status::Xpass,
            format!("passed, but the expectations file says it fails: {}", e.reason),
        ),
        (_, s) => (s, verdict.message),
    };
    ScenarioResult {
        id: sf.id.clone(),
        status,
        duration: start.elapsed(),
        message,
        problems: verdict.problems,
        log: Some(log),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_patterns() {
        assert!(matches_pattern("keys/*", "keys/missing"));
        assert!(!matches_pattern("keys/*", "orders/keys"));
        assert!(matches_pattern("missing", "keys/missing-file"));
    }
}
