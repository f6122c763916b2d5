//! What `shm-writer` and `shm-reader` share: options that choose the key and
//! segment, the documented exit codes, and turning SysV errors into one-line
//! messages.

use std::path::PathBuf;

use clap::Args;

use crate::sysv::{self, Create, Errno, Key, Segment};

/// Documented exit codes. Each failure cause has its own code so a harness
/// (or a shell script) can tell them apart without parsing stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    /// Any other failure (shmdt failed, an unexpected errno).
    Other = 1,
    /// Bad command line (clap's code).
    Usage = 2,
    /// The key file is missing or cannot be stat'ed.
    KeyFile = 3,
    /// The input line does not fit in the segment with its NUL terminator.
    InputTooLong = 4,
    /// Standard input ended before any line.
    NoInput = 5,
    /// shmget EINVAL: an existing segment is smaller than asked, or the size is out of range.
    Size = 6,
    /// EACCES/EPERM from shmget, shmat or shmctl.
    Permission = 7,
    /// EEXIST: `--exclusive` and a segment with the key exists.
    Exists = 8,
    /// ENOENT: no segment with the key and creation was not asked for.
    NotFound = 9,
    /// Any other shmget failure (ENOSPC, ENOMEM, ...).
    Shmget = 10,
    /// Any other shmat failure.
    Shmat = 11,
    /// shmctl(IPC_RMID) failed (reader).
    Remove = 12,
    /// Reading stdin or writing stdout failed.
    Io = 13,
}

pub const EXIT_CODES_HELP: &str = "\
Exit codes:
   0  success
   1  other failure (shmdt, unexpected errno)
   2  bad command line
   3  key file missing or not accessible (the original would silently use key 0xffffffff)
   4  input line too long for the segment (segment left unchanged)
   5  no input: stdin ended before a line (segment left unchanged)
   6  size mismatch: an existing segment is smaller than asked, or size out of range (EINVAL)
   7  permission denied (EACCES/EPERM)
   8  segment already exists (EEXIST, with --exclusive)
   9  no segment with that key (ENOENT)
  10  shmget failed otherwise (ENOSPC, ENOMEM, ...)
  11  shmat failed otherwise
  12  IPC_RMID failed
  13  I/O error on stdin or stdout";

/// A failure: its exit code and its one-line message.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }

    pub fn io(what: &str, e: std::io::Error) -> Failure {
        Failure::new(Exit::Io, format!("{what}: {e}"))
    }
}

/// Options that choose the key and the segment, with the seed's defaults.
#[derive(Debug, Clone, Args)]
pub struct SegmentArgs {
    /// File whose inode and device make the key (ftok), relative to the working directory.
    #[arg(long, value_name = "PATH", default_value = "shmfile")]
    pub key_file: PathBuf,
    /// ftok's project id; only its low 8 bits count (65 and 321 give the same key).
    #[arg(long, value_name = "N", default_value_t = 65, allow_negative_numbers = true)]
    pub proj_id: i32,
    /// Explicit key in hex (e.g. 0x41020001); overrides --key-file/--proj-id.
    #[arg(long, value_name = "HEX", value_parser = parse_hex_key)]
    pub key: Option<Key>,
    /// Segment size in bytes.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub size: usize,
    /// Permission bits of a created segment, in octal.
    #[arg(long, value_name = "OCTAL", default_value = "666", value_parser = parse_octal_mode)]
    pub mode: u32,
}

pub fn parse_hex_key(s: &str) -> Result<Key, String> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    u32::from_str_radix(digits, 16)
        .map(|v| Key::from_raw(v as i32))
        .map_err(|e| format!("expected a 32-bit hex key like 0x41020001: {e}"))
}

pub fn parse_octal_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(v) if v <= 0o777 => Ok(v),
        Ok(_) => Err("expected permission bits 000..777".into()),
        Err(e) => Err(format!("expected an octal mode like 666: {e}")),
    }
}

impl SegmentArgs {
    /// The key: explicit, or ftok of the key file. A missing key file is an
    /// error here, where the original carried on with key 0xffffffff.
    pub fn key(&self) -> Result<Key, Failure> {
        if let Some(key) = self.key {
            if key == Key::PRIVATE {
                return Err(Failure::new(
                    Exit::Usage,
                    "--key 0 is IPC_PRIVATE: it always makes a new segment that no other program can find by key; give another key",
                ));
            }
            return Ok(key);
        }
        Key::ftok(&self.key_file, self.proj_id).map_err(|e| {
            Failure::new(
                Exit::KeyFile,
                format!(
                    "key file '{}' {} (ftok: {}); the original would silently use key {}",
                    e.path.display(),
                    if e.errno == Errno::ENOENT {
                        "not found"
                    } else {
                        "not accessible"
                    },
                    e.errno.desc(),
                    Key::FTOK_FAILURE
                ),
            )
        })
    }

    /// shmget with these options, errors turned into exit codes and messages
    /// that name the cause (for EINVAL, the existing segment's real size).
    pub fn get_segment(&self, key: Key, create: Create) -> Result<Segment, Failure> {
        Segment::get(key, self.size, create, self.mode).map_err(|e| self.shmget_failure(key, e))
    }

    fn shmget_failure(&self, key: Key, e: sysv::Error) -> Failure {
        match e.errno {
            Errno::EINVAL => {
                // Find out whether a smaller segment holds the key, to say so.
                let existing = Segment::get(key, 0, Create::No, 0).and_then(|s| s.stat());
                match existing {
                    Ok(st) if st.size < self.size => Failure::new(
                        Exit::Size,
                        format!(
                            "segment with key {key} exists with {} bytes, smaller than the {} asked for (shmget: EINVAL)",
                            st.size, self.size
                        ),
                    ),
                    _ => Failure::new(Exit::Size, format!("size {} is out of range: {e}", self.size)),
                }
            }
            Errno::EACCES | Errno::EPERM => Failure::new(
                Exit::Permission,
                format!(
                    "permission denied on the segment with key {key} (mode {:03o} asked): {e}",
                    self.mode
                ),
            ),
            Errno::EEXIST => Failure::new(Exit::Exists, format!("a segment with key {key} already exists: {e}")),
            Errno::ENOENT => Failure::new(Exit::NotFound, format!("no segment with key {key}: {e}")),
            _ => Failure::new(Exit::Shmget, e.to_string()),
        }
    }
}

/// Fail before touching any segment when stdout was not open: then the
/// data cannot be printed, and a reader must not remove what it could not
/// print. Rust's runtime reopens a closed stdout on `/dev/null` before `main`
/// (read-write, `O_RDWR`), which is how that case shows; a shell's
/// `> /dev/null` opens it write-only and is respected as the user's choice.
pub fn require_stdout() -> Result<(), Failure> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let stdout = std::io::stdout();
    let flags = fcntl(stdout.as_fd(), FcntlArg::F_GETFL).map_err(|e| {
        Failure::new(
            Exit::Io,
            format!("stdout is not open ({e}); nothing was read or changed"),
        )
    })?;
    let read_write = OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE == OFlag::O_RDWR;
    let is_dev_null = || -> bool {
        let Ok(fd) = stdout.as_fd().try_clone_to_owned() else {
            return false;
        };
        let (Ok(ours), Ok(null)) = (std::fs::File::from(fd).metadata(), std::fs::metadata("/dev/null")) else {
            return false;
        };
        ours.rdev() == null.rdev() && ours.dev() == null.dev() && ours.ino() == null.ino()
    };
    if read_write && is_dev_null() {
        return Err(Failure::new(
            Exit::Io,
            "stdout is closed (the runtime put /dev/null there); nothing was read or changed",
        ));
    }
    Ok(())
}

/// Write `prefix`, the segment's text up to its first NUL (streamed in
/// bounded chunks, so a segment of any size prints in constant memory) and a
/// newline to `out`, then flush.
pub fn print_c_string<M: sysv::Mode>(
    out: &mut impl std::io::Write,
    prefix: &[u8],
    attachment: &sysv::Attachment<M>,
) -> std::io::Result<()> {
    out.write_all(prefix)?;
    attachment.for_each_c_string_chunk(|chunk| out.write_all(chunk))?;
    out.write_all(b"\n")?;
    out.flush()
}

/// shmat/shmctl errors: permission problems get their own code.
pub fn call_failure(default: Exit, e: sysv::Error) -> Failure {
    match e.errno {
        Errno::EACCES | Errno::EPERM => Failure::new(Exit::Permission, format!("permission denied: {e}")),
        _ => Failure::new(default, e.to_string()),
    }
}

/// Print `prog: message` on stderr and exit with the failure's code.
pub fn exit_with(prog: &str, result: Result<(), Failure>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{prog}: {}", f.message);
            std::process::ExitCode::from(f.exit as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("0x41020001", 0x4102_0001)]
    #[case("41020001", 0x4102_0001)]
    #[case("0XFFFFFFFF", -1)]
    #[case("0", 0)]
    fn hex_keys(#[case] text: &str, #[case] raw: i32) {
        assert_eq!(parse_hex_key(text).unwrap().raw(), raw);
    }

    #[rstest]
    #[case("0x1_0000_0000")]
    #[case("zz")]
    #[case("")]
    fn bad_hex_keys(#[case] text: &str) {
        assert!(parse_hex_key(text).is_err());
    }

    #[rstest]
    #[case("666", 0o666)]
    #[case("0600", 0o600)]
    #[case("0o644", 0o644)]
    fn octal_modes(#[case] text: &str, #[case] mode: u32) {
        assert_eq!(parse_octal_mode(text).unwrap(), mode);
    }

    #[rstest]
    #[case("1777")]
    #[case("8")]
    #[case("rw")]
    fn bad_modes(#[case] text: &str) {
        assert!(parse_octal_mode(text).is_err());
    }

    #[test]
    fn exit_codes_are_distinct_and_documented() {
        let all = [
            Exit::Ok,
            Exit::Other,
            Exit::Usage,
            Exit::KeyFile,
            Exit::InputTooLong,
            Exit::NoInput,
            Exit::Size,
            Exit::Permission,
            Exit::Exists,
            Exit::NotFound,
            Exit::Shmget,
            Exit::Shmat,
            Exit::Remove,
            Exit::Io,
        ];
        let mut codes: Vec<u8> = all.iter().map(|e| *e as u8).collect();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        for c in codes {
            assert!(
                EXIT_CODES_HELP.contains(&format!("{c:>4}  ")),
                "exit code {c} undocumented"
            );
        }
    }
}
