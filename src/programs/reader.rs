//! The seed's reader: same key → shmget 1024 bytes, 0666|IPC_CREAT → shmat →
//! print up to the first NUL → shmdt → shmctl(IPC_RMID).
//!
//! Unlike the original, the scan for the NUL stops at the segment's real size.

use std::process::ExitCode;

use crate::cli::{
    call_failure, exit_with, print_c_string, require_stdout, Exit, Failure, SegmentArgs, EXIT_CODES_HELP,
};
use crate::sysv::{Create, Errno, ReadWrite};
use clap::Parser;

const PROG: &str = "shm-reader";

/// Print the text in a System V shared-memory segment, then remove the segment.
#[derive(Debug, Parser)]
#[command(name = PROG, version, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(flatten)]
    segment: SegmentArgs,
    /// Leave the segment in place (no IPC_RMID after reading).
    #[arg(long)]
    keep: bool,
}

/// The program, as `shm-reader` (or `shmconf` called by that name) runs it.
pub fn main() -> ExitCode {
    exit_with(PROG, run(Cli::parse()))
}

fn run(cli: Cli) -> Result<(), Failure> {
    let key = cli.segment.key()?;
    // Where the data cannot be printed, it must not be removed either.
    require_stdout()?;
    // IPC_CREAT as in the original: with no segment, the reader makes an empty one.
    let segment = cli.segment.get_segment(key, Create::IfMissing)?;
    let attachment = segment
        .attach::<ReadWrite>()
        .map_err(|e| call_failure(Exit::Shmat, e))?;

    // Streamed: a segment of any size prints in bounded memory. A failed
    // write (closed pipe, full disk) returns before IPC_RMID: the data stays.
    print_c_string(&mut std::io::stdout().lock(), b"Data read from memory: ", &attachment)
        .map_err(|e| Failure::io("writing stdout (segment kept)", e))?;

    attachment
        .detach()
        .map_err(|e| Failure::new(Exit::Other, e.to_string()))?;
    if !cli.keep {
        match segment.remove() {
            // Already destroyed by our own detach: with kernel.shm_rmid_forced = 1
            // a segment dies when its attach count drops to 0, so there is
            // nothing left to remove. The goal, no segment, holds.
            Err(e) if matches!(e.errno, Errno::EINVAL | Errno::EIDRM) && segment.stat().is_err() => {}
            other => other.map_err(|e| call_failure(Exit::Remove, e))?,
        }
    }
    Ok(())
}
