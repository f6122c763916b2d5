//! Files a scenario may name, and the only operations on them.
//!
//! A scenario file is data from anyone: it must not reach a path outside its
//! own temp dir. So a name is checked once, at load, to be a single plain
//! file name ([`FileName`]), and at run time every operation goes through the
//! dir's open descriptor with calls that never follow a symbolic link
//! ([`ScenarioDir`]): the programs under test share the dir and could plant a
//! link there, but a link only ever names itself.

use std::ffi::OsStr;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;

/// Longest file name accepted (as most filesystems' NAME_MAX).
pub const MAX_NAME: usize = 255;

/// A name that is not a plain file name inside the scenario's dir.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    #[error("file name {name:?} is empty")]
    Empty { name: String },
    #[error("file name {name:?} has a '/': scenario files are plain names inside the scenario's own dir")]
    Slash { name: String },
    #[error("file name {name:?} is not a file name")]
    Dots { name: String },
    #[error("file name {name:?} has a NUL byte")]
    Nul { name: String },
    #[error("file name {name:?} is longer than {max} bytes", max = MAX_NAME)]
    TooLong { name: String },
}

/// A plain file name inside the scenario's dir: no `/`, not `.` or `..`,
/// no NUL, at most [`MAX_NAME`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileName(String);

impl FileName {
    pub fn parse(name: &str) -> Result<FileName, FileNameError> {
        let name = name.to_string();
        Err(if name.is_empty() {
            FileNameError::Empty { name }
        } else if name.contains('/') {
            FileNameError::Slash { name }
        } else if name == "." || name == ".." {
            FileNameError::Dots { name }
        } else if name.contains('\0') {
            FileNameError::Nul { name }
        } else if name.len() > MAX_NAME {
            FileNameError::TooLong { name }
        } else {
            return Ok(FileName(name));
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn os(&self) -> &OsStr {
        OsStr::from_bytes(self.0.as_bytes())
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Device and inode of a file: what ftok makes a key from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
}

/// A scenario's working dir, held open: file operations are relative to the
/// descriptor and never follow symbolic links.
#[derive(Debug)]
pub struct ScenarioDir {
    path: PathBuf,
    fd: OwnedFd,
}

fn io(e: nix::Error) -> std::io::Error {
    std::io::Error::from(e)
}

impl ScenarioDir {
    pub fn open(path: &Path) -> std::io::Result<ScenarioDir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(io)?;
        Ok(ScenarioDir {
            path: path.to_owned(),
            fd,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` (for a program's argument or ftok, which only stat it).
    pub fn join(&self, name: &FileName) -> PathBuf {
        self.path.join(name.os())
    }

    /// Create `name` empty, or truncate it if it is a regular file; a
    /// symbolic link in its place is refused (ELOOP), not followed.
    pub fn create(&self, name: &FileName) -> std::io::Result<()> {
        let fd = nix::fcntl::openat(
            self.fd.as_fd(),
            name.os(),
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(io)?;
        drop(fd);
        Ok(())
    }

    /// Remove the directory entry `name` (a link is removed, not its target).
    pub fn remove(&self, name: &FileName) -> std::io::Result<()> {
        nix::unistd::unlinkat(self.fd.as_fd(), name.os(), nix::unistd::UnlinkatFlags::NoRemoveDir).map_err(io)
    }

    /// Replace `name` by a new empty file (a new inode, so a new ftok key):
    /// the new file is made while the old one exists, then renamed over it.
    pub fn recreate(&self, name: &FileName) -> std::io::Result<()> {
        let tmp = FileName(format!(".{}.shmconf-new", name.0.chars().take(200).collect::<String>()));
        self.create(&tmp)?;
        nix::fcntl::renameat(self.fd.as_fd(), tmp.os(), self.fd.as_fd(), name.os()).map_err(io)
    }

    /// Hard-link `to` to `from` (a link in `from`'s place is linked itself, not followed).
    pub fn link(&self, from: &FileName, to: &FileName) -> std::io::Result<()> {
        nix::unistd::linkat(self.fd.as_fd(), from.os(), self.fd.as_fd(), to.os(), AtFlags::empty()).map_err(io)
    }

    pub fn rename(&self, from: &FileName, to: &FileName) -> std::io::Result<()> {
        nix::fcntl::renameat(self.fd.as_fd(), from.os(), self.fd.as_fd(), to.os()).map_err(io)
    }

    /// Device and inode of `name` itself (not of a link's target).
    pub fn identity(&self, name: &FileName) -> std::io::Result<FileIdentity> {
        let st = nix::sys::stat::fstatat(self.fd.as_fd(), name.os(), AtFlags::AT_SYMLINK_NOFOLLOW).map_err(io)?;
        Ok(FileIdentity {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    /// The ftok key of `name` for `proj_id`, from the file's own identity
    /// (glibc's formula; a link is not followed).
    pub fn ftok(&self, name: &FileName, proj_id: i32) -> std::io::Result<shmconf::Key> {
        let id = self.identity(name)?;
        Ok(shmconf::sysv::ftok_formula(id.dev, id.ino, proj_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("shmfile")]
    #[case("a b")]
    #[case(".hidden")]
    #[case("..x")]
    fn plain_names_are_accepted(#[case] name: &str) {
        assert_eq!(FileName::parse(name).unwrap().as_str(), name);
    }

    #[rstest]
    #[case("", "is empty")]
    #[case("/etc/passwd", "'/'")]
    #[case("../x", "'/'")]
    #[case("a/b", "'/'")]
    #[case("..", "not a file name")]
    #[case(".", "not a file name")]
    #[case("a\0b", "NUL")]
    fn escaping_names_are_refused(#[case] name: &str, #[case] why: &str) {
        let e = FileName::parse(name).unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
        assert!(FileName::parse(&"x".repeat(256)).is_err());
    }

    #[test]
    fn operations_never_follow_links_out_of_the_dir() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("link")).unwrap();
        let sd = ScenarioDir::open(dir.path()).unwrap();
        let link = FileName::parse("link").unwrap();
        assert!(sd.create(&link).is_err(), "create through a link must fail");
        sd.recreate(&link).unwrap(); // replaces the link itself
        assert!(!dir.path().join("link").is_symlink());
        std::os::unix::fs::symlink(&victim, dir.path().join("link2")).unwrap();
        sd.remove(&FileName::parse("link2").unwrap()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    }

    #[test]
    fn ftok_matches_libc() {
        let dir = tempfile::tempdir().unwrap();
        let sd = ScenarioDir::open(dir.path()).unwrap();
        let f = FileName::parse("shmfile").unwrap();
        sd.create(&f).unwrap();
        assert_eq!(sd.ftok(&f, 65).unwrap(), shmconf::Key::ftok(&sd.join(&f), 65).unwrap());
    }
}
