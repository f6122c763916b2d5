//! The safe SysV core against the real kernel, checked through IPC_STAT and
//! /proc/sysvipc/shm, each test in its own IPC namespace.

mod common;

use common::sandbox;
use shmconf::sysv::{Create, Errno, Key, ReadOnly, ReadWrite, Segment, SHM_DEST, SHM_LOCKED};

#[test]
fn create_stat_and_table_agree() {
    sandbox(|sb| {
        let key = Key::ftok(&sb.file("shmfile"), 65).unwrap();
        let seg = Segment::get(key, 1024, Create::IfMissing, 0o640).unwrap();
        let st = seg.stat().unwrap();
        assert_eq!((st.key, st.size, st.perms(), st.nattch), (key, 1024, 0o640, 0));
        assert_eq!(st.cpid as u32, std::process::id());
        assert_eq!((st.lpid, st.atime, st.dtime), (0, 0, 0));
        let row = sb.table().find_key(key).cloned().unwrap();
        assert_eq!((row.shmid, row.size, row.mode, row.nattch), (seg.id(), 1024, 0o640, 0));
        // Opening again finds the same segment; a smaller size is allowed.
        assert_eq!(Segment::get(key, 10, Create::No, 0).unwrap(), seg);
        seg.remove().unwrap();
        assert!(sb.table().is_empty());
    })
}

#[test]
fn shmget_errors_name_call_and_errno() {
    sandbox(|_| {
        let key = Key::from_raw(0x1234);
        let e = Segment::get(key, 1024, Create::No, 0o666).unwrap_err();
        assert_eq!(e.errno, Errno::ENOENT);
        assert!(e.to_string().starts_with("shmget(key 0x00001234, size 1024"), "{e}");
        let seg = Segment::get(key, 100, Create::IfMissing, 0o666).unwrap();
        assert_eq!(
            Segment::get(key, 200, Create::IfMissing, 0o666).unwrap_err().errno,
            Errno::EINVAL
        );
        assert_eq!(
            Segment::get(key, 100, Create::Exclusive, 0o666).unwrap_err().errno,
            Errno::EEXIST
        );
        assert_eq!(
            Segment::get(Key::PRIVATE, 0, Create::IfMissing, 0o666)
                .unwrap_err()
                .errno,
            Errno::EINVAL
        );
        seg.remove().unwrap();
        let e = seg.stat().unwrap_err();
        assert_eq!(e.errno, Errno::EINVAL);
        assert!(e.to_string().contains("IPC_STAT"), "{e}");
    })
}

#[test]
fn attachment_is_bounded_by_segment_size_not_page() {
    sandbox(|_| {
        let seg = Segment::get(Key::PRIVATE, 100, Create::IfMissing, 0o600).unwrap();
        let at = seg.attach::<ReadWrite>().unwrap();
        assert_eq!(at.len(), 100);
        assert_eq!(seg.stat().unwrap().nattch, 1);
        at.write_at(0, &[b'a'; 100]).unwrap();
        assert!(at.write_at(1, &[b'a'; 100]).is_err());
        let mut buf = [0u8; 2];
        assert!(at.read_at(99, &mut buf).is_err());
        // No NUL anywhere: the C-string read stops at the segment's end.
        assert_eq!(at.read_c_string_capped(usize::MAX), vec![b'a'; 100]);
        at.detach().unwrap();
        assert_eq!(seg.stat().unwrap().nattch, 0);
        seg.remove().unwrap();
    })
}

#[test]
fn read_only_attachment_sees_writes_and_drop_detaches() {
    sandbox(|_| {
        let seg = Segment::get(Key::PRIVATE, 64, Create::IfMissing, 0o600).unwrap();
        {
            let ro = seg.attach::<ReadOnly>().unwrap();
            let rw = seg.attach::<ReadWrite>().unwrap();
            assert_eq!(seg.stat().unwrap().nattch, 2);
            // `ro.write_at` does not compile (see the compile_fail doctest in sysv).
            rw.write_at(0, b"shared\0").unwrap();
            assert_eq!(ro.read_c_string_capped(usize::MAX), b"shared");
        }
        assert_eq!(seg.stat().unwrap().nattch, 0);
        seg.remove().unwrap();
    })
}

#[test]
fn rmid_while_attached_marks_dest_and_resets_key() {
    sandbox(|sb| {
        let key = Key::from_raw(0x41);
        let seg = Segment::get(key, 1024, Create::IfMissing, 0o666).unwrap();
        let at = seg.attach::<ReadWrite>().unwrap();
        at.write_at(0, b"still here\0").unwrap();
        seg.remove().unwrap();
        let st = seg.stat().unwrap();
        assert!(st.is_marked_for_destruction());
        assert_eq!(st.mode & SHM_DEST, SHM_DEST);
        assert_eq!(st.key, Key::PRIVATE, "the kernel resets the key after IPC_RMID");
        assert_eq!(at.read_c_string_capped(usize::MAX), b"still here");
        // The key is free again: a new shmget makes a fresh, zero-filled segment.
        let fresh = Segment::get(key, 1024, Create::IfMissing, 0o666).unwrap();
        assert_ne!(fresh, seg);
        assert_eq!(
            fresh.attach::<ReadOnly>().unwrap().read_c_string_capped(usize::MAX),
            b""
        );
        assert_eq!(sb.table().len(), 2);
        drop(at);
        assert_eq!(seg.stat().unwrap_err().errno, Errno::EINVAL, "destroyed at last detach");
        fresh.remove().unwrap();
        assert!(sb.table().is_empty());
    })
}

#[test]
fn set_changes_mode() {
    sandbox(|_| {
        let seg = Segment::get(Key::PRIVATE, 16, Create::IfMissing, 0o600).unwrap();
        let st = seg.stat().unwrap();
        seg.set(st.uid, st.gid, 0o640).unwrap();
        assert_eq!(seg.stat().unwrap().perms(), 0o640);
        seg.remove().unwrap();
    })
}

/// SHM_LOCK sets SHM_LOCKED in the mode IPC_STAT and the table show (the
/// permission bits untouched), SHM_UNLOCK clears it, twice is no error; a
/// segment that is gone answers EINVAL, named with the call.
#[test]
fn lock_and_unlock_toggle_shm_locked() {
    sandbox(|sb| {
        let seg = Segment::get(Key::PRIVATE, 4096, Create::IfMissing, 0o640).unwrap();
        assert!(!seg.stat().unwrap().is_locked());
        seg.lock(true).unwrap();
        seg.lock(true).unwrap();
        let st = seg.stat().unwrap();
        assert!(st.is_locked() && st.perms() == 0o640, "mode {:o}", st.mode);
        let row = sb.table().rows.iter().find(|r| r.shmid == seg.id()).cloned().unwrap();
        assert_eq!(row.mode & SHM_LOCKED, SHM_LOCKED, "the table's mode {:o}", row.mode);
        seg.lock(false).unwrap();
        assert!(!seg.stat().unwrap().is_locked());
        seg.remove().unwrap();
        let gone = seg.lock(true).unwrap_err();
        assert_eq!(gone.errno, Errno::EINVAL);
        assert!(gone.to_string().contains("SHM_LOCK"), "{gone}");
    })
}

#[test]
fn semaphores_count_and_message_queues_carry_bytes() {
    use shmconf::sysv::{MsgQueue, Semaphores};
    sandbox(|_| {
        let s = Semaphores::create_private(2, 0o600).unwrap();
        s.op(1, 3).unwrap();
        s.op(1, -2).unwrap();
        s.op(1, -1).unwrap();
        s.remove().unwrap();
        assert_eq!(s.op(0, 1), Err(Errno::EINVAL), "removed");
        let q = MsgQueue::create_private(0o600).unwrap();
        let mut scratch = Vec::new();
        q.send(2, b"second type", &mut scratch).unwrap();
        q.send(1, b"first", &mut scratch).unwrap();
        let mut buf = [0u8; 32];
        let n = q.recv(1, &mut buf, &mut scratch).unwrap();
        assert_eq!(&buf[..n], b"first", "selected by type");
        let n = q.recv(2, &mut buf, &mut scratch).unwrap();
        assert_eq!(&buf[..n], b"second type");
        q.remove().unwrap();
    })
}

#[test]
fn atomics_and_file_io_stay_inside_the_segment() {
    sandbox(|sb| {
        let seg = Segment::get(Key::PRIVATE, 100, Create::IfMissing, 0o600).unwrap();
        let at = seg.attach::<ReadWrite>().unwrap();
        assert!(at.atomic_u32(96).is_some());
        assert!(at.atomic_u32(97).is_none(), "unaligned");
        assert!(at.atomic_u32(100).is_none(), "past the end");
        at.atomic_u32(0)
            .unwrap()
            .store(0x0102_0304, std::sync::atomic::Ordering::SeqCst);
        let mut b = [0u8; 4];
        at.read_at(0, &mut b).unwrap();
        assert_eq!(u32::from_ne_bytes(b), 0x0102_0304);
        let path = sb.file("data");
        std::fs::write(&path, b"from a file").unwrap();
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(at.read_from(10, 50, &f).unwrap(), 11);
        assert!(at.read_from(95, 10, &f).is_err(), "would pass the end");
        let out = std::fs::File::create(sb.file("out")).unwrap();
        assert_eq!(at.write_to(10, 11, &out).unwrap(), 11);
        assert_eq!(std::fs::read(sb.file("out")).unwrap(), b"from a file");
        seg.remove().unwrap();
    })
}

/// SHM_INFO and SHM_STAT_ANY enumerate exactly what /proc/sysvipc/shm lists
/// (the syscall oracle's ground, for kernels without procfs).
#[test]
fn shm_info_and_stat_index_enumerate_the_table() {
    sandbox(|sb| {
        let empty = shmconf::sysv::shm_info().unwrap();
        assert_eq!(empty.used_ids, 0);
        let a = Segment::get(Key::from_raw(0x51), 4096, Create::IfMissing, 0o640).unwrap();
        let b = Segment::get(Key::PRIVATE, 100, Create::IfMissing, 0o600).unwrap();
        let _held = b.attach::<ReadOnly>().unwrap();
        let info = shmconf::sysv::shm_info().unwrap();
        assert_eq!(info.used_ids, 2);
        let mut found = Vec::new();
        for index in 0..=info.max_index {
            if let Ok((seg, st)) = Segment::stat_index(index) {
                found.push((seg.id(), st.key.raw(), st.size, st.nattch, st.perms()));
            }
        }
        found.sort();
        let mut table: Vec<_> = sb
            .table()
            .rows
            .iter()
            .map(|r| (r.shmid, r.key.raw(), r.size as usize, r.nattch, r.perms()))
            .collect();
        table.sort();
        assert_eq!(found, table);
        assert!(found.contains(&(a.id(), 0x51, 4096, 0, 0o640)));
        assert!(found.contains(&(b.id(), 0, 100, 1, 0o600)));
        assert!(Segment::stat_index(info.max_index + 1).is_err());
    })
}

/// The turn the host-namespace fallback takes: one holder at a time, even
/// among threads of one process (each open of the lock file holds its own
/// flock; across processes the kernel does the same).
#[test]
fn a_turn_has_one_holder_at_a_time() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let inside = AtomicUsize::new(0);
    let most = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..5 {
                    let _turn = common::turn::exclusive("self-test");
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    inside.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(most.load(Ordering::SeqCst), 1);
}

/// capget(2) says what /proc says of the same thread, and a thread that
/// keeps only two capabilities has only those afterwards (a thread of its
/// own, so the test process keeps its own).
#[test]
fn capability_sets_are_read_by_capget_and_reduced() {
    use shmconf::sysv::process::{keep_only_capabilities, CapabilitySets};
    let field = |name: &str| {
        std::fs::read_to_string("/proc/thread-self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| u64::from_str_radix(v.trim(), 16).unwrap()))
            .unwrap()
    };
    std::thread::spawn(move || {
        let before = CapabilitySets::current().unwrap();
        assert_eq!(before.effective, field("CapEff:"));
        assert_eq!(before.permitted, field("CapPrm:"));
        const KEEP: u64 = (1 << 6) | (1 << 7); // CAP_SETGID, CAP_SETUID
        keep_only_capabilities(KEEP).unwrap();
        let after = CapabilitySets::current().unwrap();
        assert_eq!(after.permitted, before.permitted & KEEP);
        assert_eq!(after.effective, before.effective & KEEP);
        assert_eq!(after.effective, field("CapEff:"));
    })
    .join()
    .unwrap();
}
