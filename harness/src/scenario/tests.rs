use super::*;
use rstest::rstest;

fn parse(text: &str) -> Result<Scenario, LoadError> {
    Scenario::parse(Path::new("t.toml"), text)
}

const OK: &str = r#"
description = "writer then reader"
tags = ["seed-contract"]

[[step]]
run = "writer"
stdin = "hello\n"
expect = { exit = 0, stdout = "Write Data: Data written in memory: hello\n" }

[[step]]
segments = [{ key = "ftok:shmfile:65", size = 1024, mode = "0666", nattch = 0 }]
"#;

#[test]
fn parses_a_scenario_into_typed_steps() {
    let s = parse(OK).unwrap();
    let steps = s.steps();
    assert_eq!(steps.len(), 2);
    let Action::Spawn(sp) = &steps[0].action else {
        panic!("{:?}", steps[0].action)
    };
    assert_eq!(sp.program, Program::Role(Role::Writer));
    assert_eq!(sp.stdin, b"hello\n");
    assert_eq!(
        sp.expect.stdout.exact.as_deref(),
        Some(&b"Write Data: Data written in memory: hello\n"[..])
    );
    let Action::Segments(check) = &steps[1].action else {
        panic!()
    };
    assert_eq!(check.expect[0].mode, Some(0o666));
    assert_eq!(s.files, vec![FileName::parse("shmfile").unwrap()]);
    assert_eq!(
        s.needs(),
        Needs {
            namespaces: 1,
            ..Needs::default()
        }
    );
}

const D: &str = "description = \"x\"\n";

/// Every way a file can be wrong: the error names file:line:col and the cause.
#[rstest]
#[case::unknown_key("bogus = 1\n[[step]]\nrun = \"writer\"\n", 2, 1, "unknown field `bogus`")]
#[case::unknown_step_key("[[step]]\nrun = \"writer\"\nstdn = \"x\"\n", 4, 1, "unknown field `stdn`")]
#[case::two_actions("[[step]]\nrun = \"writer\"\nfeed = \"w\"\n", 2, 1, "found run and feed")]
#[case::no_action("[[step]]\nstdin = \"x\"\n", 2, 1, "found none")]
#[case::bad_role("[[step]]\nrun = \"writter\"\n", 2, 1, "unknown role \"writter\"")]
#[case::wrong_type("[[step]]\nrun = 3\n", 3, 7, "invalid type")]
#[case::feed_unknown("[[step]]\nfeed = \"w\"\nstdin = \"x\"\n", 2, 1, "no background process named \"w\"")]
#[case::bad_key(
    "[[step]]\nsegments = [{ key = \"shmfile\" }]\n",
    2,
    1,
    "expected \"ftok:FILE:PROJ\""
)]
#[case::bad_ns("[[step]]\nrun = \"reader\"\nns = \"b\"\n", 2, 1, "not declared")]
#[case::no_steps("", 1, 1, "expected at least one [[step]]")]
#[case::two_untils(
    "[[step]]\nrun = \"writer\"\nbackground = true\nname = \"w\"\n[[step]]\nwait = \"w\"\nuntil_reading = true\nuntil_stdout = \"x\"\n",
    6,
    1,
    "give one of until_stdout, until_attached, until_reading"
)]
#[case::until_reading_with_expect(
    "[[step]]\nrun = \"writer\"\nbackground = true\nname = \"w\"\n[[step]]\nwait = \"w\"\nuntil_reading = true\nexpect = { exit = 0 }\n",
    6,
    1,
    "has no exit to check"
)]
#[case::until_reading_off_wait("[[step]]\nrun = \"writer\"\nuntil_reading = true\n", 2, 1, "only applies to wait")]
#[case::unknown_exit_word(
    "[[step]]\nrun = \"writer\"\nexpect = { exit = \"refused\" }\n",
    4,
    19,
    "did not match any variant"
)]
#[case::bad_signal(
    "[[step]]\nrun = \"reader\"\nexpect = { signal = \"SIGFOO\" }\n",
    2,
    1,
    "unknown signal"
)]
#[case::bad_hex(
    "[[step]]\nrun = \"reader\"\nexpect = { stdout = { hex = \"zz\" } }\n",
    2,
    1,
    "non-hex digit"
)]
#[case::odd_hex(
    "[[step]]\nsegments = [{ key = \"ftok:shmfile:65\", content = { hex = \"0\" } }]\n",
    2,
    1,
    "odd number"
)]
#[case::huge_repeat_stdin(
    "[[step]]\nrun = \"writer\"\nstdin = { repeat = \"x\", count = 18446744073709551615 }\n",
    2,
    1,
    "more than the limit"
)]
#[case::huge_repeat_expect(
    "[[step]]\nrun = \"writer\"\nexpect = { stdout = { repeat = \"xy\", count = 9223372036854775807 } }\n",
    2,
    1,
    "more than the limit"
)]
#[case::ten_gib_stdin(
    "[[step]]\nrun = \"writer\"\nstdin = { repeat = \"x\", count = 10737418240 }\n",
    2,
    1,
    "limit"
)]
#[case::absolute_file("files = [\"/etc/passwd\"]\n[[step]]\nrun = \"writer\"\n", 2, 9, "'/'")]
#[case::dotdot_remove("[[step]]\nremove_file = \"../../../x\"\n", 2, 1, "'/'")]
#[case::dotdot_create("[[step]]\ncreate_file = \"..\"\n", 2, 1, "not a file name")]
#[case::link_out("[[step]]\nlink_file = { from = \"shmfile\", to = \"/tmp/x\" }\n", 2, 1, "'/'")]
#[case::recreate_out("[[step]]\nrecreate_file = \"/etc/hostname\"\n", 2, 1, "'/'")]
#[case::collide_out("[[step]]\ncollide_files = [\"a\", \"../b\"]\n", 2, 1, "'/'")]
#[case::ftok_out("[[step]]\nsegments = [{ key = \"ftok:/etc/passwd:65\" }]\n", 2, 1, "'/'")]
#[case::sysctl_path(
    "[[step]]\nsysctl = { name = \"../../../outside/f\", value = \"1\" }\n",
    2,
    1,
    "not an IPC namespace sysctl"
)]
#[case::sysctl_other(
    "[[step]]\nsysctl = { name = \"kernel.core_pattern\", value = \"1\" }\n",
    2,
    1,
    "not an IPC namespace sysctl"
)]
#[case::sysctl_value(
    "[[step]]\nsysctl = { name = \"kernel.shm_rmid_forced\", value = \"1; rm\" }\n",
    2,
    1,
    "not one or more numbers"
)]
#[case::bad_regex(
    "[[step]]\nrun = \"reader\"\nexpect = { stdout_regex = \"(\" }\n",
    2,
    1,
    "stdout_regex"
)]
#[case::timeout_huge(
    "timeout_ms = 99999999999\n[[step]]\nrun = \"reader\"\n",
    1,
    1,
    "more than the limit"
)]
#[case::saved_id_unknown(
    "[[step]]\nrun = \"probe\"\nargs = [\"stat\", \"--id\", \"{SEG}\"]\n",
    2,
    1,
    "no earlier segments step"
)]
#[case::sample_huge(
    "[explore]\nruns = [{ name = \"w\", role = \"writer\" }]\norders = { sample = 1000000000, seed = 1 }\n",
    2,
    1,
    "sample must be"
)]
#[case::explore_key_file_out(
    "[explore]\nruns = [{ name = \"w\", role = \"writer\", key_file = \"../k\" }]\n",
    3,
    9,
    "'/'"
)]
#[case::explore_event_out(
    "[explore]\nruns = [{ name = \"w\", role = \"writer\" }]\nevents = [{ name = \"e\", remove_file = \"/etc/x\" }]\n",
    4,
    11,
    "'/'"
)]
#[case::mode_not_octal(
    "[[step]]\nsegments = [{ key = \"ftok:shmfile:65\", mode = \"999\" }]\n",
    2,
    1,
    "not octal"
)]
#[case::absent_with_fields(
    "[[step]]\nsegments = [{ key = \"ftok:shmfile:65\", absent = true, size = 1 }]\n",
    2,
    1,
    "absent = true"
)]
#[case::initial_private(
    "[explore]\nruns = [{ name = \"r\", role = \"reader\" }]\ninitial = [{ segment = \"private\" }]\n",
    4,
    12,
    "no run could find it"
)]
#[case::initial_file_missing(
    "files = []\n[explore]\nruns = [{ name = \"r\", role = \"reader\" }]\ninitial = [{ segment = \"ftok:shmfile:65\" }]\n",
    5,
    12,
    "does not exist when the segment is made"
)]
#[case::initial_file_removed_first(
    "[explore]\nruns = [{ name = \"r\", role = \"reader\" }]\ninitial = [{ remove_file = \"shmfile\" }, { segment = \"ftok:shmfile:65\" }]\n",
    4,
    41,
    "does not exist when the segment is made"
)]
#[case::initial_remove_absent(
    "[explore]\nruns = [{ name = \"r\", role = \"reader\" }]\ninitial = [{ remove_file = \"other\" }]\n",
    4,
    12,
    "no such file at this point"
)]
#[case::initial_content_too_long(
    "[explore]\nruns = [{ name = \"r\", role = \"reader\" }]\ninitial = [{ segment = \"0x10\", size = 4, content = \"four\" }]\n",
    4,
    12,
    "does not fit"
)]
#[case::initial_content_with_a_newline(
    "[explore]\nruns = [{ name = \"r\", role = \"reader\" }]\ninitial = [{ segment = \"0x10\", content = \"a\\nb\" }]\n",
    4,
    12,
    "holds a newline"
)]
#[case::initial_size_zero(
    "[explore]\nruns = [{ name = \"r\", role = \"reader\" }]\ninitial = [{ segment = \"0x10\", size = 0 }]\n",
    4,
    12,
    "size must be"
)]
#[case::initial_unreadable_mode_at_process_level(
    "[explore]\nruns = [{ name = \"r\", role = \"reader\" }]\ninitial = [{ segment = \"0x10\", mode = \"0400\" }]\n",
    4,
    12,
    "granularity \"syscall\" for other modes"
)]
#[case::initial_segment_and_file(
    "[explore]\nruns = [{ name = \"r\", role = \"reader\" }]\ninitial = [{ segment = \"0x10\", create_file = \"k\" }]\n",
    4,
    12,
    "each item is a segment"
)]
#[case::initial_file_with_size(
    "[explore]\nruns = [{ name = \"r\", role = \"reader\" }]\ninitial = [{ create_file = \"k\", size = 8 }]\n",
    4,
    12,
    "each item is a segment"
)]
#[case::initial_unknown_field(
    "[explore]\nruns = [{ name = \"r\", role = \"reader\" }]\ninitial = [{ segment = \"0x10\", contents = \"x\" }]\n",
    4,
    32,
    "unknown field `contents`"
)]
#[case::program_empty("[[step]]\nprogram = []\n", 2, 1, "expected 1 to 64 operations, found 0")]
#[case::program_too_long("[[step]]\nprogram = [\"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\", \"shmget(IPC_PRIVATE, 1024, 0600)\"]\n", 2, 1, "found 65")]
#[case::program_mistyped_op(
    "[[step]]\nprogram = [\"shmget(0x5f000001, 1024, 0600|IPC_CREAT)\", \"shmat(id#0, SHM_BOGUS)\"]\n",
    3,
    56,
    "program operation 2"
)]
#[case::program_mistyped_owner(
    "[[step]]\nprogram = [\"shmget(0x5f000001, 1024, 0600|IPC_CREAT)\", \"shmctl(id#0, IPC_SET, 0600, owner root)\"]\n",
    3,
    56,
    "IPC_SET's owner is"
)]
#[case::program_unknown_call("[[step]]\nprogram = [\"shmfoo(1)\"]\n", 3, 12, "program operation 1")]
#[case::program_after_run(
    "[[step]]\nrun = \"writer\"\n[[step]]\nprogram = [\"shmget(0x5f000001, 1024, 0600|IPC_CREAT)\"]\n",
    4,
    1,
    "comes before any run, exec or program step in namespace \"main\""
)]
#[case::program_twice(
    "[[step]]\nprogram = [\"shmget(0x5f000001, 1024, 0600|IPC_CREAT)\"]\n[[step]]\nprogram = [\"shmget(0x5f000001, 1024, 0600)\"]\n",
    4,
    1,
    "comes before any run, exec or program step"
)]
#[case::program_in_the_hosts_namespace(
    "[namespaces]\nh = { docker = \"host\" }\n[[step]]\nns = \"h\"\nprogram = [\"shmget(0x5f000001, 1024, 0600|IPC_CREAT)\"]\n",
    4,
    1,
    "is the harness's or the host's"
)]
#[case::program_in_the_harness_namespace_through_share(
    "[namespaces]\nl = { docker = \"local\" }\ns = { share = \"l\" }\n[[step]]\nns = \"s\"\nprogram = [\"shmget(0x5f000001, 1024, 0600|IPC_CREAT)\"]\n",
    5,
    1,
    "is the harness's or the host's"
)]
#[case::program_with_run_fields(
    "[[step]]\nprogram = [\"shmget(0x5f000001, 1024, 0600|IPC_CREAT)\"]\nstdin = \"x\"\n",
    2,
    1,
    "stdin"
)]
#[case::shm_lock_of_an_unsaved_id(
    "[[step]]\nshm_lock = { id = \"S\" }\n",
    2,
    1,
    "no earlier segments step has save_id = \"S\""
)]
#[case::shm_lock_unknown_field(
    "[[step]]\nshm_lock = { id = \"S\", lokc = true }\n",
    3,
    24,
    "unknown field `lokc`, expected one of `id`"
)]
#[case::shm_lock_with_run(
    "[[step]]\nrun = \"writer\"\nshm_lock = { id = \"S\" }\n",
    2,
    1,
    "found run and shm_lock"
)]
#[case::shm_lock_with_expect(
    "[[step]]\nshm_lock = { id = \"S\" }\nexpect = { exit = 1 }\n",
    2,
    1,
    "'expect' only applies to"
)]
#[case::shm_lock_errno_it_never_gives(
    "[[step]]\nsegments = [{ key = \"ftok:shmfile:65\", save_id = \"S\" }]\n[[step]]\nshm_lock = { id = \"S\", expect_errno = \"EAGAIN\" }\n",
    4,
    1,
    "expect_errno \"EAGAIN\" is none of what SHM_LOCK answers"
)]
fn load_errors_say_where_and_what(
    #[case] body: &str,
    #[case] line: usize,
    #[case] column: usize,
    #[case] needle: &str,
) {
    let text = format!("{D}{body}");
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains(needle), "{e}");
    assert_eq!((e.line, e.column), (line, column), "{e}");
    assert!(e.to_string().starts_with(&format!("t.toml:{line}:{column}: ")), "{e}");
}

#[test]
fn bytes_forms_decode_once_and_bounded() {
    let dec = |b: wire::Bytes| decode_bytes(&b, 16);
    assert_eq!(dec(wire::Bytes::Text("a\n".into())).unwrap(), b"a\n");
    assert_eq!(
        dec(wire::Bytes::Hex { hex: "00ff 0a".into() }).unwrap(),
        vec![0, 0xff, 0x0a]
    );
    assert!(dec(wire::Bytes::Hex { hex: "0".into() }).is_err());
    assert!(dec(wire::Bytes::Hex { hex: "zz".into() }).is_err());
    let r = wire::Bytes::Repeat {
        repeat: "x".into(),
        count: 3,
        suffix: "\n".into(),
    };
    assert_eq!(dec(r).unwrap(), b"xxx\n");
    let big = wire::Bytes::Repeat {
        repeat: "x".into(),
        count: 17,
        suffix: String::new(),
    };
    assert!(dec(big).is_err());
}

#[test]
fn key_spec_forms() {
    assert_eq!(
        parse_key_spec("ftok:a:b:65").unwrap(),
        KeySpec::Ftok {
            file: FileName::parse("a:b").unwrap(),
            proj_id: 65
        }
    );
    assert_eq!(parse_key_spec("0xffffffff").unwrap(), KeySpec::Raw(-1));
    assert_eq!(parse_key_spec("private").unwrap(), KeySpec::Private);
}

#[test]
fn shared_namespaces_resolve() {
    let s = parse(
        "description = \"x\"\n[namespaces]\na = {}\nb = { share = \"a\" }\n[[step]]\nrun = \"writer\"\nns = \"a\"\n[[step]]\nrun = \"reader\"\nns = \"b\"\n",
    )
    .unwrap();
    assert_eq!(s.resolve_ns("b"), "a");
    assert_eq!(s.steps()[1].ns, "a");
    assert_eq!(s.needs().namespaces, 2);
}

#[test]
fn saved_ids_are_split_out_of_arguments() {
    let s = parse(
        "description = \"x\"\n[[step]]\nsegments = [{ key = \"ftok:shmfile:65\", save_id = \"S\" }]\n[[step]]\nrun = \"probe\"\nargs = [\"rmid\", \"--id={S}\"]\n",
    )
    .unwrap();
    let Action::Spawn(sp) = &s.steps()[1].action else {
        panic!()
    };
    assert_eq!(
        sp.args[1],
        Arg(vec![ArgPart::Text("--id=".into()), ArgPart::SavedId("S".into())])
    );
    let saved = BTreeMap::from([("S".to_string(), 42)]);
    assert_eq!(sp.args[1].render(&saved).unwrap(), "--id=42");
}

#[test]
fn schema_mentions_every_action() {
    let schema = json_schema();
    for a in action_names() {
        assert!(schema.contains(&format!("\"{a}\"")), "{a}");
    }
}

#[test]
fn ipc_sysctls_map_to_their_proc_files() {
    assert_eq!(IpcSysctl::ShmRmidForced.proc_path(), "/proc/sys/kernel/shm_rmid_forced");
    for s in IpcSysctl::ALL {
        assert_eq!(IpcSysctl::parse(s.name()), Ok(s));
        assert!(s.proc_path().starts_with("/proc/sys/kernel/"), "{}", s.proc_path());
    }
}

#[test]
fn a_wait_until_reading_is_a_need_a_backend_can_refuse() {
    let s = parse(
        "description = \"x\"\n[[step]]\nrun = \"writer\"\nbackground = true\nname = \"w\"\nstdin = \"hel\"\nclose_stdin = false\n\
         [[step]]\nwait = \"w\"\nuntil_reading = true\n[[step]]\nfeed = \"w\"\nstdin = \"lo\\n\"\n[[step]]\nwait = \"w\"\n",
    )
    .unwrap();
    assert!(s.needs().reading_barrier);
    let Action::Wait { until, .. } = &s.steps()[1].action else {
        panic!("{:?}", s.steps()[1].action)
    };
    assert!(matches!(until, WaitFor::ReadingStdin));
    assert!(!parse(OK).unwrap().needs().reading_barrier);
}

/// A program step that switches uid keeps CAP_SETUID/CAP_SETGID: a need
/// a backend that cannot pass them on refuses (SKIP), so the scenario never
/// passes having checked a refused seteuid instead of its point.
#[rstest]
#[case::switches(&["shmget(0x5f000001, 4096, 0600|IPC_CREAT)", "seteuid/setegid(65534)"], true)]
#[case::switches_back(&["seteuid/setegid back to the start"], true)]
#[case::never_switches(&["shmget(0x5f000001, 4096, 0600|IPC_CREAT)", "shmctl(id#0, IPC_RMID)"], false)]
fn a_program_step_that_switches_uid_needs_the_capabilities_kept(#[case] ops: &[&str], #[case] switches: bool) {
    let list: Vec<String> = ops.iter().map(|o| format!("{o:?}")).collect();
    let s = parse(&format!(
        "description = \"x\"\n[[step]]\nprogram = [{}]\n",
        list.join(", ")
    ))
    .unwrap();
    assert_eq!(s.needs().set_ids, switches);
    assert!(s.needs().fresh_namespace, "the model starts from an empty table");
    let Action::Spawn(sp) = &s.steps()[0].action else {
        panic!("{:?}", s.steps()[0].action)
    };
    assert_eq!(sp.keep.set_ids, switches);
    assert!(sp.keep.ipc_owner);
    assert!(!parse(OK).unwrap().needs().set_ids);
    assert!(!parse(OK).unwrap().needs().fresh_namespace);
}

#[test]
fn a_tmpfs_dir_is_asked_for_by_name() {
    let s = parse(&format!("filesystem = \"tmpfs\"\n{}", OK.trim_start())).unwrap();
    assert_eq!(s.filesystem, DirFilesystem::Tmpfs);
    assert_eq!(parse(OK).unwrap().filesystem, DirFilesystem::RunDir);
    let e = parse(&format!("filesystem = \"ext4\"\n{}", OK.trim_start())).unwrap_err();
    assert_eq!((e.line, e.column), (1, 14), "{e}");
    assert!(e.message.contains("expected \"tmpfs\""), "{e}");
}

#[test]
fn an_initial_state_is_typed_in_order() {
    let text = format!(
        "{D}[explore]\ngranularity = \"syscall\"\nruns = [{{ name = \"r\", role = \"reader\" }}]\ninitial = [\n  \
         {{ segment = \"ftok:shmfile:65\", size = 2048, mode = \"0400\", content = \"old\" }},\n  \
         {{ recreate_file = \"shmfile\" }},\n  {{ segment = \"0x41\" }},\n]\n"
    );
    let s = parse(&text).unwrap();
    let Body::Explore(ex) = &s.body else { panic!() };
    let shmfile = FileName::parse("shmfile").unwrap();
    assert_eq!(
        ex.initial,
        vec![
            Initial::Segment(InitialSegment {
                key: KeySpec::Ftok {
                    file: shmfile.clone(),
                    proj_id: 65
                },
                size: 2048,
                mode: 0o400,
                content: "old".into()
            }),
            Initial::File(FileOp::Recreate(shmfile)),
            Initial::Segment(InitialSegment {
                key: KeySpec::Raw(0x41),
                size: 1024,
                mode: 0o666,
                content: String::new()
            }),
        ]
    );
}

/// A step kind of its own module lowers into our probe in the step's
/// namespace (`probe step KEY ...`, the saved id filled in at run time),
/// named by kind and step, and what the kernel must answer: the mode after
/// the call with SHM_LOCKED set (lock) or clear (unlock), or the errno.
#[rstest]
#[case::lock("{ id = \"S\" }", &["step", "shm_lock", "{S}"], None, "ok mode 2666\n", "ok mode 0666\n")]
#[case::lock_marked_for_removal("{ id = \"S\" }", &["step", "shm_lock", "{S}"], None, "ok mode 3666\n", "ok mode 1666\n")]
#[case::unlock("{ id = \"S\", unlock = true }", &["step", "shm_lock", "{S}", "--unlock"], None, "ok mode 0600\n", "ok mode 2600\n")]
#[case::refused(
    "{ id = \"S\", uid = 65534, expect_errno = \"EPERM\" }",
    &["step", "shm_lock", "{S}"],
    Some(65534),
    "errno EPERM: shmctl(id 3, SHM_LOCK) failed\n",
    "ok mode 2666\n"
)]
fn a_shm_lock_step_is_a_probe_judged_by_the_kernels_answer(
    #[case] table: &str,
    #[case] args: &[&str],
    #[case] uid: Option<u32>,
    #[case] passes: &str,
    #[case] fails: &str,
) {
    let text = format!(
        "{D}[[step]]\nrun = \"writer\"\nstdin = \"x\\n\"\n\
         [[step]]\nsegments = [{{ key = \"ftok:shmfile:65\", save_id = \"S\" }}]\n\
         [[step]]\nshm_lock = {table}\n"
    );
    let s = parse(&text).unwrap();
    let Action::Spawn(sp) = &s.steps()[2].action else {
        panic!("{:?}", s.steps()[2].action)
    };
    assert_eq!(
        (sp.name.as_str(), &sp.program, sp.uid),
        ("shm_lock@3", &Program::Role(Role::Probe), uid)
    );
    let shown: Vec<String> = sp
        .args
        .iter()
        .map(|a| {
            a.0.iter()
                .map(|p| match p {
                    ArgPart::Text(t) => t.clone(),
                    ArgPart::SavedId(n) => format!("{{{n}}}"),
                })
                .collect()
        })
        .collect();
    assert_eq!(shown, args);
    let regex = sp.expect.stdout.regex.as_ref().unwrap();
    assert!(regex.is_match(passes.as_bytes()), "{regex} against {passes:?}");
    assert!(!regex.is_match(fails.as_bytes()), "{regex} against {fails:?}");
    let code = if uid.is_some() {
        EndingExpect::Code(1)
    } else {
        EndingExpect::Success
    };
    assert_eq!(sp.expect.ending, code);
}
