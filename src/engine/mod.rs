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

mod freeze;
mod inject;
mod insn;
mod procfs;
mod signals;
mod tracee;
mod verify;

pub use procfs::{PtraceFacts, TaskSyscall};

use crate::journal::{Entry, Event, Journal, JournalError, SavedReg};
use crate::plan::{How, Outcome};
use fdclose_arch::{errno_of, AbiKind, Sys};
use freeze::Frozen;
use inject::Injector;
use std::collections::HashSet;
use std::time::Duration;
use verify::Held;

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
    /// Close one fd per call, never a run of them with close_range(2) (tests and the benchmark's
    /// per-fd figure; the environment variable [`NO_CLOSE_RANGE_ENV`] does the same).
    pub no_close_range: bool,
}

/// Set (to anything) in fdclose's environment: as [`EngineOptions::no_close_range`]. A test hook,
/// not an operator setting.
pub const NO_CLOSE_RANGE_ENV: &str = "FDCLOSE_NO_CLOSE_RANGE";

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            freeze: true,
            tid: None,
            allow_pid1: false,
            wait_limit: Duration::from_secs(5),
            no_setsigmask: false,
            no_close_range: false,
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
    // A leader that called pthread_exit shows as a zombie while its other threads run on.
    if matches!(st.state, 'Z' | 'X') && procfs::live_tids(pid).unwrap_or_default().is_empty() {
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
/// same order; per-fd problems are `Outcome`s. An `Err` means no fd was changed (the journal says
/// what was tried). If fds were changed but restoring or detaching then went wrong, the outcomes
/// are returned with that error in each `Done` note, so no change goes unreported.
pub fn operate(
    pid: i32,
    surgeries: &[Surgery],
    opts: &EngineOptions,
    journal: &mut Journal,
) -> Result<Vec<Outcome>, EngineError> {
    let st = check_status(pid, opts)?;
    if surgeries.is_empty() {
        return Ok(vec![]);
    }
    // Declared first, dropped last: SIGINT/SIGTERM/SIGHUP wait until the process is let go.
    let _deferred = signals::Deferred::new();

    let frozen = if opts.freeze {
        Frozen::all(pid, &st.name, opts.wait_limit).map_err(exited_or(pid, "freeze"))?
    } else {
        let tid = match opts.tid {
            Some(t) => t,
            None => pick_unstopped(pid)?,
        };
        Frozen::one(pid, tid, &st.name, opts.wait_limit).map_err(exited_or(pid, "freeze"))?
    };
    let (tid, abi, blocked_in) =
        pick_thread(pid, &frozen, opts).map_err(exited_or(pid, "choosing a thread"))?;
    let mut refusal = None;
    if abi == AbiKind::I386 && surgeries.iter().any(|s| s.op != Op::Close) {
        let (maj, min, _) = procfs::kernel_release().unwrap_or((0, 0, 0));
        if !fdclose_arch::i386::direct_socket_calls(maj, min) {
            refusal = Some(
                "shutdown and replace in a 32-bit program need Linux 4.3 or later (this kernel \
                 has only socketcall, whose arguments would have to be written into the \
                 program's memory); close works"
                    .to_string(),
            );
        }
    }
    let insn =
        insn::find(pid, tid, abi).map_err(exited_or(pid, "finding a syscall instruction"))?;
    let mut inj = Injector::take(pid, tid, insn.addr, opts.wait_limit, opts.no_setsigmask)
        .map_err(exited_or(pid, "saving registers"))?;
    let attach = Entry::new(Event::Attach {
        pid,
        tid,
        comm: st.name.clone(),
        abi: abi.name().into(),
        threads: frozen.count(),
        group_stopped: frozen.group_stopped,
        insn: format!("{:#x} in {}", insn.addr, insn.mapping),
        blocked_in: blocked_in.describe(abi),
        regs: inj
            .saved_regs()
            .fields()
            .into_iter()
            .map(|(n, v)| SavedReg {
                name: n.into(),
                value: format!("{v:#x}"),
            })
            .collect(),
        sigmask: inj
            .saved_mask()
            .map_or_else(|| "unknown".into(), |m| format!("{m:#x}")),
        signals_blocked: inj.signals_blocked(),
        seccomp: st.seccomp == 2,
    });
    // On disk at once, on its own: the mask is already replaced, and if fdclose were killed now
    // this record is what tells how to give the thread its own back.
    journal.record(&attach)?;
    let mut run = Run {
        pid,
        seccomp: st.seccomp == 2,
        journal,
        fds: verify::FdTable::open(pid, tid),
        frozen: opts.freeze,
        close_range: !opts.no_close_range && std::env::var_os(NO_CLOSE_RANGE_ENV).is_none(),
        pending: Vec::new(),
        stop: None,
    };
    let outcomes = run.all(&mut inj, surgeries, refusal.as_deref());

    // Give the thread back its registers, then let every thread go.
    let exited = matches!(run.stop, Some(Halt::Exited(_)));
    let restored = if exited {
        drop(inj);
        Ok(Vec::new())
    } else {
        inj.finish()
    };
    let still_stopped = frozen.group_stopped;
    let released = if exited {
        drop(frozen);
        Ok(())
    } else {
        frozen.release()
    };
    let unsent = match &restored {
        Ok(rest) if !rest.is_empty() => inject::resend(pid, tid, rest.clone(), opts.wait_limit),
        _ => 0,
    };
    let error = restored
        .as_ref()
        .err()
        .or(released.as_ref().err())
        .map(|e| e.to_string())
        .or_else(|| {
            (unsent > 0).then(|| {
                format!("{unsent} signals held back during the surgery could not be re-sent (queue full)")
            })
        });
    run.pending.push(Entry::new(Event::Detach {
        pid,
        tid,
        restored: restored.is_ok() && !exited,
        still_stopped,
        error,
    }));
    let flushed = run.flush();
    let journal_path = run.journal.path().display().to_string();
    let trouble = match (restored, released, flushed) {
        // No registers to give back to a process that is gone.
        (Err(e @ EngineError::Exited { .. }), _, _) => Some(e),
        (Err(e), _, _) => Some(EngineError::NotRestored {
            pid,
            tid,
            why: e.to_string(),
            journal: journal_path,
        }),
        (_, Err(e), _) => Some(e),
        (_, _, Err(e)) => Some(EngineError::Journal(e)),
        _ => None,
    };
    match trouble {
        None => Ok(outcomes),
        // Nothing was changed: the error is the whole story.
        Some(e) if !outcomes.iter().any(Outcome::is_done) => Err(e),
        // Some fds were changed: say so, with the trouble beside each change.
        Some(e) => Ok(outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Done { verified, note } => Outcome::Done {
                    verified,
                    note: Some(match note {
                        Some(n) => format!("{n}; afterwards: {e}"),
                        None => format!("afterwards: {e}"),
                    }),
                },
                other => other,
            })
            .collect()),
    }
}

/// A SIGKILL can take the process away between any two steps of attaching; whatever error that
/// produced (ESRCH, an unreadable /proc file, no thread left), the operator must read that it
/// exited.
fn exited_or(pid: i32, during: &'static str) -> impl Fn(EngineError) -> EngineError {
    move |e| match e {
        EngineError::Exited { .. } => e,
        _ if procfs::gone(pid) => EngineError::Exited {
            pid,
            during: during.into(),
        },
        e => e,
    }
}

/// Why the rest of the surgeries were not attempted.
enum Halt {
    Exited(String),
    Broken(String),
    Journal(String),
}

/// The state of one operation while its surgeries run.
struct Run<'j> {
    pid: i32,
    seccomp: bool,
    journal: &'j mut Journal,
    /// The injection thread's fd table: the one our calls change.
    fds: verify::FdTable,
    /// Every thread is stopped: nothing but our own calls changes the fd table, so the check
    /// made when a batch is journaled still holds when we act on it.
    frozen: bool,
    /// Runs of consecutive fds are closed with one close_range(2); switched off for the rest of
    /// the run once the kernel (or a seccomp filter) refuses it.
    close_range: bool,
    /// Entries not yet written: they go out with the next batch's `before` records (one fsync).
    pending: Vec<Entry>,
    stop: Option<Halt>,
}

/// Surgeries whose `before` records share one fsync. 1,000 fds cost one fsync, 10,000 ten.
const BATCH: usize = 1024;

impl Run<'_> {
    fn flush(&mut self) -> Result<(), JournalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let r = self.journal.record_all(&self.pending);
        self.pending.clear();
        r
    }

    /// Outcome for a surgery not attempted because an earlier one stopped the run.
    fn halted(&self) -> Option<Outcome> {
        Some(match self.stop.as_ref()? {
            Halt::Exited(w) => Outcome::Gone {
                what: format!("process {} exited ({w})", self.pid),
            },
            Halt::Broken(w) | Halt::Journal(w) => Outcome::Failed {
                error: format!("not attempted: {w}"),
                errno: None,
            },
        })
    }

    /// Check what the fd holds now (one `stat`); `Err` is the final outcome when it is not the
    /// planned object.
    fn check(&self, s: &Surgery) -> Result<Held, Outcome> {
        match self.fds.held(s.fd) {
            None => Err(Outcome::Gone {
                what: format!("fd {} is no longer open", s.fd),
            }),
            Some(h) if h.ino != s.expect_ino => Err(Outcome::Changed {
                now: self.fds.link(s.fd, h),
            }),
            Some(h) => Ok(h),
        }
    }

    /// Run the surgeries in batches: check each fd of a batch (the process is frozen), journal
    /// all their `before` records with one fsync, then act on them. Every change still has its
    /// `before` on disk first; a batch costs one fsync instead of one per fd.
    fn all(
        &mut self,
        inj: &mut Injector,
        surgeries: &[Surgery],
        refusal: Option<&str>,
    ) -> Vec<Outcome> {
        let mut out: Vec<Option<Outcome>> = vec![None; surgeries.len()];
        let mut next = 0;
        while next < surgeries.len() {
            // A batch ends before an fd it already holds: an fd planned twice is checked again,
            // in the next batch, after our first call on it (which may have closed or replaced it).
            let start = next;
            let mut in_batch = HashSet::new();
            while next < surgeries.len()
                && next - start < BATCH
                && in_batch.insert(surgeries[next].fd)
            {
                next += 1;
            }
            let mut ready = Vec::new();
            for (i, s) in surgeries.iter().enumerate().take(next).skip(start) {
                if let Some(o) = self.halted() {
                    out[i] = Some(o);
                    continue;
                }
                if let (Some(r), false) = (refusal, s.op == Op::Close) {
                    out[i] = Some(Outcome::Failed {
                        error: r.to_string(),
                        errno: None,
                    });
                    continue;
                }
                match self.check(s) {
                    Err(o) => out[i] = Some(o),
                    Ok(h) => {
                        self.pending.push(Entry::new(Event::Before {
                            pid: self.pid,
                            tid: inj.tid(),
                            fd: s.fd,
                            inode: h.ino,
                            target: self.fds.link(s.fd, h),
                            action: op_text(s.op),
                            state: inj.state().name().into(),
                        }));
                        ready.push(i);
                    }
                }
            }
            if let Err(e) = self.flush() {
                self.stop = Some(Halt::Journal(e.to_string()));
            }
            self.act(inj, surgeries, ready, &mut out);
        }
        out.into_iter()
            .map(|o| o.expect("every surgery has an outcome"))
            .collect()
    }

    /// Act on the checked surgeries of one batch (`ready`: indices into `surgeries`, distinct
    /// fds, `before` records on disk). Closes of consecutive fds go as runs through
    /// close_range(2) when the process is frozen; everything else one fd at a time.
    fn act(
        &mut self,
        inj: &mut Injector,
        surgeries: &[Surgery],
        ready: Vec<usize>,
        out: &mut [Option<Outcome>],
    ) {
        let (shutdowns, mut ready): (Vec<usize>, Vec<usize>) = ready
            .into_iter()
            .partition(|&i| matches!(surgeries[i].op, Op::Shutdown(_)));
        if !shutdowns.is_empty() {
            self.shutdowns(inj, surgeries, &shutdowns, out, !self.frozen);
        }
        // Only with every thread stopped: then no fd inside a run can change between its check
        // and the call. With --no-freeze each fd is checked again right before its own close.
        if self.frozen && self.close_range {
            ready.sort_by_key(|&i| (surgeries[i].op != Op::Close, surgeries[i].fd));
            let closes = ready
                .iter()
                .take_while(|&&i| surgeries[i].op == Op::Close)
                .count();
            let fds: Vec<i32> = ready[..closes].iter().map(|&i| surgeries[i].fd).collect();
            for run in consecutive_runs(&fds) {
                let idx = &ready[run];
                if idx.len() >= 2 && self.close_range && self.stop.is_none() {
                    self.close_run(inj, surgeries, idx, out);
                } else {
                    self.each(inj, surgeries, idx, out, false);
                }
            }
            self.each(inj, surgeries, &ready[closes..], out, false);
        } else {
            self.each(inj, surgeries, &ready, out, !self.frozen);
        }
    }

    /// One fd at a time; `recheck`: look at the fd again right before acting (other threads run,
    /// or our own call may have touched it).
    fn each(
        &mut self,
        inj: &mut Injector,
        surgeries: &[Surgery],
        idx: &[usize],
        out: &mut [Option<Outcome>],
        recheck: bool,
    ) {
        for &i in idx {
            out[i] = Some(match self.halted() {
                Some(o) => o,
                None => self.one(inj, &surgeries[i], recheck),
            });
        }
    }

    /// Shut down each of `idx` (one fd at a time), judging the effect from one read of the TCP
    /// tables before the batch and one after it, instead of two per fd.
    fn shutdowns(
        &mut self,
        inj: &mut Injector,
        surgeries: &[Surgery],
        idx: &[usize],
        out: &mut [Option<Outcome>],
        recheck: bool,
    ) {
        let before = verify::tcp_states(self.pid, self.fds.tid());
        let mut done = Vec::new();
        for &i in idx {
            let s = &surgeries[i];
            if let Some(o) = self.halted() {
                out[i] = Some(o);
                continue;
            }
            if recheck {
                if let Err(o) = self.check(s) {
                    self.push_after(inj, s, &op_text(s.op), 0, &o);
                    out[i] = Some(o);
                    continue;
                }
            }
            let (r, o) = match self.perform(inj, s) {
                Ok((r, o @ Outcome::Done { .. })) => {
                    done.push((i, r, o));
                    continue;
                }
                Ok((r, o)) => (r, o),
                Err(e) => (0, self.failure(e)),
            };
            self.push_after(inj, s, &op_text(s.op), r, &o);
            out[i] = Some(o);
        }
        if done.is_empty() {
            return;
        }
        let after = verify::tcp_states(self.pid, self.fds.tid());
        for (i, r, o) in done {
            let s = &surgeries[i];
            let ino = s.expect_ino;
            let (verified, vnote) =
                shutdown_verdict(before.get(&ino).copied(), after.get(&ino).copied());
            let o = match o {
                Outcome::Done { note, .. } => Outcome::Done {
                    verified,
                    note: note.or(vnote),
                },
                o => o,
            };
            self.push_after(inj, s, &op_text(s.op), r, &o);
            out[i] = Some(o);
        }
    }

    /// Close fds `first..=last` (the surgeries `idx`, every one checked to hold its planned
    /// object, consecutive, nothing else in between) with one close_range(first, last, 0).
    fn close_run(
        &mut self,
        inj: &mut Injector,
        surgeries: &[Surgery],
        idx: &[usize],
        out: &mut [Option<Outcome>],
    ) {
        // A seccomp filter judges the calls it sees: let it judge a plain close(2) of the run's
        // first fd before close_range takes the rest, so a program whose filter refuses close
        // gets every fd refused (and reported) as gdb's `call close` would, not bypassed.
        let idx = if self.seccomp {
            let o = self.one(inj, &surgeries[idx[0]], false);
            let allowed = o.is_done();
            out[idx[0]] = Some(o);
            if !allowed {
                self.close_range = false;
            }
            if !allowed || idx.len() < 3 || self.stop.is_some() {
                self.each(inj, surgeries, &idx[1..], out, false);
                return;
            }
            &idx[1..]
        } else {
            idx
        };
        let first = surgeries[idx[0]].fd;
        let last = surgeries[idx[idx.len() - 1]].fd;
        debug_assert_eq!((last - first) as usize + 1, idx.len());
        let r = match inj.call(Sys::CloseRange, &[first as u64, last as u64, 0]) {
            Ok(r) => r,
            Err(e) => {
                let o = self.failure(e);
                for &i in idx {
                    self.push_after(inj, &surgeries[i], "close-range", 0, &o);
                    out[i] = Some(o.clone());
                }
                return;
            }
        };
        if r != 0 {
            // ENOSYS: Linux < 5.9; EINVAL; EPERM or another errno: a seccomp filter refused it;
            // a positive value: a SECCOMP_RET_TRAP filter rolled the call back. A refused call
            // closed nothing, but look at each fd again anyway and close those still there one
            // by one, and never try close_range again in this run.
            self.close_range = false;
            let why = match errno_of(r) {
                Some(e) => errno_name(e),
                None => format!("result {r}"),
            };
            for &i in idx {
                let s = &surgeries[i];
                out[i] = Some(match (self.halted(), self.fds.held(s.fd)) {
                    (Some(o), _) => o,
                    (None, Some(h)) if h.ino == s.expect_ino => self.one(inj, s, false),
                    (None, now) => {
                        let o = Outcome::Done {
                            verified: now.is_none_or(|h| h.ino != s.expect_ino),
                            note: Some(format!("close_range reported {why} but released it")),
                        };
                        self.push_after(inj, s, "close-range", r, &o);
                        o
                    }
                });
            }
            return;
        }
        // A long run is verified from one listing of the fd table: fds not listed are gone
        // (the process is frozen: nothing reopened them), the few still listed are looked at.
        let listed = if self.fds.listing_pays(idx.len()) {
            self.fds.open_within(first..=last)
        } else {
            None
        };
        for &i in idx {
            let s = &surgeries[i];
            let (verified, note) = match &listed {
                Some(open) if !open.contains(&s.fd) => (true, None),
                _ => self.verify_after(s, Op::Close, s.expect_ino, None),
            };
            let o = Outcome::Done { verified, note };
            self.push_after(inj, s, "close-range", 0, &o);
            out[i] = Some(o);
        }
    }

    /// The outcome of a call that could not be made (the process exited, ptrace failed); stops
    /// the run.
    fn failure(&mut self, e: EngineError) -> Outcome {
        match e {
            EngineError::Exited { during, .. } => {
                let what = format!("process {} exited during {during}", self.pid);
                self.stop = Some(Halt::Exited(during));
                Outcome::Gone { what }
            }
            e => {
                let msg = e.to_string();
                self.stop = Some(Halt::Broken(msg.clone()));
                Outcome::Failed {
                    error: msg,
                    errno: e.errno(),
                }
            }
        }
    }

    fn push_after(&mut self, inj: &Injector, s: &Surgery, action: &str, result: i64, o: &Outcome) {
        self.pending.push(Entry::new(Event::After {
            pid: self.pid,
            tid: inj.tid(),
            fd: s.fd,
            action: action.into(),
            result,
            errno: errno_of(result),
            verified: matches!(o, Outcome::Done { verified: true, .. }),
            outcome: outcome_text(o),
        }));
    }

    /// Act on one fd whose `before` record is on disk and whose check passed.
    fn one(&mut self, inj: &mut Injector, s: &Surgery, recheck: bool) -> Outcome {
        if recheck {
            if let Err(o) = self.check(s) {
                self.push_after(inj, s, &op_text(s.op), 0, &o);
                return o;
            }
        }
        let ino = s.expect_ino;
        let tcp_before = match s.op {
            Op::Shutdown(_) => verify::tcp_state(self.pid, self.fds.tid(), ino),
            _ => None,
        };
        let (result, outcome) = match self.perform(inj, s) {
            Ok((r, o)) => (r, o),
            Err(e) => (0, self.failure(e)),
        };
        let outcome = match (outcome, s.op) {
            (Outcome::Done { note, .. }, op) => {
                let (verified, vnote) = self.verify_after(s, op, ino, tcp_before);
                Outcome::Done {
                    verified,
                    note: note.or(vnote),
                }
            }
            (o, _) => o,
        };
        self.push_after(inj, s, &op_text(s.op), result, &outcome);
        outcome
    }

    /// Run the calls of one surgery. `Ok` carries the last result and the outcome before
    /// verification (`Done` or `Failed` with the errno the program's kernel gave).
    fn perform(&mut self, inj: &mut Injector, s: &Surgery) -> Result<(i64, Outcome), EngineError> {
        let fd = s.fd as u64;
        match s.op {
            Op::Close => {
                let r = inj.call(Sys::Close, &[fd])?;
                // Linux releases the fd even when close() reports EINTR or EIO.
                Ok((r, self.judge("close", s.fd, r, &[libc::EINTR, libc::EIO])))
            }
            Op::Shutdown(how) => {
                let r = inj.call(Sys::Shutdown, &[fd, how.raw() as u64])?;
                Ok((r, self.judge("shutdown", s.fd, r, &[])))
            }
            Op::Replace => {
                // Keep the fd's close-on-exec flag: dup3 sets it from its flags argument.
                let flags = inj.call(Sys::Fcntl, &[fd, libc::F_GETFD as u64])?;
                if errno_of(flags).is_some() {
                    return Ok((flags, self.judge("fcntl(F_GETFD)", s.fd, flags, &[])));
                }
                let sock = inj.call(
                    Sys::Socket,
                    &[
                        libc::AF_INET as u64,
                        (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as u64,
                        0,
                    ],
                )?;
                if errno_of(sock).is_some() {
                    return Ok((sock, self.judge("socket", s.fd, sock, &[])));
                }
                // A never-connected TCP socket, shut both ways: reads return end-of-file and
                // writes EPIPE, as for a connection the peer closed. (ENOTCONN is expected.)
                inj.call(Sys::Shutdown, &[sock as u64, libc::SHUT_RDWR as u64])?;
                let cloexec = if flags as i32 & libc::FD_CLOEXEC != 0 {
                    libc::O_CLOEXEC as u64
                } else {
                    0
                };
                let r = inj.call(Sys::Dup3, &[sock as u64, fd, cloexec])?;
                let c = inj.call(Sys::Close, &[sock as u64])?;
                if errno_of(r).is_some() {
                    return Ok((r, self.judge("dup3", s.fd, r, &[])));
                }
                let mut out = self.judge("replace", s.fd, r, &[]);
                if let (Outcome::Done { note, .. }, Some(e)) = (&mut out, errno_of(c)) {
                    *note = Some(format!(
                        "closing the spare socket (fd {sock}) failed: {}",
                        errno_name(e)
                    ));
                }
                Ok((r, out))
            }
        }
    }

    /// Outcome of a call's raw result: `Done` unless it is an errno not in `fine`.
    fn judge(&self, call: &str, fd: i32, r: i64, fine: &[i32]) -> Outcome {
        match errno_of(r) {
            None => Outcome::Done {
                verified: false,
                note: None,
            },
            Some(e) if fine.contains(&e) => Outcome::Done {
                verified: false,
                note: Some(format!(
                    "{call} reported {} (the fd is released all the same)",
                    errno_name(e)
                )),
            },
            Some(e) => {
                let mut error =
                    format!("{call} of fd {fd} failed in the process: {}", errno_name(e));
                if self.seccomp && matches!(e, libc::EPERM | libc::ENOSYS | libc::EACCES) {
                    error.push_str(
                        "; the process has a seccomp filter (Seccomp: 2), which likely refused the call",
                    );
                }
                Outcome::Failed {
                    error,
                    errno: Some(e),
                }
            }
        }
    }

    /// Check the effect from outside: (verified, note when not).
    fn verify_after(
        &self,
        s: &Surgery,
        op: Op,
        ino: u64,
        tcp_before: Option<u8>,
    ) -> (bool, Option<String>) {
        let now = self.fds.held(s.fd);
        match op {
            Op::Close => match now {
                None => (true, None),
                Some(h) if h.ino != ino => (true, None),
                Some(_) => (
                    false,
                    Some(format!("fd {} still holds the same object", s.fd)),
                ),
            },
            Op::Replace => match now {
                Some(h) if h.ino != ino && h.socket => (true, None),
                Some(h) => (
                    false,
                    Some(format!("fd {} now holds {}", s.fd, self.fds.link(s.fd, h))),
                ),
                None => (false, Some(format!("fd {} is not open any more", s.fd))),
            },
            Op::Shutdown(_) => {
                shutdown_verdict(tcp_before, verify::tcp_state(self.pid, self.fds.tid(), ino))
            }
        }
    }
}

/// (verified, note when not) for a shutdown, from the socket's TCP state before and after.
fn shutdown_verdict(before: Option<u8>, after: Option<u8>) -> (bool, Option<String>) {
    if verify::shutdown_took_effect(before, after) {
        (true, None)
    } else if before.is_none() {
        (
            false,
            Some("not a listed TCP socket: the effect cannot be seen from /proc".into()),
        )
    } else {
        (
            false,
            Some("the TCP state did not change (expected for SHUT_RD)".into()),
        )
    }
}

/// Cut a sorted list of distinct fd numbers into runs of consecutive numbers (index ranges).
fn consecutive_runs(fds: &[i32]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=fds.len() {
        if i == fds.len() || fds[i] != fds[i - 1] + 1 {
            runs.push(start..i);
            start = i;
        }
    }
    runs
}

fn op_text(op: Op) -> String {
    match op {
        Op::Shutdown(how) => format!("shutdown-{}", how_name(how)),
        o => o.name().into(),
    }
}

fn how_name(how: How) -> &'static str {
    match how {
        How::Rd => "rd",
        How::Wr => "wr",
        How::Rdwr => "rdwr",
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Done { verified: true, .. } => "done".into(),
        Outcome::Done { .. } => "done-unverified".into(),
        Outcome::Changed { now } => format!("changed: {now}"),
        Outcome::Gone { what } => format!("gone: {what}"),
        Outcome::Failed { error, .. } => format!("failed: {error}"),
    }
}

fn errno_name(e: i32) -> String {
    let n = nix::errno::Errno::from_raw(e);
    format!("{n:?} ({})", n.desc())
}

/// --no-freeze without --tid: the best thread judged from /proc alone (none is stopped yet).
fn pick_unstopped(pid: i32) -> Result<i32, EngineError> {
    let abi = procfs::exe_abi(pid).unwrap_or(<fdclose_arch::Native as fdclose_arch::Abi>::KIND);
    let tids = procfs::live_tids(pid)?;
    tids.iter()
        .copied()
        .max_by_key(|&t| {
            (
                procfs::task_syscall(pid, t).map_or(0, |s| s.injection_rank(abi)),
                std::cmp::Reverse(t),
            )
        })
        .ok_or(EngineError::NoSuchProcess { pid })
}

/// Choose the injection thread among the stopped ones: `opts.tid`, else one blocked in a call
/// the kernel restarts transparently, never one the riscv64 restart bug would hurt.
fn pick_thread(
    pid: i32,
    frozen: &Frozen,
    opts: &EngineOptions,
) -> Result<(i32, AbiKind, TaskSyscall), EngineError> {
    let riscv_buggy = {
        let (a, b, c) = procfs::kernel_release().unwrap_or((0, 0, 0));
        !fdclose_arch::riscv64::restart_fixed(a, b, c)
    };
    let candidates: Vec<Candidate> = frozen
        .live()
        .filter(|&tid| opts.tid.is_none_or(|t| t == tid))
        .filter_map(|tid| {
            let abi = match tracee::get_regs(tid) {
                Ok(r) => Some(r.kind()),
                Err(nix::errno::Errno::ENOEXEC) => None,
                Err(_) => return None, // gone meanwhile
            };
            let sc = procfs::task_syscall(pid, tid).unwrap_or(TaskSyscall::NotInSyscall);
            Some(Candidate { tid, abi, sc })
        })
        .collect();
    choose_thread(&candidates, riscv_buggy).map_err(|what| {
        // Every thread vanished between the freeze and now: say that, not "no thread stopped".
        if candidates.is_empty() && procfs::gone(pid) {
            EngineError::Exited {
                pid,
                during: "choosing a thread to inject through".into(),
            }
        } else {
            EngineError::Unsupported { pid, what }
        }
    })
}

/// A stopped thread we could inject through: its ABI (`None`: one fdclose does not support) and
/// what it was doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Candidate {
    tid: i32,
    abi: Option<AbiKind>,
    sc: TaskSyscall,
}

/// The best injection thread (highest rank, lowest tid on ties), or why there is none.
fn choose_thread(
    candidates: &[Candidate],
    riscv_buggy: bool,
) -> Result<(i32, AbiKind, TaskSyscall), String> {
    let mut best: Option<(u8, i32, AbiKind, TaskSyscall)> = None;
    let mut why_not = Vec::new();
    for c in candidates {
        let Some(abi) = c.abi else {
            why_not.push(format!(
                "thread {} has an ABI fdclose does not support",
                c.tid
            ));
            continue;
        };
        if abi == AbiKind::Riscv64 && riscv_buggy && matches!(c.sc, TaskSyscall::In { .. }) {
            why_not.push(format!(
                "thread {} is inside a system call and this riscv64 kernel predates the \
                 restart fix (commit ce4f78f1b53d, v6.9): injecting would leak errno 512 to it",
                c.tid
            ));
            continue;
        }
        let rank = c.sc.injection_rank(abi);
        if best.as_ref().is_none_or(|b| rank > b.0) {
            best = Some((rank, c.tid, abi, c.sc));
        }
    }
    match best {
        Some((_, tid, abi, sc)) => Ok((tid, abi, sc)),
        None if why_not.is_empty() => Err("no thread of it could be stopped".into()),
        None => Err(why_not.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(tid: i32, abi: AbiKind, sc: TaskSyscall) -> Candidate {
        Candidate {
            tid,
            abi: Some(abi),
            sc,
        }
    }

    #[test]
    fn runs_of_consecutive_fds() {
        assert_eq!(consecutive_runs(&[]), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(consecutive_runs(&[7]), vec![0..1]);
        // 15 missing (not planned, or its check failed): two runs around it.
        assert_eq!(
            consecutive_runs(&[10, 11, 12, 13, 14, 16, 17, 18, 19, 20]),
            vec![0..5, 5..10]
        );
        assert_eq!(consecutive_runs(&[3, 5, 6, 9]), vec![0..1, 1..3, 3..4]);
    }

    #[test]
    fn restartable_waiter_beats_epoll_and_running() {
        let x = AbiKind::X86_64;
        let threads = [
            c(10, x, TaskSyscall::In { nr: 232 }), // epoll_wait
            c(11, x, TaskSyscall::Running),
            c(12, x, TaskSyscall::In { nr: 202 }), // futex
            c(13, x, TaskSyscall::In { nr: 0 }),   // read
        ];
        assert_eq!(choose_thread(&threads, false).unwrap().0, 12);
        assert_eq!(choose_thread(&threads[..2], false).unwrap().0, 11);
        assert_eq!(
            choose_thread(&threads[..1], false).unwrap().0,
            10,
            "epoll as a last resort"
        );
    }

    #[test]
    fn riscv_without_the_fix_avoids_threads_in_a_call() {
        let r = AbiKind::Riscv64;
        let threads = [
            c(20, r, TaskSyscall::In { nr: 98 }),
            c(21, r, TaskSyscall::NotInSyscall),
        ];
        assert_eq!(choose_thread(&threads, true).unwrap().0, 21);
        assert_eq!(choose_thread(&threads, false).unwrap().0, 20);
        let e = choose_thread(&threads[..1], true).unwrap_err();
        assert!(e.contains("errno 512") && e.contains("thread 20"), "{e}");
    }

    #[test]
    fn unsupported_abi_is_named() {
        let t = [Candidate {
            tid: 30,
            abi: None,
            sc: TaskSyscall::Running,
        }];
        assert!(choose_thread(&t, false).unwrap_err().contains("thread 30"));
        assert!(choose_thread(&[], false).is_err());
    }
}
