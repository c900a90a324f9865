//! The journal: a JSON Lines file that records, before each change to a process, what is about to
//! be done and everything needed to undo our part of it by hand (the thread's saved registers and
//! signal mask), and after it what happened. Each write is fsynced before the change it announces.
//!
//! One object per line with a `type` tag (`attach`, `before`, `after`, `detach`) and a `time`.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot open the journal {path}: {source} (choose another file with --journal)")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write to the journal {path}: {source}; nothing further was changed")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode a journal entry: {0}")]
    Encode(#[from] serde_json::Error),
}

/// An open journal file, appended to and fsynced on every record.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Open (creating it and its directory if needed) the journal at `path`, or at
    /// [`Journal::default_path`].
    pub fn open(path: Option<&Path>) -> Result<Journal, JournalError> {
        let path = path
            .map(Path::to_path_buf)
            .unwrap_or_else(Journal::default_path);
        let err = |source| JournalError::Open {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(err)?;
        }
        // The journal holds register contents of other processes: readable by the owner only.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        Ok(Journal { path, file })
    }

    /// /var/log/fdclose/journal.jsonl for root, else $XDG_STATE_HOME/fdclose/journal.jsonl
    /// (~/.local/state/fdclose/journal.jsonl).
    pub fn default_path() -> PathBuf {
        let euid = nix::unistd::geteuid().as_raw();
        default_path_for(
            euid,
            std::env::var_os("XDG_STATE_HOME").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one entry as one line and fsync it before returning.
    pub fn record<T: Serialize>(&mut self, entry: &T) -> Result<(), JournalError> {
        self.record_all(std::slice::from_ref(entry))
    }

    /// Append several entries with one write and one fsync (the engine joins the `after` of one
    /// change with the `before` of the next, halving the time a frozen process waits on disk).
    pub fn record_all<T: Serialize>(&mut self, entries: &[T]) -> Result<(), JournalError> {
        let mut buf = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut buf, e)?;
            buf.push(b'\n');
        }
        let werr = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&buf).map_err(werr)?;
        self.file.sync_data().map_err(werr)
    }
}

fn default_path_for(euid: u32, xdg_state: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    if euid == 0 {
        return PathBuf::from("/var/log/fdclose/journal.jsonl");
    }
    let base = xdg_state
        .filter(|p| p.is_absolute())
        .or_else(|| home.map(|h| h.join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("fdclose/journal.jsonl")
}

/// Wall-clock time as RFC 3339 with microseconds, for the `time` field.
pub fn now() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

/// One journal line as the engine writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub time: String,
    #[serde(flatten)]
    pub event: Event,
}

impl Entry {
    pub fn new(event: Event) -> Entry {
        Entry { time: now(), event }
    }
}

/// A register saved from a stopped thread, by its name in the kernel's struct.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedReg {
    pub name: String,
    /// Hex, as gdb's `info registers` prints it.
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// The injection thread is stopped; its state as saved, before anything is changed. To undo
    /// fdclose's register changes by hand: stop the thread (gdb -p), set every register listed
    /// here, and restore the signal mask.
    Attach {
        pid: i32,
        tid: i32,
        comm: String,
        abi: String,
        /// Threads frozen (1 with --no-freeze).
        threads: usize,
        /// The process was stopped (SIGSTOP, Ctrl-Z) before we came and will be left stopped.
        group_stopped: bool,
        /// Address of the syscall instruction we borrow (in the vDSO or a library).
        insn: String,
        /// The call the thread was blocked in, as /proc/PID/task/TID/syscall showed it.
        blocked_in: String,
        regs: Vec<SavedReg>,
        /// Blocked-signal mask, hex (bit n-1 = signal n).
        sigmask: String,
        /// Every signal was blocked while we worked (false: the kernel lacks PTRACE_SETSIGMASK,
        /// signals that arrived were held back and re-sent after restore).
        signals_blocked: bool,
        seccomp: bool,
    },
    /// A step about to be handed to the engine, with the connection as it was planned (the engine
    /// itself knows fds and inodes, not addresses).
    Planned {
        pid: i32,
        fd: i32,
        inode: u64,
        target: String,
        action: String,
        proto: Option<String>,
        local: Option<String>,
        peer: Option<String>,
        state: Option<String>,
    },
    /// About to change one fd.
    Before {
        pid: i32,
        tid: i32,
        fd: i32,
        inode: u64,
        target: String,
        action: String,
        /// Tracee state when the record was written.
        state: String,
    },
    /// What the change did.
    After {
        pid: i32,
        tid: i32,
        fd: i32,
        action: String,
        result: i64,
        errno: Option<i32>,
        verified: bool,
        outcome: String,
    },
    /// The thread got its registers and signal mask back (or not) and was let go.
    Detach {
        pid: i32,
        tid: i32,
        restored: bool,
        still_stopped: bool,
        error: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_paths() {
        assert_eq!(
            default_path_for(0, Some("/x".into()), Some("/root".into())),
            PathBuf::from("/var/log/fdclose/journal.jsonl")
        );
        assert_eq!(
            default_path_for(1000, Some("/st".into()), Some("/home/a".into())),
            PathBuf::from("/st/fdclose/journal.jsonl")
        );
        assert_eq!(
            default_path_for(1000, Some("relative".into()), Some("/home/a".into())),
            PathBuf::from("/home/a/.local/state/fdclose/journal.jsonl")
        );
        assert_eq!(
            default_path_for(1000, None, Some("/home/a".into())),
            PathBuf::from("/home/a/.local/state/fdclose/journal.jsonl")
        );
    }

    #[test]
    fn entries_append_as_lines_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/j.jsonl");
        let attach = Entry::new(Event::Attach {
            pid: 42,
            tid: 43,
            comm: "java".into(),
            abi: "x86_64".into(),
            threads: 7,
            group_stopped: false,
            insn: "0x7ffc0000".into(),
            blocked_in: "futex".into(),
            regs: vec![SavedReg {
                name: "rip".into(),
                value: "0x401000".into(),
            }],
            sigmask: "0x0".into(),
            signals_blocked: true,
            seccomp: false,
        });
        let before = Entry::new(Event::Before {
            pid: 42,
            tid: 43,
            fd: 97,
            inode: 123456,
            target: "socket:[123456]".into(),
            action: "close".into(),
            state: "interrupted".into(),
        });
        {
            let mut j = Journal::open(Some(&path)).unwrap();
            assert_eq!(j.path(), path);
            j.record(&attach).unwrap();
        }
        let mut j = Journal::open(Some(&path)).unwrap();
        j.record_all(std::slice::from_ref(&before)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "appended, never truncated: {text}");
        assert!(lines[0].contains(r#""type":"attach""#), "{}", lines[0]);
        let back: Vec<Entry> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, vec![attach, before]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn unwritable_path_is_one_sentence_with_the_path() {
        let e = Journal::open(Some(Path::new("/proc/self/nope/j.jsonl"))).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("/proc/self/nope/j.jsonl") && s.contains("--journal"),
            "{s}"
        );
    }
}
