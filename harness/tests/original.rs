//! The tutorial's own two programs, compiled from the article (`-std=c++11`,
//! gets() and all), judged through an implementation file that declares no
//! options: every seed-contract scenario passes, every scenario that needs
//! an option is a SKIP saying which, and what fails is exactly the defects
//! the file lists (each an XFAIL that must really fail, else XPASS).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

mod common;
use common::{scenarios, shmconf};

fn original_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/original")
}

/// Build the article's programs and copy their implementation file beside
/// them, in a folder other uids can reach (scenarios run roles as 65534).
fn build_original(dir: &Path) -> PathBuf {
    build_variant(dir, None)
}

/// The article's programs with one line of one of them replaced (a fault
/// injected beside its known defects), and their implementation file.
fn build_variant(dir: &Path, change: Option<(&str, &str, &str)>) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for role in ["writer", "reader"] {
        let mut source = std::fs::read_to_string(original_dir().join(format!("{role}.cpp"))).unwrap();
        if let Some((_, line, replacement)) = change.filter(|(r, _, _)| *r == role) {
            assert!(source.contains(line), "{role}.cpp has no {line:?}");
            source = source.replace(line, replacement);
        }
        let cpp = dir.join(format!("{role}.cpp"));
        std::fs::write(&cpp, source).unwrap();
        let out = StdCommand::new("g++")
            .args(["-std=c++11", "-o"])
            .arg(dir.join(role))
            .arg(&cpp)
            .output()
            .expect("g++ (the article's programs are C++)");
        assert!(
            out.status.success(),
            "g++ -std=c++11 {role}.cpp: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let file = dir.join("impl.toml");
    std::fs::copy(original_dir().join("impl.toml"), &file).unwrap();
    file
}

struct Verdict {
    id: String,
    status: String,
    message: String,
}

fn run_catalogue(impl_file: &Path) -> (Vec<Verdict>, Option<i32>) {
    run_scenarios(impl_file, &[scenarios()])
}

fn run_scenarios(impl_file: &Path, paths: &[PathBuf]) -> (Vec<Verdict>, Option<i32>) {
    let out = shmconf()
        .args(["run", "--format", "json", "--impl-file"])
        .arg(impl_file)
        .args(paths)
        .output()
        .unwrap();
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let verdicts = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Verdict {
            id: r["scenario"].as_str().unwrap().to_string(),
            status: r["status"].as_str().unwrap().to_string(),
            message: r["message"].as_str().unwrap_or("").to_string(),
        })
        .collect();
    (verdicts, out.status.code())
}

fn listed(tag: &str) -> BTreeSet<String> {
    let out = shmconf()
        .args(["list", "--tag", tag])
        .arg(scenarios())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn the_tutorials_programs_fail_only_for_their_listed_defects() {
    let dir = tempfile::tempdir().unwrap();
    let impl_file = build_original(dir.path());
    let (verdicts, code) = run_catalogue(&impl_file);
    let with = |status: &str| -> BTreeSet<String> {
        verdicts
            .iter()
            .filter(|v| v.status == status)
            .map(|v| v.id.clone())
            .collect()
    };
    let problems: Vec<String> = verdicts
        .iter()
        .filter(|v| !["pass", "skip", "xfail"].contains(&v.status.as_str()))
        .map(|v| format!("{} {}: {}", v.status, v.id, v.message))
        .collect();
    assert!(problems.is_empty(), "unexpected verdicts:\n{}", problems.join("\n"));
    assert_eq!(code, Some(0));

    // The defects: exactly the file's deviations, each really failing (an
    // XFAIL that passed would be an XPASS above).
    let text = std::fs::read_to_string(&impl_file).unwrap();
    let file: toml::Table = toml::from_str(&text).unwrap();
    let listed_defects: BTreeSet<String> = file["deviations"].as_table().unwrap().keys().cloned().collect();
    assert_eq!(with("xfail"), listed_defects);
    assert_eq!(listed_defects.len(), 11);

    // The seed contract holds in full.
    let seed = listed("seed-contract");
    assert!(!seed.is_empty());
    let passed = with("pass");
    let missing: Vec<&String> = seed.difference(&passed).collect();
    assert!(
        missing.is_empty(),
        "seed-contract scenarios that did not pass: {missing:?}"
    );

    // Every skip says why, and it is a missing option or a backend the
    // scenario needs, never a failure in disguise.
    for v in verdicts.iter().filter(|v| v.status == "skip") {
        assert!(
            v.message.starts_with("implementation original has no --")
                || v.message.contains("--backend docker or podman"),
            "{}: skipped for {:?}",
            v.id,
            v.message
        );
    }
    assert!(
        verdicts
            .iter()
            .any(|v| v.message == "implementation original has no --keep"),
        "the scenarios that need --keep skip for it"
    );
}

#[test]
fn without_its_deviations_the_original_fails_exactly_those_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let impl_file = build_original(dir.path());
    // The same file with its deviations cut off: the defects are FAILs.
    let text = std::fs::read_to_string(&impl_file).unwrap();
    let cut = text.split("[deviations.").next().unwrap().to_string();
    std::fs::write(&impl_file, &cut).unwrap();
    let (verdicts, code) = run_catalogue(&impl_file);
    let failed: BTreeSet<&str> = verdicts
        .iter()
        .filter(|v| v.status == "fail")
        .map(|v| v.id.as_str())
        .collect();
    assert_eq!(
        failed,
        BTreeSet::from([
            "errors/eof-without-input",
            "errors/line-too-long",
            "errors/other-uid-rmid-eperm",
            "errors/reader-smaller-segment-einval",
            "errors/smaller-segment-einval",
            "keys/missing-key-file",
            "orders/partial-input-line",
            "orders/syscall-input-in-pieces",
            "orders/syscall-over-an-older-line",
            "orders/syscall-over-an-older-line-in-pieces",
            "orders/syscall-rmid-before-attach",
        ])
    );
    assert_eq!(code, Some(1));
}

/// A deviation pins the failures it expects: the same program with one more
/// fault in the listed scenario fails it differently, and that is a FAIL
/// naming the new failure, not an XFAIL hiding it.
#[rstest::rstest]
#[case::wipes_the_segment_at_eof(
    ("writer", "gets(str);", "if (!gets(str)) str[0] = 0;"),
    "errors/eof-without-input",
    "step 3 (segment table"
)]
#[case::leaves_the_failed_ftok_key_behind(
    ("reader", "shmctl(shmid, IPC_RMID, NULL);", ""),
    "keys/missing-key-file",
    "step 3 (segment table"
)]
#[case::eperm_reader_that_also_garbles_its_line(
    ("reader", "printf(\"Data read from memory: %s\\n\", str);", "printf(\"Data read: %s\\n\", str);"),
    "errors/other-uid-rmid-eperm",
    "step 3: reader@3: stdout"
)]
fn a_listed_defect_that_fails_differently_is_a_fail(
    #[case] fault: (&str, &str, &str),
    #[case] id: &str,
    #[case] new_failure: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let impl_file = build_variant(dir.path(), Some(fault));
    let (verdicts, code) = run_scenarios(&impl_file, &[scenarios().join(format!("{id}.toml"))]);
    assert_eq!(verdicts.len(), 1);
    let v = &verdicts[0];
    assert_eq!(v.status, "fail", "{}: {}", v.id, v.message);
    assert!(
        v.message
            .starts_with(&format!("a known-failing scenario failed differently: {new_failure}")),
        "{}",
        v.message
    );
    assert_eq!(code, Some(1));
    // The unchanged programs still fail it only as listed.
    let plain = tempfile::tempdir().unwrap();
    let (verdicts, _) = run_scenarios(&build_original(plain.path()), &[scenarios().join(format!("{id}.toml"))]);
    assert_eq!(verdicts[0].status, "xfail", "{}", verdicts[0].message);
}
