//! How fast the harness itself is: the local suite's wall time with one and
//! two jobs, and its per-scenario overhead against bare fork/exec of the same
//! processes (replayed from the run's own event logs), measured in one run.

use super::BenchError;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct HarnessSpeed {
    pub scenarios: usize,
    pub jobs1_ms: f64,
    pub jobs2_ms: f64,
    pub speedup: f64,
    pub processes: usize,
    pub bare_ms: f64,
    pub overhead_per_scenario_ms: f64,
}

/// Undo `events::escape`.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'x' if i + 3 < b.len() => {
                    out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap_or(0));
                    i += 2;
                }
                c => out.push(c),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn timed_run(
    exe: &Path,
    scenarios: &Path,
    skip: &[String],
    jobs: usize,
    record: Option<&Path>,
) -> Result<(f64, usize), BenchError> {
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg(scenarios)
        .args(["--jobs", &jobs.to_string(), "--format", "json"]);
    for s in skip {
        cmd.args(["--skip", s]);
    }
    if let Some(r) = record {
        cmd.arg("--record").arg(r);
    }
    let t0 = Instant::now();
    let out = cmd.stderr(Stdio::null()).output().map_err(|source| BenchError::Start {
        program: exe.to_path_buf(),
        source,
    })?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|source| BenchError::Report {
        what: "suite output".into(),
        source,
    })?;
    let ran = v["summary"]["total"].as_u64().unwrap_or(0) - v["summary"]["skip"].as_u64().unwrap_or(0);
    Ok((ms, ran as usize))
}

pub fn measure(exe: &Path, scenarios: &Path, skip: &[String]) -> Result<HarnessSpeed, BenchError> {
    let record = tempfile::tempdir()?;
    // Warm the page cache, then measure both in the same run, alternating.
    timed_run(exe, scenarios, skip, 2, None)?;
    let (jobs1, n) = timed_run(exe, scenarios, skip, 1, Some(record.path()))?;
    let (jobs2, _) = timed_run(exe, scenarios, skip, 2, None)?;
    // The processes the suite spawned, with their stdin, from its own logs.
    let mut spawns: Vec<(Vec<String>, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(record.path())?.flatten() {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.path()).unwrap_or_default()).unwrap_or_default();
        let events = v["log"]["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            if e["event"] == "spawn" {
                let argv: Vec<String> = e["argv"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(String::from))
                    .collect();
                let stdin = events
                    .iter()
                    .find(|s| s["event"] == "stdin" && s["proc"] == e["proc"])
                    .and_then(|s| s["data"].as_str())
                    .map(unescape)
                    .unwrap_or_default();
                spawns.push((argv, stdin));
            }
        }
    }
    // Bare: the same processes, one after another, stdin written and closed,
    // in a scratch dir with a key file and a private IPC namespace.
    let bare = std::thread::scope(|s| {
        s.spawn(|| -> Result<f64, BenchError> {
            let _ = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC);
            let dir = tempfile::tempdir()?;
            std::fs::write(dir.path().join("shmfile"), b"")?;
            let t0 = Instant::now();
            for (argv, stdin) in &spawns {
                if argv.is_empty() {
                    continue;
                }
                let mut child = match Command::new(&argv[0])
                    .args(&argv[1..])
                    .current_dir(dir.path())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                {
                    Ok(c) => c,
                    Err(_) => continue,
                };
                if let Some(mut i) = child.stdin.take() {
                    let _ = std::io::Write::write_all(&mut i, stdin);
                }
                let deadline = Instant::now() + Duration::from_secs(2);
                while child.try_wait().map(|s| s.is_none()).unwrap_or(false) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_micros(200));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Ok(t0.elapsed().as_secs_f64() * 1000.0)
        })
        .join()
        .unwrap_or_else(|_| Err(BenchError::Panicked("bare replay")))
    })?;
    Ok(HarnessSpeed {
        scenarios: n,
        jobs1_ms: jobs1,
        jobs2_ms: jobs2,
        speedup: jobs1 / jobs2,
        processes: spawns.len(),
        bare_ms: bare,
        overhead_per_scenario_ms: (jobs1 - bare) / n.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescape_inverts_escape() {
        let raw = b"a\n\r\t\\\"\x00\xff".to_vec();
        assert_eq!(super::unescape(&crate::events::escape(&raw)), raw);
    }
}
