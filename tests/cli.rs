//! shm-writer and shm-reader as a user runs them: golden transcripts of the
//! original programs, every documented error, and the kernel's segment table
//! after each step. Every test runs in its own IPC namespace.

mod common;

use assert_cmd::Command;
use common::{sandbox, Sandbox};
use predicates::prelude::*;
use serde_json::Value;
use shmconf::sysv::{Create, Key, ReadOnly, ReadWrite, Segment};

fn bin(name: &str, sb: &Sandbox) -> Command {
    let mut cmd = Command::cargo_bin(name).unwrap();
    // A hang fails the test instead of stalling the suite.
    cmd.current_dir(sb.path()).timeout(std::time::Duration::from_secs(60));
    cmd
}

fn writer(sb: &Sandbox, stdin: impl Into<Vec<u8>>) -> assert_cmd::assert::Assert {
    bin("shm-writer", sb).write_stdin(stdin.into()).assert()
}

fn reader(sb: &Sandbox) -> assert_cmd::assert::Assert {
    bin("shm-reader", sb).assert()
}

fn seed_key(sb: &Sandbox) -> Key {
    Key::ftok(&sb.file("shmfile"), 65).unwrap()
}

/// What the segment with the seed key holds, up to its NUL, without changing it.
fn content(key: Key) -> Vec<u8> {
    let seg = Segment::get(key, 0, Create::No, 0).unwrap();
    seg.attach::<ReadOnly>().unwrap().read_c_string_capped(usize::MAX)
}

/// Decode the transcripts' Python-style escapes and placeholders.
fn decode(s: &str) -> Vec<u8> {
    let s = s
        .replace("<1023 bytes of 'x'>", &"x".repeat(1023))
        .replace("<the 1023 bytes>", &"x".repeat(1023));
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            match b[i + 1] {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b'\\' => out.push(b'\\'),
                b'x' => {
                    out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
                    i += 2;
                }
                c => panic!("unknown escape \\{}", c as char),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn golden_seed_transcripts() {
    let golden: Value = serde_json::from_str(include_str!("golden/seed-transcripts.json")).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let name = case["case"].as_str().unwrap();
        sandbox(|sb| {
            let key = seed_key(sb);
            for (i, step) in case["steps"].as_array().unwrap().iter().enumerate() {
                let role = step["role"].as_str().unwrap();
                let stdin = step["stdin"].as_str().map(decode).unwrap_or_default();
                // docs/conformance.md (EOF deviation): at EOF with no input ours deviates (exit 5, segment kept).
                if role == "writer" && stdin.is_empty() {
                    let before = content(key);
                    writer(sb, stdin).code(5).stdout("Write Data: ");
                    assert_eq!(content(key), before, "{name}: EOF must not change the segment");
                    continue;
                }
                let out = match role {
                    "writer" => writer(sb, stdin),
                    _ => reader(sb),
                };
                let out = out.code(step["exit"].as_i64().unwrap() as i32);
                let stdout = &out.get_output().stdout;
                assert_eq!(
                    String::from_utf8_lossy(stdout),
                    String::from_utf8_lossy(&decode(step["stdout"].as_str().unwrap())),
                    "{name}, step {i} ({role}): stdout"
                );
                let table = sb.table();
                let expected = step["segments_after"].as_array().unwrap();
                assert_eq!(table.len(), expected.len(), "{name}, step {i}: segment count");
                for seg in expected {
                    assert_eq!(seg["key"], "ftok(shmfile,65)");
                    let row = table
                        .find_key(key)
                        .unwrap_or_else(|| panic!("{name}: no segment for {key}"));
                    assert_eq!(
                        format!("{:o}", row.mode),
                        seg["perms"].as_str().unwrap(),
                        "{name}: perms"
                    );
                    assert_eq!(row.size.to_string(), seg["size"].as_str().unwrap(), "{name}: size");
                    assert_eq!(
                        row.nattch.to_string(),
                        seg["nattch"].as_str().unwrap(),
                        "{name}: nattch"
                    );
                }
            }
        });
    }
}

#[test]
fn missing_key_file_is_refused_not_key_minus_one() {
    sandbox(|sb| {
        std::fs::remove_file(sb.file("shmfile")).unwrap();
        for role in ["shm-writer", "shm-reader"] {
            bin(role, sb)
                .write_stdin("hello\n")
                .assert()
                .code(3)
                .stdout("")
                .stderr(predicate::str::contains("key file 'shmfile' not found"))
                .stderr(predicate::str::contains("0xffffffff"))
                .stderr(predicate::function(|s: &str| s.lines().count() == 1));
        }
        assert!(sb.table().is_empty(), "nothing created under key 0xffffffff");
    })
}

#[test]
fn line_too_long_is_refused_and_segment_kept() {
    sandbox(|sb| {
        writer(sb, "prior\n").success();
        for len in [1024, 1025, 2000, 4096, 5000] {
            let mut line = vec![b'x'; len];
            line.push(b'\n');
            writer(sb, line)
                .code(4)
                .stdout("Write Data: ")
                .stderr(predicate::str::contains("longer than 1023 bytes"))
                .stderr(predicate::str::contains("segment left unchanged"));
            assert_eq!(content(seed_key(sb)), b"prior", "line of {len} bytes");
        }
        // Without a newline too: 1024 bytes at EOF do not fit either.
        writer(sb, vec![b'y'; 1024]).code(4);
        assert_eq!(content(seed_key(sb)), b"prior");
        reader(sb).success().stdout("Data read from memory: prior\n");
    })
}

#[test]
fn no_input_is_refused_and_segment_kept() {
    sandbox(|sb| {
        writer(sb, "prior\n").success();
        writer(sb, "")
            .code(5)
            .stdout("Write Data: ")
            .stderr(predicate::str::contains("no input"));
        assert_eq!(content(seed_key(sb)), b"prior");
    })
}

/// A rejected write changes nothing: with no segment before, none after
/// (the writer removes the segment it had just created for the write).
#[rstest::rstest]
#[case::eof(b"".to_vec(), 5)]
#[case::too_long(vec![b'x'; 1100], 4)]
#[case::too_long_with_newline([vec![b'x'; 1024], b"\n".to_vec()].concat(), 4)]
fn rejected_write_leaves_no_segment_it_created(#[case] input: Vec<u8>, #[case] code: i32) {
    sandbox(|sb| {
        writer(sb, input).code(code);
        assert!(sb.table().rows.is_empty(), "{:?}", sb.table().rows);
        // --exclusive too (the segment is certainly the writer's own).
        bin("shm-writer", sb)
            .arg("--exclusive")
            .write_stdin("")
            .assert()
            .code(5);
        assert!(sb.table().rows.is_empty());
    })
}

#[test]
fn key_zero_is_refused_as_ipc_private() {
    sandbox(|sb| {
        for prog in ["shm-writer", "shm-reader"] {
            bin(prog, sb)
                .args(["--key", "0"])
                .write_stdin("x\n")
                .assert()
                .code(2)
                .stderr(predicate::str::contains("IPC_PRIVATE"));
        }
        assert!(sb.table().rows.is_empty());
    })
}

/// The reader must not remove what it could not print.
#[test]
fn reader_with_stdout_closed_fails_and_keeps_the_segment() {
    sandbox(|sb| {
        writer(sb, "precious\n").success();
        let reader = assert_cmd::cargo::cargo_bin("shm-reader");
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec \"$0\" >&-")
            .arg(&reader)
            .current_dir(sb.path())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(13));
        assert_eq!(content(seed_key(sb)), b"precious");
    })
}

/// `--size` bounds the line, whatever larger segment already holds the key.
#[test]
fn size_option_bounds_the_line_even_in_a_larger_segment() {
    sandbox(|sb| {
        bin("shm-writer", sb)
            .args(["--size", "4096"])
            .write_stdin("big\n")
            .assert()
            .success();
        writer(sb, [vec![b'x'; 2000], b"\n".to_vec()].concat())
            .code(4)
            .stderr(predicate::str::contains("longer than 1023 bytes"));
        assert_eq!(content(seed_key(sb)), b"big");
        bin("shm-writer", sb)
            .args(["--size", "4096"])
            .write_stdin([vec![b'x'; 2000], b"\n".to_vec()].concat())
            .assert()
            .success();
    })
}

#[test]
fn smaller_existing_segment_is_a_size_mismatch() {
    sandbox(|sb| {
        bin("shm-writer", sb)
            .args(["--size", "100"])
            .write_stdin("small\n")
            .assert()
            .success();
        writer(sb, "big\n").code(6).stdout("").stderr(predicate::str::contains(
            "exists with 100 bytes, smaller than the 1024 asked for",
        ));
        assert_eq!(content(seed_key(sb)), b"small");
        assert_eq!(sb.table().find_key(seed_key(sb)).unwrap().size, 100);
        // Size 0 cannot create a segment (SHMMIN is 1).
        std::fs::write(sb.file("fresh"), b"").unwrap();
        bin("shm-reader", sb)
            .args(["--key-file", "fresh", "--size", "0"])
            .assert()
            .code(6)
            .stderr(predicate::str::contains("size 0 is out of range"));
    })
}

#[test]
fn exclusive_create_on_existing_key_is_eexist() {
    sandbox(|sb| {
        writer(sb, "first\n").success();
        bin("shm-writer", sb)
            .arg("--exclusive")
            .write_stdin("second\n")
            .assert()
            .code(8)
            .stderr(predicate::str::contains("already exists"));
        assert_eq!(content(seed_key(sb)), b"first");
        bin("shm-reader", sb).assert().success();
        bin("shm-writer", sb)
            .arg("--exclusive")
            .write_stdin("third\n")
            .assert()
            .success();
    })
}

#[test]
fn reader_never_reads_past_the_segment() {
    sandbox(|sb| {
        // A 16-byte segment with no NUL: all 16 bytes, then stop.
        let seg = Segment::get(seed_key(sb), 16, Create::IfMissing, 0o666).unwrap();
        seg.attach::<ReadWrite>().unwrap().write_at(0, &[b'a'; 16]).unwrap();
        bin("shm-reader", sb)
            .args(["--size", "8"])
            .assert()
            .success()
            .stdout(format!("Data read from memory: {}\n", "a".repeat(16)));
        assert!(sb.table().is_empty());
    })
}

#[test]
fn options_choose_key_size_mode_and_keep() {
    sandbox(|sb| {
        // proj_id 321 and 65 collide: only the low 8 bits count.
        bin("shm-writer", sb)
            .args(["--proj-id", "321"])
            .write_stdin("collide\n")
            .assert()
            .success();
        bin("shm-reader", sb)
            .arg("--keep")
            .assert()
            .success()
            .stdout("Data read from memory: collide\n");
        let row = sb.table().find_key(seed_key(sb)).cloned().unwrap();
        assert_eq!(row.nattch, 0);
        // An explicit key overrides ftok, and is what the kernel records.
        let hex = format!("{:#x}", seed_key(sb).as_u32());
        bin("shm-reader", sb)
            .args(["--key", &hex])
            .assert()
            .success()
            .stdout("Data read from memory: collide\n");
        assert!(sb.table().is_empty());
        bin("shm-writer", sb)
            .args(["--key", "0x00c0ffee", "--size", "4096", "--mode", "640"])
            .write_stdin("k\n")
            .assert()
            .success();
        let row = sb.table().find_key(Key::from_raw(0xc0ffee)).cloned().unwrap();
        assert_eq!((row.size, row.perms()), (4096, 0o640));
        // 4095 bytes fit a 4096-byte segment.
        bin("shm-writer", sb)
            .args(["--key", "0xc0ffee", "--size", "4096"])
            .write_stdin(vec![b'z'; 4095])
            .assert()
            .success();
    })
}

#[test]
fn help_documents_exit_codes_and_bad_options_are_usage_errors() {
    sandbox(|sb| {
        for role in ["shm-writer", "shm-reader"] {
            bin(role, sb)
                .arg("--help")
                .assert()
                .success()
                .stdout(predicate::str::contains("Exit codes:"))
                .stdout(predicate::str::contains("key file missing"));
            bin(role, sb).args(["--mode", "999"]).assert().code(2);
            bin(role, sb).args(["--key", "nothex"]).assert().code(2);
        }
        assert!(sb.table().is_empty());
    })
}

/// The reader streams a segment to stdout in bounded chunks: with its
/// address space capped just above the segment's own mapping, a reader that
/// copied the segment into memory (twice, with its output line) could not
/// allocate it, and a streaming one prints every byte.
#[test]
fn reader_streams_a_large_segment_in_bounded_memory() {
    sandbox(|sb| {
        const SIZE: usize = 128 << 20;
        let seg = Segment::get(seed_key(sb), SIZE, Create::IfMissing, 0o666).unwrap();
        {
            let at = seg.attach::<ReadWrite>().unwrap();
            let chunk = vec![b'a'; 1 << 20];
            for off in (0..SIZE).step_by(chunk.len()) {
                at.write_at(off, &chunk).unwrap();
            }
        }
        let reader = assert_cmd::cargo::cargo_bin("shm-reader");
        let limit_kib = (SIZE >> 10) + 64 * 1024;
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v {limit_kib} && exec \"$0\" --size {SIZE} --keep | wc -c"
            ))
            .arg(&reader)
            .current_dir(sb.path())
            .output()
            .unwrap();
        let printed: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
        assert_eq!(
            printed,
            "Data read from memory: ".len() + SIZE + 1,
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        seg.remove().unwrap();
    })
}
