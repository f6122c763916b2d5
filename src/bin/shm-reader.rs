//! `shm-reader`: the code is [`shmconf::programs::reader`], which an installed
//! `shmconf` also runs when started under this name.

fn main() -> std::process::ExitCode {
    shmconf::programs::reader::main()
}
