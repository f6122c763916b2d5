//! One test at a time where tests share something (the host's IPC
//! namespace, a shared-isolation backend), across threads and test processes
//! alike: `cargo nextest run` runs each test in a process of its own, where a
//! static Mutex serialises nothing. An exclusive flock(2) on a file every
//! test process opens (each open is a lock holder of its own, so threads of
//! one process wait for each other too). `serial_test`'s `#[file_serial]`
//! does the same for test functions; these turns are also taken in helpers
//! and libtest-mimic closures. Included by path from both crates' tests.

/// Wait for the turn named `what`; it lasts as long as the value.
pub fn exclusive(what: &str) -> nix::fcntl::Flock<std::fs::File> {
    let path = std::env::temp_dir().join(format!("shmconf-tests-{what}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("flock {}: {e}", path.display()))
}
