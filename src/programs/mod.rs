//! The seed-compatible programs themselves, as library code: the
//! `shm-writer` and `shm-reader` binaries call them, and so does `shmconf`
//! when it is started under one of their names. That makes an installed
//! `shmconf` self-contained (a multicall binary, as busybox is): it needs no
//! other file to run our own implementation.

use std::process::ExitCode;

pub mod reader;
pub mod writer;

/// The program a binary started under `name` (its argv\[0\]'s last path
/// component) is, if it is one of ours.
pub fn by_name(name: &str) -> Option<fn() -> ExitCode> {
    match name {
        "shm-writer" => Some(writer::main),
        "shm-reader" => Some(reader::main),
        _ => None,
    }
}

/// The program this process was started as, by its argv\[0\], if one of ours.
pub fn started_as() -> Option<fn() -> ExitCode> {
    let argv0 = std::env::args_os().next()?;
    let name = std::path::Path::new(&argv0).file_name()?.to_str()?.to_owned();
    by_name(&name)
}
