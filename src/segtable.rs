//! The kernel's segment table, `/proc/sysvipc/shm`, as typed rows.
//!
//! This is the ground truth for tests and the harness: what the kernel says
//! exists in the reading thread's IPC namespace, independent of what any
//! program prints. Columns are found by the header line, so kernels that add,
//! drop or reorder columns still parse; a column the kernel does not print is
//! `None`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::sysv::{Key, SHM_DEST};

/// Where the kernel lists the segments of the reader's IPC namespace.
pub const PROC_PATH: &str = "/proc/sysvipc/shm";

/// One segment as `/proc/sysvipc/shm` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: Key,
    pub shmid: i32,
    /// `perms` column: permission bits plus SHM_DEST (0o1000) / SHM_LOCKED.
    pub mode: u32,
    pub size: u64,
    pub cpid: Option<i32>,
    pub lpid: Option<i32>,
    pub nattch: u64,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub cuid: Option<u32>,
    pub cgid: Option<u32>,
    pub atime: Option<i64>,
    pub dtime: Option<i64>,
    pub ctime: Option<i64>,
    pub rss: Option<u64>,
    pub swap: Option<u64>,
    /// Every column by header name, as printed, including unknown ones.
    pub raw: BTreeMap<String, String>,
}

impl Row {
    pub fn perms(&self) -> u32 {
        self.mode & 0o777
    }

    pub fn is_marked_for_destruction(&self) -> bool {
        self.mode & SHM_DEST != 0
    }
}

/// The whole table at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegTable {
    pub rows: Vec<Row>,
}

/// The table text could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PROC_PATH} line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

impl SegTable {
    /// Read the table of the calling thread's IPC namespace.
    pub fn read() -> std::io::Result<SegTable> {
        Self::read_from(Path::new(PROC_PATH))
    }

    pub fn read_from(path: &Path) -> std::io::Result<SegTable> {
        let text = std::fs::read_to_string(path)?;
        Self::parse(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Parse the table's text: a header of column names, one row per segment.
    pub fn parse(text: &str) -> Result<SegTable, ParseError> {
        let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header)) = lines.next() else {
            return Ok(SegTable::default());
        };
        let names: Vec<&str> = header.split_whitespace().collect();
        for required in ["key", "shmid", "perms", "size", "nattch"] {
            if !names.contains(&required) {
                return Err(ParseError {
                    line: 1,
                    message: format!("header has no '{required}' column: {header:?}"),
                });
            }
        }
        let mut rows = Vec::new();
        for (idx, line) in lines {
            let lineno = idx + 1;
            let values: Vec<&str> = line.split_whitespace().collect();
            if values.len() != names.len() {
                return Err(ParseError {
                    line: lineno,
                    message: format!("{} values for {} columns", values.len(), names.len()),
                });
            }
            let raw: BTreeMap<String, String> = names
                .iter()
                .zip(&values)
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            let field = |name: &str| raw.get(name).map(String::as_str);
            let bad = |name: &str, v: &str| ParseError {
                line: lineno,
                message: format!("column '{name}': cannot parse {v:?}"),
            };
            fn num<T: std::str::FromStr>(
                name: &str,
                v: Option<&str>,
                bad: &dyn Fn(&str, &str) -> ParseError,
            ) -> Result<Option<T>, ParseError> {
                v.map(|v| v.parse::<T>().map_err(|_| bad(name, v))).transpose()
            }
            let key_text = field("key").unwrap_or_default();
            // The kernel prints key_t signed ("%10d"); accept unsigned too.
            let key = key_text
                .parse::<i32>()
                .or_else(|_| key_text.parse::<u32>().map(|u| u as i32))
                .map_err(|_| bad("key", key_text))?;
            let perms_text = field("perms").unwrap_or_default();
            let mode = u32::from_str_radix(perms_text, 8).map_err(|_| bad("perms", perms_text))?;
            rows.push(Row {
                key: Key::from_raw(key),
                shmid: num("shmid", field("shmid"), &bad)?.unwrap_or_default(),
                mode,
                size: num("size", field("size"), &bad)?.unwrap_or_default(),
                cpid: num("cpid", field("cpid"), &bad)?,
                lpid: num("lpid", field("lpid"), &bad)?,
                nattch: num("nattch", field("nattch"), &bad)?.unwrap_or_default(),
                uid: num("uid", field("uid"), &bad)?,
                gid: num("gid", field("gid"), &bad)?,
                cuid: num("cuid", field("cuid"), &bad)?,
                cgid: num("cgid", field("cgid"), &bad)?,
                atime: num("atime", field("atime"), &bad)?,
                dtime: num("dtime", field("dtime"), &bad)?,
                ctime: num("ctime", field("ctime"), &bad)?,
                rss: num("rss", field("rss"), &bad)?,
                swap: num("swap", field("swap"), &bad)?,
                raw,
            });
        }
        Ok(SegTable { rows })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Every segment with this key (after IPC_RMID several may share
    /// IPC_PRIVATE; a live key names at most one).
    pub fn by_key(&self, key: Key) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(move |r| r.key == key)
    }

    /// The one segment with this key, if any.
    pub fn find_key(&self, key: Key) -> Option<&Row> {
        self.by_key(key).next()
    }

    pub fn find_id(&self, shmid: i32) -> Option<&Row> {
        self.rows.iter().find(|r| r.shmid == shmid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
1090650113          3   666                  1024   712   712      0     0     0     0     0 1764240000 1764240001 1764240000                  4096                     0
         0          4  1600                  4096   713   713      1  1000  1000  1000  1000          0          0 1764240002                     0                     0
        -1          5   644                    10   714     0      0     0     0     0     0          0          0 1764240003                     0                     0
";

    #[test]
    fn parses_rows_by_header() {
        let t = SegTable::parse(SAMPLE).unwrap();
        assert_eq!(t.len(), 3);
        let r = t.find_key(Key::from_raw(0x4102_0001)).unwrap();
        assert_eq!((r.shmid, r.perms(), r.size, r.nattch), (3, 0o666, 1024, 0));
        assert_eq!(r.rss, Some(4096));
        let dest = t.find_id(4).unwrap();
        assert!(dest.is_marked_for_destruction());
        assert_eq!(dest.key, Key::PRIVATE);
        assert_eq!(t.find_key(Key::FTOK_FAILURE).unwrap().shmid, 5);
    }

    #[test]
    fn tolerates_other_column_sets() {
        let text = "key shmid nattch perms size extra\n42 7 2 600 100 x\n";
        let t = SegTable::parse(text).unwrap();
        let r = &t.rows[0];
        assert_eq!((r.key.raw(), r.shmid, r.nattch, r.mode, r.size), (42, 7, 2, 0o600, 100));
        assert_eq!(r.cpid, None);
        assert_eq!(r.raw["extra"], "x");
    }

    #[test]
    fn empty_table_and_header_only() {
        assert!(SegTable::parse("").unwrap().is_empty());
        assert!(SegTable::parse(SAMPLE.lines().next().unwrap()).unwrap().is_empty());
    }

    #[test]
    fn malformed_rows_say_where() {
        let err = SegTable::parse("key shmid perms size nattch\n1 2 3\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = SegTable::parse("key shmid perms size nattch\n1 2 9z 4 0\n").unwrap_err();
        assert!(err.message.contains("perms"), "{err}");
        assert!(SegTable::parse("shmid perms\n").is_err());
    }

    #[test]
    fn reads_the_live_table() {
        // Whatever namespace this runs in, the kernel's own text must parse.
        SegTable::read().unwrap();
    }
}
