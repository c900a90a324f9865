//! Stopping the threads of a process with PTRACE_SEIZE + PTRACE_INTERRUPT (never SIGSTOP), and
//! letting them all go again. [`Frozen`] owns the attachment: dropping it detaches every thread
//! still attached, whatever happened in between.

use super::procfs;
use super::tracee::{self, Stop, TraceeState, WaitError};
use super::EngineError;
use nix::errno::Errno;
use std::collections::BTreeMap;
use std::time::Duration;

/// The threads we hold, each in an event stop until released.
#[derive(Debug)]
pub struct Frozen {
    pub pid: i32,
    pub comm: String,
    threads: BTreeMap<i32, TraceeState>,
    /// The process was in a group stop (SIGSTOP, Ctrl-Z) when we came: the kernel puts it back
    /// into that stop when we detach.
    pub group_stopped: bool,
    limit: Duration,
}

impl Frozen {
    /// Stop every thread of `pid`, rescanning /proc/PID/task until no new thread shows up (a
    /// thread may create another between our listing and its stop).
    pub fn all(pid: i32, comm: &str, limit: Duration) -> Result<Frozen, EngineError> {
        let mut f = Frozen::empty(pid, comm, limit)?;
        loop {
            // Exited threads (a zombie leader) cannot stop: only live ones are seized.
            let fresh: Vec<i32> = procfs::live_tids(pid)?
                .into_iter()
                .filter(|t| !f.threads.contains_key(t))
                .collect();
            if fresh.is_empty() {
                break;
            }
            // Seize and interrupt them all first, then wait: the stops come in parallel.
            let mut seized = Vec::new();
            for tid in fresh {
                match f.seize(tid) {
                    Ok(()) => seized.push(tid),
                    Err(Errno::ESRCH) => continue, // the thread exited meanwhile
                    Err(e) => return Err(f.seize_error(tid, e)),
                }
            }
            for tid in seized {
                f.wait_interrupted(tid)?;
            }
        }
        if f.live().next().is_none() {
            // Nothing left to stop: the process (or every thread of it) is gone.
            return Err(EngineError::Exited {
                pid,
                during: "freeze".into(),
            });
        }
        Ok(f)
    }

    /// Stop only thread `tid` (--no-freeze): the others run on.
    pub fn one(pid: i32, tid: i32, comm: &str, limit: Duration) -> Result<Frozen, EngineError> {
        let mut f = Frozen::empty(pid, comm, limit)?;
        match f.seize(tid) {
            Ok(()) => {}
            Err(Errno::ESRCH) => {
                return Err(EngineError::Exited {
                    pid,
                    during: format!("attaching thread {tid}"),
                })
            }
            Err(e) => return Err(f.seize_error(tid, e)),
        }
        f.wait_interrupted(tid)?;
        Ok(f)
    }

    fn empty(pid: i32, comm: &str, limit: Duration) -> Result<Frozen, EngineError> {
        let st = procfs::status(pid)?;
        Ok(Frozen {
            pid,
            comm: comm.to_string(),
            threads: BTreeMap::new(),
            group_stopped: st.state == 'T',
            limit,
        })
    }

    fn seize(&mut self, tid: i32) -> Result<(), Errno> {
        tracee::seize(tid)?;
        self.threads.insert(tid, TraceeState::Running);
        if let Err(e) = tracee::interrupt(tid) {
            // Seized but not interruptible: it is exiting. Waiting tells.
            if e != Errno::ESRCH {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Turn a PTRACE_SEIZE failure into the reason an operator can act on.
    fn seize_error(&self, tid: i32, errno: Errno) -> EngineError {
        if errno == Errno::EPERM {
            // The thread's own status: a tracer may hold one thread only (strace -p TID).
            let task = procfs::read_proc(self.pid, &format!("task/{tid}/status"))
                .map(|t| procfs::parse_status(&t));
            if let Ok(st) = task.or_else(|_| procfs::status(self.pid)) {
                if st.tracer_pid != 0 && st.tracer_pid != std::process::id() as i32 {
                    return EngineError::AlreadyTraced {
                        pid: self.pid,
                        comm: self.comm.clone(),
                        tracer: st.tracer_pid,
                        tracer_comm: procfs::comm(st.tracer_pid),
                    };
                }
                let why = procfs::ptrace_facts(self.pid, &st).denial().unwrap_or_else(|| {
                    "the kernel said EPERM (a security module, or the process is not dumpable and \
                     fdclose lacks CAP_SYS_PTRACE in its user namespace)"
                        .into()
                });
                return EngineError::PtraceDenied {
                    pid: self.pid,
                    comm: self.comm.clone(),
                    why,
                };
            }
        }
        EngineError::Ptrace {
            pid: self.pid,
            tid,
            op: "seize",
            errno,
        }
    }

    /// Wait until `tid` sits in an event stop. A signal that was on its way is handed on (never
    /// swallowed) and we wait again: our interrupt is still pending and stops it right after.
    fn wait_interrupted(&mut self, tid: i32) -> Result<(), EngineError> {
        loop {
            match tracee::wait_stop(tid, self.limit) {
                Ok(Stop::Event { sig }) => {
                    if sig != libc::SIGTRAP {
                        self.group_stopped = true;
                    }
                    self.threads.insert(tid, TraceeState::Interrupted);
                    return Ok(());
                }
                Ok(Stop::Signal(sig)) => {
                    if let Err(e) = tracee::cont(tid, sig) {
                        return Err(self.ptrace_err(tid, "cont (passing a signal on)", e));
                    }
                }
                Ok(s) if s.is_gone() => {
                    self.threads.insert(tid, TraceeState::Exited);
                    if tid == self.pid {
                        return Err(EngineError::Exited {
                            pid: self.pid,
                            during: "freeze".into(),
                        });
                    }
                    return Ok(());
                }
                Ok(other) => {
                    // Not a stop we asked for; let it go on and wait for ours.
                    let _ = other;
                    if let Err(e) = tracee::cont(tid, 0) {
                        return Err(self.ptrace_err(tid, "cont", e));
                    }
                }
                Err(WaitError::Timeout) => {
                    return Err(EngineError::Timeout {
                        pid: self.pid,
                        tid,
                        what: "waiting for it to stop after PTRACE_INTERRUPT".into(),
                        limit: self.limit,
                    })
                }
                Err(WaitError::Errno(Errno::ECHILD)) => {
                    self.threads.insert(tid, TraceeState::Exited);
                    return Ok(());
                }
                Err(WaitError::Errno(e)) => return Err(self.ptrace_err(tid, "waitpid", e)),
            }
        }
    }

    fn ptrace_err(&self, tid: i32, op: &'static str, errno: Errno) -> EngineError {
        if errno == Errno::ESRCH && procfs::gone(self.pid) {
            return EngineError::Exited {
                pid: self.pid,
                during: op.into(),
            };
        }
        EngineError::Ptrace {
            pid: self.pid,
            tid,
            op,
            errno,
        }
    }

    /// Threads we hold that have not exited.
    pub fn live(&self) -> impl Iterator<Item = i32> + '_ {
        self.threads
            .iter()
            .filter(|(_, s)| !matches!(s, TraceeState::Exited | TraceeState::Detached))
            .map(|(t, _)| *t)
    }

    pub fn count(&self) -> usize {
        self.live().count()
    }

    /// Detach every thread. Each is in an event stop (the injection thread was put back into
    /// one by its restore), which PTRACE_DETACH requires.
    pub fn release(mut self) -> Result<(), EngineError> {
        self.detach_all()
    }

    fn detach_all(&mut self) -> Result<(), EngineError> {
        let mut first_err = None;
        let tids: Vec<i32> = self.live().collect();
        for tid in tids {
            let r = self.detach_one(tid);
            self.threads.insert(tid, TraceeState::Detached);
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn detach_one(&mut self, tid: i32) -> Result<(), EngineError> {
        match tracee::detach(tid) {
            Ok(()) => Ok(()),
            // The process is gone: nothing left to let go of.
            Err(Errno::ESRCH) if procfs::gone(self.pid) => Ok(()),
            Err(Errno::ESRCH) => {
                // Not in a ptrace stop (it was running): stop it, then detach.
                let _ = tracee::interrupt(tid);
                loop {
                    match tracee::wait_stop(tid, self.limit) {
                        Ok(Stop::Event { .. }) | Ok(Stop::Syscall) => break,
                        Ok(Stop::Signal(sig)) => {
                            let _ = tracee::cont(tid, sig);
                        }
                        Ok(Stop::OtherEvent { .. }) => {
                            let _ = tracee::cont(tid, 0);
                        }
                        Ok(_) | Err(WaitError::Errno(_)) => return Ok(()), // gone
                        Err(WaitError::Timeout) => {
                            return Err(EngineError::Timeout {
                                pid: self.pid,
                                tid,
                                what: "stopping it to detach".into(),
                                limit: self.limit,
                            })
                        }
                    }
                }
                tracee::detach(tid).map_err(|errno| EngineError::Ptrace {
                    pid: self.pid,
                    tid,
                    op: "detach",
                    errno,
                })
            }
            Err(errno) => Err(EngineError::Ptrace {
                pid: self.pid,
                tid,
                op: "detach",
                errno,
            }),
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = self.detach_all();
    }
}
