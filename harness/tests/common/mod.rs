//! Helpers shared by the harness's CLI test files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;

pub fn scenarios() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// Every run of shmconf in these tests is bounded: a hang fails the test.
/// It dies with the test (a killed test binary leaves no run behind).
pub fn shmconf() -> Command {
    let mut std_cmd = std::process::Command::new(env!("CARGO_BIN_EXE_shmconf"));
    shmconf::sysv::process::end_with_parent(&mut std_cmd);
    let mut cmd = Command::from_std(std_cmd);
    cmd.timeout(Duration::from_secs(300));
    cmd
}

/// How many scenarios carry `tag`, from `shmconf list` (not a literal that
/// goes stale when the catalogue grows).
pub fn tagged(tag: &str) -> usize {
    let out = shmconf()
        .args(["list", "--tag", tag])
        .arg(scenarios())
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// `shmconf: N passed, 0 failed` for every scenario of the seed contract.
pub fn all_seed_contract_pass() -> String {
    format!("shmconf: {} passed, 0 failed", tagged("seed-contract"))
}

/// Files and dirs left under `dir`, except the (empty) shared folder of run dirs.
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == "shmconf-runs") && p.is_dir() {
            out.extend(leftovers(&p));
        } else {
            out.push(p);
        }
    }
    out
}
