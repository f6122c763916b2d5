//! `shm-reader`: the code is [`shmconf::programs::reader`], which an installed
//! `shmconf` also runs when started under this name.

#![deny(clippy::too_many_lines)] // the threshold (100) is in clippy.toml: a long function is split, not allowed

fn main() -> std::process::ExitCode {
    shmconf::programs::reader::main()
}
