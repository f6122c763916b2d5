//! The model on its own, no kernel: the seed contract's cases, the SysV rules
//! it encodes, and properties over arbitrary orders.

use super::*;
use proptest::prelude::*;

const F: FileId = FileId { dev: 0x803, ino: 1234 };

fn writer(name: &str, line: &str, pause: bool) -> RunSpec {
    RunSpec {
        name: name.into(),
        role: Role::Writer,
        key_file: "shmfile".into(),
        proj_id: 65,
        size: 1024,
        stdin: line.as_bytes().to_vec(),
        pause,
        keep: false,
    }
}

fn reader(name: &str) -> RunSpec {
    RunSpec {
        role: Role::Reader,
        stdin: vec![],
        ..writer(name, "", false)
    }
}

fn model(runs: &[RunSpec]) -> Model {
    let mut m = Model::new(runs);
    m.apply(&Change::File("shmfile".into(), F)).unwrap();
    m
}

fn run(m: &mut Model, events: &[Change]) {
    for e in events {
        m.apply(e).unwrap();
    }
}

fn out(m: &Model, name: &str) -> (String, i32) {
    let o = m.end_of(name).unwrap();
    (String::from_utf8_lossy(&o.stdout).into_owned(), o.exit)
}

#[test]
fn writer_then_reader_is_the_seed_contract() {
    let mut m = model(&[writer("w", "hello\n", false), reader("r")]);
    m.apply(&Change::Run("w".into())).unwrap();
    assert_eq!(out(&m, "w"), ("Write Data: Data written in memory: hello\n".into(), 0));
    assert_eq!(m.segs.len(), 1);
    let s = &m.segs[0];
    assert_eq!(
        (s.key, s.size, s.mode, s.nattch, s.dest),
        (ftok_formula(0x803, 1234, 65).raw(), 1024, 0o666, 0, false)
    );
    assert_eq!(&s.data[..6], b"hello\0");
    m.apply(&Change::Run("r".into())).unwrap();
    assert_eq!(out(&m, "r"), ("Data read from memory: hello\n".into(), 0));
    assert!(m.segs.is_empty());
}

#[test]
fn reader_first_and_second_reader_see_a_fresh_empty_segment() {
    let mut m = model(&[writer("w", "once\n", false), reader("r1"), reader("r2"), reader("r0")]);
    run(
        &mut m,
        &[
            Change::Run("r0".into()),
            Change::Run("w".into()),
            Change::Run("r1".into()),
            Change::Run("r2".into()),
        ],
    );
    assert_eq!(out(&m, "r0").0, "Data read from memory: \n");
    assert_eq!(out(&m, "r1").0, "Data read from memory: once\n");
    assert_eq!(out(&m, "r2").0, "Data read from memory: \n");
    assert!(m.segs.is_empty());
}

#[test]
fn shorter_second_write_hides_the_tail() {
    let mut m = model(&[
        writer("a", "a much longer first\n", false),
        writer("b", "short\n", false),
        reader("r"),
    ]);
    run(&mut m, &[Change::Run("a".into()), Change::Run("b".into())]);
    assert_eq!(&m.segs[0].data[..8], b"short\0 l");
    m.apply(&Change::Run("r".into())).unwrap();
    assert_eq!(out(&m, "r").0, "Data read from memory: short\n");
}

#[test]
fn rmid_while_a_writer_is_attached_marks_dest_and_frees_the_key() {
    let mut m = model(&[writer("w", "late\n", true), reader("r"), reader("r2")]);
    run(&mut m, &[Change::Attach("w".into()), Change::Run("r".into())]);
    assert_eq!(out(&m, "r").0, "Data read from memory: \n");
    assert_eq!((m.segs[0].key, m.segs[0].dest, m.segs[0].nattch), (0, true, 1));
    // The key is free: a second reader makes (and removes) a fresh segment.
    m.apply(&Change::Run("r2".into())).unwrap();
    assert_eq!(m.segs.len(), 1);
    m.apply(&Change::Input("w".into())).unwrap();
    assert_eq!(out(&m, "w"), ("Write Data: Data written in memory: late\n".into(), 0));
    assert!(m.segs.is_empty(), "destroyed at its last detach");
}

#[test]
fn proj_ids_equal_mod_256_share_a_segment() {
    let mut w = writer("w", "collide\n", false);
    w.proj_id = 321;
    let mut m = model(&[w, reader("r")]);
    run(&mut m, &[Change::Run("w".into()), Change::Run("r".into())]);
    assert_eq!(out(&m, "r").0, "Data read from memory: collide\n");
}

#[test]
fn recreated_key_file_means_a_new_key_and_a_leak() {
    let mut m = model(&[writer("w", "orphan\n", false), reader("r")]);
    run(
        &mut m,
        &[
            Change::Run("w".into()),
            Change::File("shmfile".into(), FileId { dev: 0x803, ino: 99 }),
            Change::Run("r".into()),
        ],
    );
    assert_eq!(out(&m, "r").0, "Data read from memory: \n");
    assert_eq!(m.segs.len(), 1);
    assert_eq!(m.segs[0].text(), b"orphan");
}

#[test]
fn errors_of_our_contract() {
    let mut m = Model::new(&[writer("w", "x\n", false), reader("r")]);
    run(&mut m, &[Change::Run("w".into()), Change::Run("r".into())]);
    assert_eq!(out(&m, "w"), (String::new(), exit::KEY_FILE));
    assert_eq!(out(&m, "r"), (String::new(), exit::KEY_FILE));
    let mut small = writer("s", "x\n", false);
    small.size = 100;
    let mut m = model(&[
        small,
        writer("w", "y\n", false),
        writer("e", "", false),
        writer("l", &"z".repeat(1024), false),
    ]);
    run(&mut m, &[Change::Run("s".into()), Change::Run("w".into())]);
    assert_eq!(out(&m, "w").1, exit::SIZE);
    let mut m = model(&[writer("e", "", false), writer("l", &"z".repeat(1024), false)]);
    run(&mut m, &[Change::Run("e".into()), Change::Run("l".into())]);
    assert_eq!(out(&m, "e"), ("Write Data: ".into(), exit::NO_INPUT));
    assert_eq!(out(&m, "l"), ("Write Data: ".into(), exit::INPUT_TOO_LONG));
    assert!(
        m.segs.is_empty(),
        "a rejected write removes the segment it created: {:?}",
        m.segs
    );
    // With a segment already there, a rejected write leaves it untouched.
    let mut m = model(&[
        writer("w", "kept\n", false),
        writer("e", "", false),
        writer("l", &"z".repeat(1024), false),
    ]);
    run(
        &mut m,
        &[
            Change::Run("w".into()),
            Change::Run("e".into()),
            Change::Run("l".into()),
        ],
    );
    assert_eq!(out(&m, "e").1, exit::NO_INPUT);
    assert_eq!(out(&m, "l").1, exit::INPUT_TOO_LONG);
    assert_eq!(m.segs.len(), 1);
    assert_eq!(
        m.segs[0].text(),
        b"kept",
        "rejected writes leave an existing segment untouched"
    );
}

#[test]
fn shm_rmid_forced_destroys_at_last_detach() {
    let mut m = model(&[writer("w", "gone\n", false), reader("r")]);
    m.rmid_forced = true;
    m.apply(&Change::Run("w".into())).unwrap();
    assert!(m.segs.is_empty());
    m.apply(&Change::Run("r".into())).unwrap();
    assert_eq!(out(&m, "r"), ("Data read from memory: \n".into(), 0));
}

#[test]
fn misordered_events_are_model_errors() {
    let mut m = model(&[writer("w", "x\n", true)]);
    assert!(m.apply(&Change::Input("w".into())).is_err());
    assert!(m.apply(&Change::Run("nobody".into())).is_err());
}

/// A set of runs and one valid interleaving of their events.
fn runs_and_order() -> impl Strategy<Value = (Vec<RunSpec>, Vec<Change>)> {
    let run = (
        any::<bool>(),
        any::<bool>(),
        "[a-z]{0,8}",
        any::<bool>(),
        prop_oneof![Just(65), Just(321), Just(66)],
    );
    (prop::collection::vec(run, 1..6), any::<u64>()).prop_map(|(specs, seed)| {
        let runs: Vec<RunSpec> = specs
            .into_iter()
            .enumerate()
            .map(|(i, (is_writer, pause, text, keep, proj))| {
                let mut r = if is_writer {
                    writer(&format!("w{i}"), &format!("{text}\n"), pause)
                } else {
                    reader(&format!("r{i}"))
                };
                r.keep = keep && !is_writer;
                r.proj_id = proj;
                r
            })
            .collect();
        // Interleave: a deterministic shuffle that keeps each run's own order.
        let mut queues: Vec<Vec<Change>> = runs
            .iter()
            .map(|r| match (r.role, r.pause) {
                (Role::Writer, true) => vec![Change::Attach(r.name.clone()), Change::Input(r.name.clone())],
                _ => vec![Change::Run(r.name.clone())],
            })
            .collect();
        let mut order = Vec::new();
        let mut s = seed;
        while queues.iter().any(|q| !q.is_empty()) {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
            let pick = live[(s >> 33) as usize % live.len()];
            order.push(queues[pick].remove(0));
        }
        (runs, order)
    })
}

proptest! {
    #[test]
    fn any_valid_order_applies_and_ends_with_no_attachments((runs, order) in runs_and_order()) {
        let mut m = model(&runs);
        for e in &order {
            m.apply(e).unwrap();
            // nattch equals the paused writers still attached to each segment.
            for s in &m.segs {
                let attached = m.procs.values().filter(|p| matches!(p, ProcState::Attached { seg, .. } if *seg == s.id)).count();
                prop_assert_eq!(s.nattch as usize, attached);
                prop_assert!(!s.dest || s.nattch > 0, "a marked segment with no attachment must be gone");
                prop_assert!(!s.dest || s.key == 0, "a marked segment's key is IPC_PRIVATE");
            }
            // At most one live segment per key.
            let mut keys: Vec<i32> = m.segs.iter().filter(|s| !s.dest).map(|s| s.key).collect();
            let n = keys.len();
            keys.dedup();
            keys.sort();
            keys.dedup();
            prop_assert_eq!(keys.len(), n);
        }
        for r in &runs {
            prop_assert!(m.end_of(&r.name).is_some(), "{} never finished", r.name);
        }
        prop_assert!(m.segs.iter().all(|s| s.nattch == 0 && !s.dest));
    }

    #[test]
    fn the_model_is_deterministic((runs, order) in runs_and_order()) {
        let mut a = model(&runs);
        let mut b = model(&runs);
        for e in &order {
            a.apply(e).unwrap();
            b.apply(e).unwrap();
        }
        prop_assert_eq!(&a.segs, &b.segs);
        for r in &runs {
            prop_assert_eq!(a.end_of(&r.name), b.end_of(&r.name));
        }
    }

    #[test]
    fn a_removing_reader_leaves_no_live_segment_under_its_key((runs, order) in runs_and_order()) {
        let mut m = model(&runs);
        for e in &order {
            m.apply(e).unwrap();
            if let Change::Run(name) = e {
                let run = &m.runs[name];
                if run.role == Role::Reader && !run.keep {
                    let key = m.key_of(run).unwrap();
                    prop_assert!(m.segs.iter().all(|s| s.key != key || s.dest));
                }
            }
        }
    }
}

fn initial(key: crate::scenario::KeySpec, size: usize, content: &str) -> Change {
    Change::Seed(crate::scenario::InitialSegment {
        key,
        size,
        mode: 0o666,
        content: content.into(),
    })
}

fn shmfile_key() -> crate::scenario::KeySpec {
    crate::scenario::KeySpec::Ftok {
        file: crate::scenario::FileName::parse("shmfile").unwrap(),
        proj_id: 65,
    }
}

#[test]
fn an_initial_segment_is_what_runs_find_and_a_shorter_line_replaces_its_text_whole() {
    let mut m = model(&[writer("w", "new\n", false), reader("r")]);
    run(&mut m, &[initial(shmfile_key(), 1024, "an older, longer line")]);
    assert_eq!(m.segs[0].text(), b"an older, longer line");
    run(&mut m, &[Change::Run("w".into()), Change::Run("r".into())]);
    assert_eq!(out(&m, "w"), ("Write Data: Data written in memory: new\n".into(), 0));
    // The NUL after "new" ends the line; the older tail stays behind it.
    assert_eq!(out(&m, "r"), ("Data read from memory: new\n".into(), 0));
    assert!(m.segs.is_empty(), "the reader removed it");
}

#[test]
fn an_initial_segment_under_a_replaced_files_key_is_left_alone() {
    let mut m = model(&[writer("w", "new\n", false)]);
    run(
        &mut m,
        &[
            initial(shmfile_key(), 2048, "old"),
            Change::File("shmfile".into(), FileId { dev: 0x803, ino: 99 }),
            Change::Run("w".into()),
        ],
    );
    assert_eq!(m.segs.len(), 2);
    assert_eq!((m.segs[0].size, m.segs[0].text()), (2048, b"old".to_vec()));
    assert_eq!(m.segs[1].text(), b"new");
    assert_ne!(m.segs[0].key, m.segs[1].key);
}

#[test]
fn an_initial_segment_smaller_than_a_run_asks_is_its_error() {
    let mut m = model(&[reader("r")]);
    run(
        &mut m,
        &[
            initial(
                crate::scenario::KeySpec::Raw(ftok_formula(0x803, 1234, 65).raw()),
                16,
                "x",
            ),
            Change::Run("r".into()),
        ],
    );
    assert_eq!(out(&m, "r"), (String::new(), exit::SIZE));
    assert_eq!(m.segs.len(), 1, "left as it was");
}

#[test]
fn an_initial_segment_needs_its_key_file_and_a_free_key() {
    let mut m = Model::new(&[]);
    assert!(m.apply(&initial(shmfile_key(), 1024, "")).is_err(), "no key file yet");
    let mut m = model(&[]);
    m.apply(&initial(shmfile_key(), 1024, "")).unwrap();
    assert!(m.apply(&initial(shmfile_key(), 1024, "")).is_err(), "IPC_EXCL");
}
