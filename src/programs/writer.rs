//! The seed's writer: ftok("shmfile", 65) → shmget 1024 bytes, 0666|IPC_CREAT
//! → shmat → read one line from stdin into the segment → print → shmdt.
//!
//! Byte-for-byte the original's stdout where it is well defined; where it is
//! not (line longer than the segment, EOF, missing key file, ...) a one-line
//! error and a distinct exit code, with the segment's content untouched.

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;

use crate::cli::{
    call_failure, exit_with, print_c_string, require_stdout, Exit, Failure, SegmentArgs, EXIT_CODES_HELP,
};
use crate::sysv::{Create, Errno, Key, ReadWrite, Segment};
use clap::Parser;

const PROG: &str = "shm-writer";

/// Write one line of standard input into a System V shared-memory segment.
#[derive(Debug, Parser)]
#[command(name = PROG, version, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(flatten)]
    segment: SegmentArgs,
    /// Create the segment exclusively (IPC_CREAT|IPC_EXCL): fail if the key exists.
    #[arg(long)]
    exclusive: bool,
}

/// The program, as `shm-writer` (or `shmconf` called by that name) runs it.
pub fn main() -> ExitCode {
    exit_with(PROG, run(Cli::parse()))
}

/// What reading one line of input gave.
enum Line {
    /// The line without its newline (a `\r` stays, as in the original).
    Fits(Vec<u8>),
    /// No newline within `limit` bytes: the line cannot fit with its NUL.
    TooLong,
    Eof,
}

/// Read one line, never more than `capacity` bytes (the line plus its newline
/// must fit where the line plus a NUL will go).
fn read_line(input: &mut impl BufRead, capacity: usize) -> std::io::Result<Line> {
    let mut buf = Vec::new();
    input.take(capacity as u64).read_until(b'\n', &mut buf)?;
    if buf.is_empty() {
        return Ok(Line::Eof);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Line::Fits(buf));
    }
    // No newline: either the input ended (a last line without newline, which
    // the original accepts) or the capacity ran out.
    if buf.len() < capacity {
        Ok(Line::Fits(buf))
    } else {
        Ok(Line::TooLong)
    }
}

/// shmget that knows whether it created the segment: IPC_CREAT|IPC_EXCL
/// first, then open the existing one. A rejected write removes a segment it
/// created itself, so rejection leaves the kernel as it found it.
fn get_or_create(cli: &Cli, key: Key) -> Result<(Segment, bool), Failure> {
    if cli.exclusive {
        return Ok((cli.segment.get_segment(key, Create::Exclusive)?, true));
    }
    // Another process may remove the segment between our two calls; a few
    // rounds settle it (each round makes progress for someone).
    for _ in 0..16 {
        match Segment::get(key, cli.segment.size, Create::Exclusive, cli.segment.mode) {
            Ok(seg) => return Ok((seg, true)),
            Err(e) if e.errno == Errno::EEXIST => {
                match Segment::get(key, cli.segment.size, Create::No, cli.segment.mode) {
                    Ok(seg) => return Ok((seg, false)),
                    Err(e) if e.errno == Errno::ENOENT => continue,
                    Err(_) => return cli.segment.get_segment(key, Create::No).map(|s| (s, false)),
                }
            }
            Err(_) => return cli.segment.get_segment(key, Create::IfMissing).map(|s| (s, false)),
        }
    }
    Ok((cli.segment.get_segment(key, Create::IfMissing)?, false))
}

fn run(cli: Cli) -> Result<(), Failure> {
    let key = cli.segment.key()?;
    require_stdout()?;
    let (segment, created) = get_or_create(&cli, key)?;
    let attachment = match segment.attach::<ReadWrite>() {
        Ok(a) => a,
        Err(e) => {
            if created {
                let _ = segment.remove();
            }
            return Err(call_failure(Exit::Shmat, e));
        }
    };
    // Undo our own creation when the write is rejected (the segment was never
    // written, so nothing of anyone's is lost).
    let reject = |attachment: crate::sysv::Attachment<ReadWrite>, failure: Failure| {
        drop(attachment);
        if created {
            let _ = segment.remove();
        }
        failure
    };

    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(b"Write Data: ").and_then(|()| stdout.flush()) {
        return Err(reject(attachment, Failure::io("writing the prompt", e)));
    }

    // The whole line is read before the segment is touched, so a rejected
    // line cannot leave half of itself in the segment. `--size` bounds the
    // line (not a larger segment that happens to exist): what a line may be
    // does not depend on who created the segment first.
    let capacity = cli.segment.size.min(attachment.len());
    let line = match read_line(&mut std::io::stdin().lock(), capacity) {
        Ok(Line::Fits(line)) => line,
        Ok(Line::TooLong) => {
            let failure = Failure::new(
                Exit::InputTooLong,
                format!(
                    "input line is longer than {} bytes, the most a {capacity}-byte segment holds with its NUL terminator; segment left unchanged",
                    capacity.saturating_sub(1)
                ),
            );
            return Err(reject(attachment, failure));
        }
        Ok(Line::Eof) => {
            let failure = Failure::new(
                Exit::NoInput,
                "no input: stdin ended before a line was read; segment left unchanged",
            );
            return Err(reject(attachment, failure));
        }
        Err(e) => {
            return Err(reject(
                attachment,
                Failure::io("reading stdin (segment left unchanged)", e),
            ))
        }
    };
    // In bounds: read_line returned at most capacity - 1 bytes.
    let mut terminated = line;
    terminated.push(0);
    if let Err(e) = attachment.write_at(0, &terminated) {
        return Err(reject(attachment, Failure::new(Exit::Other, e.to_string())));
    }

    // Like the original, echo what the segment now holds up to its first NUL.
    print_c_string(&mut stdout, b"Data written in memory: ", &attachment)
        .map_err(|e| Failure::io("writing stdout", e))?;
    attachment
        .detach()
        .map_err(|e| Failure::new(Exit::Other, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(input: &[u8], capacity: usize) -> Line {
        read_line(&mut std::io::Cursor::new(input), capacity).unwrap()
    }

    #[test]
    fn line_bounds() {
        let fits = |input: &[u8], cap| match line(input, cap) {
            Line::Fits(l) => Some(l),
            _ => None,
        };
        assert_eq!(fits(b"hello\nrest", 1024).unwrap(), b"hello");
        assert_eq!(fits(b"no newline", 1024).unwrap(), b"no newline");
        assert_eq!(fits(b"dos\r\n", 1024).unwrap(), b"dos\r");
        assert_eq!(fits(b"\n", 1024).unwrap(), b"");
        assert_eq!(fits(&[b'x'; 1023], 1024).unwrap().len(), 1023);
        assert_eq!(fits(&[&[b'x'; 1023][..], b"\n"].concat(), 1024).unwrap().len(), 1023);
        assert!(matches!(line(&[b'x'; 1024], 1024), Line::TooLong));
        assert!(matches!(
            line(&[&[b'x'; 1024][..], b"\n"].concat(), 1024),
            Line::TooLong
        ));
        assert!(matches!(line(b"", 1024), Line::Eof));
    }
}
