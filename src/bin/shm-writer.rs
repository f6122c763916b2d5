//! `shm-writer`: the code is [`shmconf::programs::writer`], which an installed
//! `shmconf` also runs when started under this name.

fn main() -> std::process::ExitCode {
    shmconf::programs::writer::main()
}
