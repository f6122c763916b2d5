//! `shm-writer`: the code is [`shmconf::programs::writer`], which an installed
//! `shmconf` also runs when started under this name.

#![deny(clippy::too_many_lines)] // the threshold (100) is in clippy.toml: a long function is split, not allowed

fn main() -> std::process::ExitCode {
    shmconf::programs::writer::main()
}
