//! `--isolation shared`: scenarios run in an IPC namespace that other
//! programs use too. What is the scenario's own is decided by provenance,
//! never by key: two shmconf runs in one namespace do not judge or remove
//! each other's segments, and another program's segment under a key a
//! scenario uses is neither judged nor removed. Each test gives the runs a
//! private IPC namespace standing in for the shared one (so no test here
//! meets another test's segments in the host's).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{leftovers, scenarios};

/// The scenarios that name raw keys (0x5eed, 0xffffffff, IPC_PRIVATE),
/// which two runs in one namespace use alike.
const RAW_KEY_SCENARIOS: [&str; 4] = [
    "errors/creator-has-no-exemption",
    "keys/failed-ftok-key-is-ordinary",
    "keys/missing-key-file",
    "keys/private-key-always-new",
];

/// `count` scenario files under `dir`, copies of the raw-key scenarios in
/// turn, each with an id of its own.
fn raw_key_copies(dir: &Path, count: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..count {
        let source = RAW_KEY_SCENARIOS[i % RAW_KEY_SCENARIOS.len()];
        let text = std::fs::read_to_string(scenarios().join(format!("{source}.toml"))).unwrap();
        let name = format!("{:02}-{}.toml", i, source.replace('/', "-"));
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// `shmconf run --isolation shared ARGS`, with its own TMPDIR.
fn shared_run(tmp: &Path, args: &[&std::ffi::OsStr]) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("shmconf"));
    shmconf::sysv::process::end_with_parent(&mut cmd);
    cmd.args(["run", "--isolation", "shared"]).args(args).env("TMPDIR", tmp);
    cmd
}

/// The verdict lines of a report: (verdict, scenario id).
fn verdicts(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let verdict = words.next()?;
            let id = words.next()?;
            ["PASS", "FAIL", "BROKEN", "TIMEOUT", "SKIP", "XPASS", "XFAIL"]
                .contains(&verdict)
                .then(|| (verdict.to_string(), id.to_string()))
        })
        .collect()
}

#[test]
fn two_concurrent_shared_runs_of_the_raw_key_scenarios_give_every_verdict_right() {
    let root = tempfile::tempdir().unwrap();
    let (tmp_a, tmp_b) = (root.path().join("tmp-a"), root.path().join("tmp-b"));
    std::fs::create_dir_all(&tmp_a).unwrap();
    std::fs::create_dir_all(&tmp_b).unwrap();
    let (dir_a, dir_b) = (root.path().join("a"), root.path().join("b"));
    raw_key_copies(&dir_a, 50);
    raw_key_copies(&dir_b, 50);
    shmconf::ipcns::in_private_ipc_ns(|| {
        let start = |tmp: &Path, dir: &Path| {
            shared_run(tmp, &[dir.as_os_str()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (start(&tmp_a, &dir_a), start(&tmp_b, &dir_b));
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let mut all = Vec::new();
        for out in [&a, &b] {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let found = verdicts(&text);
            assert_eq!(found.len(), 50, "50 verdicts per run:\n{text}");
            all.extend(found.into_iter().map(|v| (v, text.clone())));
        }
        let wrong: Vec<&(String, String)> = all.iter().map(|(v, _)| v).filter(|(v, _)| v != "PASS").collect();
        assert!(
            wrong.is_empty(),
            "{} of {} verdicts wrong: {wrong:?}\n--- run a ---\n{}\n--- run b ---\n{}",
            wrong.len(),
            all.len(),
            String::from_utf8_lossy(&a.stdout),
            String::from_utf8_lossy(&b.stdout)
        );
        assert!(a.status.success() && b.status.success());
        let table = shmconf::SegTable::read().unwrap();
        assert!(table.rows.is_empty(), "segments left: {:?}", table.rows);
    })
    .expect("needs a private IPC namespace");
    assert!(leftovers(&tmp_a).is_empty() && leftovers(&tmp_b).is_empty());
}

/// Make a segment of "another program" (this test) under `key`, holding `text`.
fn foreign_segment(key: i32, text: &str) -> i32 {
    use shmconf::sysv::{Create, Key, ReadWrite, Segment};
    let seg = Segment::get(Key::from_raw(key), 1024, Create::Exclusive, 0o666).unwrap();
    seg.attach::<ReadWrite>()
        .unwrap()
        .write_at(0, format!("{text}\0").as_bytes())
        .unwrap();
    seg.id()
}

/// The segment `id` is still there, under `key`, holding `text`.
fn assert_untouched(id: i32, key: i32, text: &str) {
    use shmconf::sysv::{Key, ReadOnly, Segment};
    let table = shmconf::SegTable::read().unwrap();
    let row = table
        .find_id(id)
        .unwrap_or_else(|| panic!("the foreign segment {id} was removed"));
    assert_eq!(row.key, Key::from_raw(key));
    let content = Segment::from_id(id)
        .attach::<ReadOnly>()
        .unwrap()
        .read_c_string_capped(64);
    assert_eq!(content, text.as_bytes(), "the foreign segment's content changed");
}

#[test]
fn a_foreign_segment_made_before_the_run_under_a_key_a_scenario_uses_is_neither_judged_nor_removed() {
    let tmp = tempfile::tempdir().unwrap();
    shmconf::ipcns::in_private_ipc_ns(|| {
        let theirs = foreign_segment(-1, "theirs");
        let mut files: Vec<std::ffi::OsString> = RAW_KEY_SCENARIOS
            .iter()
            .map(|s| scenarios().join(format!("{s}.toml")).into_os_string())
            .collect();
        files.sort();
        let args: Vec<&std::ffi::OsStr> = files.iter().map(|f| f.as_os_str()).collect();
        let out = shared_run(tmp.path(), &args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let found = verdicts(&text);
        // The two scenarios under 0xffffffff are not judged (a SKIP naming
        // the other program's segment); the others run as usual.
        for (verdict, id) in &found {
            let expected = if id.starts_with("keys/failed-ftok") || id.starts_with("keys/missing-key-file") {
                "SKIP"
            } else {
                "PASS"
            };
            assert_eq!(verdict, expected, "{id}:\n{text}");
        }
        assert_eq!(found.len(), 4, "{text}");
        assert!(
            text.contains(&format!("another program's segment under key 0xffffffff (id {theirs})")),
            "{text}"
        );
        assert_untouched(theirs, -1, "theirs");
        let table = shmconf::SegTable::read().unwrap();
        assert_eq!(table.rows.len(), 1, "the run left segments: {:?}", table.rows);
        shmconf::sysv::Segment::from_id(theirs).remove().unwrap();
    })
    .expect("needs a private IPC namespace");
}

/// Is a process whose command line contains `needle` running?
fn running(needle: &str) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle)))
}

#[test]
fn a_foreign_segment_made_during_the_run_is_neither_judged_nor_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Step 1 holds the scenario until the other program has made its
    // segment (a file of this test says so); then the scenario creates its
    // own segment under one key and looks for one under the other's key.
    let ready = dir.path().join("theirs-made");
    let probe = assert_cmd::cargo::cargo_bin("shmconf");
    let scenario = |name: &str, steps: &str| {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "description = \"x\"\nfiles = []\n[[step]]\nexec = [\"sh\", \"-c\", \"while [ ! -e {} ]; do sleep 0.01; done\"]\n{steps}",
                ready.display()
            ),
        )
        .unwrap();
        file
    };
    let p = probe.display();
    // Its own segment beside the other's: judged alone (count 1), removed.
    let beside = scenario(
        "beside",
        &format!("[[step]]\nexec = [\"{p}\", \"probe\", \"get\", \"--create\", \"--key\", \"0x600d\"]\n[[step]]\nsegments = [{{ key = \"0x600d\", size = 1024 }}]\ncount = 1\n"),
    );
    // Under the other's key: its programs met the other's segment, not one of
    // their own, so the check is not judged (a SKIP naming it).
    let under = scenario(
        "under",
        &format!("[[step]]\nexec = [\"{p}\", \"probe\", \"get\", \"--create\", \"--key\", \"0x7e57\"]\n[[step]]\nsegments = [{{ key = \"0x7e57\", size = 1024 }}]\n"),
    );
    shmconf::ipcns::in_private_ipc_ns(|| {
        for (file, verdict, needle) in [
            (&beside, "PASS", "\"foreign_ignored\": 1"),
            (&under, "SKIP", "another program's segment (id"),
        ] {
            let _ = std::fs::remove_file(&ready);
            let record = dir.path().join(format!("record-{verdict}"));
            let child = shared_run(tmp.path(), &[file.as_os_str(), "--record".as_ref(), record.as_os_str()])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // Once the scenario's first step runs (set-up done), the other
            // program makes its segment.
            let deadline = Instant::now() + Duration::from_secs(20);
            while !running(&ready.display().to_string()) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let theirs = foreign_segment(0x7e57, "theirs");
            std::fs::write(&ready, b"").unwrap();
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let found = verdicts(&text);
            assert_eq!(found.len(), 1, "{text}");
            assert_eq!(found[0].0, verdict, "{text}");
            // The report, and the event log (where a snapshot counts the rows it ignored).
            let mut seen = text.to_string();
            for f in std::fs::read_dir(&record).unwrap() {
                seen.push_str(&std::fs::read_to_string(f.unwrap().path()).unwrap());
            }
            assert!(seen.contains(needle), "{needle:?} not in:\n{seen}");
            assert_untouched(theirs, 0x7e57, "theirs");
            let table = shmconf::SegTable::read().unwrap();
            assert_eq!(table.rows.len(), 1, "the run left segments: {:?}", table.rows);
            shmconf::sysv::Segment::from_id(theirs).remove().unwrap();
        }
    })
    .expect("needs a private IPC namespace");
}
