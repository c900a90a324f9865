//! Running system calls inside a stopped thread: [`Injector`] owns the thread's saved registers
//! and signal mask from the moment it takes them; `finish()` gives them back and reports
//! problems, and `Drop` gives them back on every other path.
//!
//! Each call: set the registers (pc at a syscall instruction the process already has, number
//! and arguments in place, the kernel's restart logic for the call we interrupted disarmed),
//! PTRACE_SYSCALL to the entry stop, PTRACE_SYSCALL to the exit stop, read the result. Calls
//! chain from one exit stop to the next. To restore, we PTRACE_INTERRUPT at the last exit stop
//! and resume into the event stop that follows; registers written there are what the kernel's
//! signal path sees next, so it restarts the call the thread was in exactly as after any other
//! stop (writing them at the exit stop would leak -ERESTARTSYS, errno 512, to the program).

use super::tracee::{self, Stop, TraceeState, WaitError};
use super::EngineError;
use fdclose_arch::{AbiKind, AnyRegs, Sys};
use nix::errno::Errno;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// Every signal but SIGKILL and SIGSTOP, which cannot be blocked (bit n-1 is signal n).
pub const ALL_BLOCKABLE: u64 = !((1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1)));

/// The -ERESTART* codes (include/linux/errno.h): a call of ours that returns one was cut short
/// by a stop and is run again.
const ERESTART_RANGE: std::ops::RangeInclusive<i64> = 512..=516;

/// How to resume the thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resume {
    Syscall,
    Cont,
}

/// What we wait for after resuming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    SyscallStop,
    EventStop,
}

/// What to do with a stop that came while we waited for `want` (pure, so it can be tested).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reaction {
    /// The stop we waited for.
    Arrived,
    /// Not ours to care about (a group stop, a stray event): resume the same way, keep waiting.
    ResumeAgain,
    /// A signal: take it aside (never delivered now), resume, keep waiting.
    HoldSignal(i32),
    Gone,
}

fn react(want: Want, stop: Stop) -> Reaction {
    match (want, stop) {
        (Want::SyscallStop, Stop::Syscall) => Reaction::Arrived,
        (Want::EventStop, Stop::Event { .. }) => Reaction::Arrived,
        (_, Stop::Signal(sig)) => Reaction::HoldSignal(sig),
        (_, Stop::Exited(_) | Stop::Killed(_)) => Reaction::Gone,
        (_, Stop::Event { .. } | Stop::Syscall | Stop::OtherEvent { .. }) => Reaction::ResumeAgain,
    }
}

/// Whether a signal that stopped the thread while it ran our instruction was caused by it: the
/// seccomp filter trapping our call (SIGSYS, si_call_addr just past the instruction) or our
/// instruction faulting (si_addr at it). Such signals are never delivered to the program.
fn caused_by_us(sig: i32, si_code: i32, addr: u64, insn: u64, insn_len: u64) -> bool {
    const SYS_SECCOMP: i32 = 1;
    match sig {
        libc::SIGSYS => si_code == SYS_SECCOMP && addr == insn + insn_len,
        libc::SIGSEGV | libc::SIGBUS | libc::SIGILL => si_code > 0 && addr == insn,
        _ => false,
    }
}

#[derive(Debug)]
pub struct Injector {
    pid: i32,
    tid: i32,
    abi: AbiKind,
    insn: u64,
    saved: AnyRegs,
    /// The thread's own signal mask; `None` when the kernel cannot read it (< 3.11).
    saved_mask: Option<u64>,
    /// We replaced the mask with ALL_BLOCKABLE and owe the thread its own back.
    mask_replaced: bool,
    state: TraceeState,
    limit: Duration,
    /// Signals that arrived for the program while we worked (only SIGSTOP can, with the mask
    /// blocked; any, in the fallback): re-sent after the registers are back.
    held: Vec<libc::siginfo_t>,
    /// Held signals the kernel would not queue again yet (EAGAIN).
    unsent: Vec<libc::siginfo_t>,
    /// Signals our own calls caused (seccomp SIGSYS, faults), suppressed.
    pub caused: Vec<i32>,
}

/// Re-send held signals that found the queue full, until it takes them or `limit` passes.
/// Returns how many could not be sent.
pub fn resend(pid: i32, tid: i32, mut sigs: Vec<libc::siginfo_t>, limit: Duration) -> usize {
    let end = Instant::now() + limit;
    while !sigs.is_empty() && Instant::now() < end {
        sigs.retain(|si| tracee::redeliver(pid, tid, si) == Err(Errno::EAGAIN));
        if !sigs.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    sigs.len()
}

impl Injector {
    /// Take over thread `tid`, which must sit in an event stop: save its registers and mask and
    /// block every signal. With `no_setsigmask` (or a kernel without PTRACE_SETSIGMASK) signals
    /// stay unblocked and any that arrive are held back and re-sent after restore.
    pub fn take(
        pid: i32,
        tid: i32,
        insn: u64,
        limit: Duration,
        no_setsigmask: bool,
    ) -> Result<Injector, EngineError> {
        let perr = |op, errno| EngineError::Ptrace {
            pid,
            tid,
            op,
            errno,
        };
        let saved = tracee::get_regs(tid).map_err(|e| perr("getregset", e))?;
        let mut inj = Injector {
            pid,
            tid,
            abi: saved.kind(),
            insn,
            saved,
            saved_mask: None,
            mask_replaced: false,
            state: TraceeState::Interrupted,
            limit,
            held: Vec::new(),
            unsent: Vec::new(),
            caused: Vec::new(),
        };
        if !no_setsigmask {
            match tracee::get_sigmask(tid) {
                Ok(m) => {
                    inj.saved_mask = Some(m);
                    match tracee::set_sigmask(tid, ALL_BLOCKABLE) {
                        Ok(()) => inj.mask_replaced = true,
                        Err(Errno::EIO | Errno::EINVAL) => {}
                        Err(e) => return Err(perr("setsigmask", e)),
                    }
                }
                Err(Errno::EIO | Errno::EINVAL) => {}
                Err(e) => return Err(perr("getsigmask", e)),
            }
        }
        if inj.saved.restart_nr_after_stop() {
            inj.settle_restart()?;
        }
        Ok(inj)
    }

    /// arm64 and riscv64 rewind pc to the `svc`/`ecall` of the call we interrupted *before* the
    /// stop, but switch the number to restart_syscall for a `-ERESTART_RESTARTBLOCK` call only
    /// *after* it (do_signal). So let the thread run into that instruction's entry stop to learn
    /// the number the kernel chose, skip the call for now, and restore with that number: the
    /// interrupted call then resumes with its remaining time instead of starting over.
    fn settle_restart(&mut self) -> Result<(), EngineError> {
        let ip = self.saved.ip();
        let want = self.abi.syscall_insn();
        let mut at = vec![0u8; want.len()];
        let read = std::fs::File::open(format!("/proc/{}/mem", self.pid))
            .and_then(|f| f.read_exact_at(&mut at, ip));
        if read.is_err() || at != want {
            // Not stopped at a call's instruction: no restart pending.
            return Ok(());
        }
        self.resume(
            Resume::Syscall,
            Want::SyscallStop,
            "the interrupted call's restart",
        )?;
        self.state = TraceeState::InCallEntry;
        let entered = tracee::get_regs(self.tid).map_err(|e| self.perr("getregset", e))?;
        tracee::skip_entered_call(self.tid, &entered).map_err(|e| self.perr("setregset", e))?;
        self.resume(
            Resume::Syscall,
            Want::SyscallStop,
            "skipping the interrupted call's restart",
        )?;
        self.state = TraceeState::InCallExit;
        self.saved.set_nr_reg(entered.nr_reg());
        Ok(())
    }

    pub fn tid(&self) -> i32 {
        self.tid
    }
    pub fn saved_regs(&self) -> &AnyRegs {
        &self.saved
    }
    pub fn saved_mask(&self) -> Option<u64> {
        self.saved_mask
    }
    /// Signals are blocked while we work (PTRACE_SETSIGMASK worked).
    pub fn signals_blocked(&self) -> bool {
        self.mask_replaced
    }
    pub fn state(&self) -> TraceeState {
        self.state
    }

    fn perr(&self, op: &'static str, errno: Errno) -> EngineError {
        if errno == Errno::ESRCH && super::procfs::gone(self.pid) {
            return EngineError::Exited {
                pid: self.pid,
                during: op.into(),
            };
        }
        EngineError::Ptrace {
            pid: self.pid,
            tid: self.tid,
            op,
            errno,
        }
    }

    /// Run `sys(args)` in the thread; returns the raw result (-4095..=-1 is -errno).
    pub fn call(&mut self, sys: Sys, args: &[u64]) -> Result<i64, EngineError> {
        let nr = self.abi.nr(sys).ok_or_else(|| EngineError::Unsupported {
            pid: self.pid,
            what: format!("{:?} has no system call number for {}", sys, self.abi),
        })?;
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        for _ in 0..3 {
            if !matches!(
                self.state,
                TraceeState::Interrupted | TraceeState::InCallExit
            ) {
                return Err(EngineError::Unsupported {
                    pid: self.pid,
                    what: format!(
                        "thread {} is {}, not stopped where a call can start",
                        self.tid,
                        self.state.name()
                    ),
                });
            }
            let mut regs = self.saved;
            regs.set_call(self.insn, nr, a);
            tracee::set_regs(self.tid, &regs).map_err(|e| self.perr("setregset", e))?;
            self.resume(
                Resume::Syscall,
                Want::SyscallStop,
                "entering the injected call",
            )?;
            self.state = TraceeState::InCallEntry;
            self.resume(Resume::Syscall, Want::SyscallStop, "the injected call")?;
            self.state = TraceeState::InCallExit;
            let r = tracee::get_regs(self.tid)
                .map_err(|e| self.perr("getregset", e))?
                .result();
            if !ERESTART_RANGE.contains(&-r) {
                return Ok(r);
            }
        }
        Err(EngineError::Unsupported {
            pid: self.pid,
            what: format!(
                "{sys:?} was interrupted three times in thread {}; giving up",
                self.tid
            )
            .to_lowercase(),
        })
    }

    /// Resume the thread and wait for the stop we `want`, dealing with the others on the way.
    fn resume(&mut self, how: Resume, want: Want, what: &str) -> Result<(), EngineError> {
        let go = |tid| match how {
            Resume::Syscall => tracee::syscall(tid, 0),
            Resume::Cont => tracee::cont(tid, 0),
        };
        go(self.tid).map_err(|e| self.perr("resume", e))?;
        self.state = TraceeState::Running;
        // One deadline for the whole wait, however many other stops come first: a storm of
        // signals (fallback mode) must not keep us here forever.
        let mut end = Instant::now() + self.limit;
        let mut interrupted = false;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let stop = match tracee::wait_stop(self.tid, left) {
                Ok(s) => s,
                Err(WaitError::Timeout) if !interrupted && want == Want::SyscallStop => {
                    // Our call blocks (close() of a lingering socket...): interrupt it; it
                    // returns -ERESTART* or EINTR and we see its exit stop.
                    interrupted = true;
                    end = Instant::now() + self.limit;
                    tracee::interrupt(self.tid).map_err(|e| self.perr("interrupt", e))?;
                    continue;
                }
                Err(WaitError::Timeout) => {
                    return Err(EngineError::Timeout {
                        pid: self.pid,
                        tid: self.tid,
                        what: what.to_string(),
                        limit: self.limit,
                    })
                }
                Err(WaitError::Errno(e)) => {
                    self.state = TraceeState::Exited;
                    return Err(self.perr("waitpid", e));
                }
            };
            match react(want, stop) {
                Reaction::Arrived => {
                    // The caller names syscall stops (entry or exit); an event stop is ours.
                    self.state = TraceeState::Interrupted;
                    return Ok(());
                }
                Reaction::ResumeAgain => {}
                Reaction::HoldSignal(sig) => self.hold(sig),
                Reaction::Gone => {
                    self.state = TraceeState::Exited;
                    return Err(EngineError::Exited {
                        pid: self.pid,
                        during: what.to_string(),
                    });
                }
            }
            go(self.tid).map_err(|e| self.perr("resume", e))?;
        }
    }

    /// Take a signal aside: suppressed for good if our call caused it, else re-sent later.
    fn hold(&mut self, sig: i32) {
        let Ok(si) = tracee::get_siginfo(self.tid) else {
            return;
        };
        // SAFETY: si_addr reads the union member that SIGSEGV/SIGBUS/SIGILL (si_addr) and SIGSYS
        // (si_call_addr, same offset) fill in; for other signals the value is not used.
        let addr = unsafe { si.si_addr() } as u64;
        let len = self.abi.syscall_insn().len() as u64;
        if caused_by_us(sig, si.si_code, addr, self.insn, len) {
            self.caused.push(sig);
        } else {
            self.held.push(si);
        }
    }

    /// Give the thread its registers and mask back (at an event stop), re-send held signals.
    fn restore(&mut self) -> Result<(), EngineError> {
        match self.state {
            TraceeState::Restored | TraceeState::Detached => return Ok(()),
            TraceeState::Exited => {
                return Err(EngineError::Exited {
                    pid: self.pid,
                    during: "restore".into(),
                })
            }
            TraceeState::Running => {
                tracee::interrupt(self.tid).map_err(|e| self.perr("interrupt", e))?;
                self.wait_event("stopping it to restore its registers")?;
            }
            TraceeState::InCallEntry => {
                self.resume(
                    Resume::Syscall,
                    Want::SyscallStop,
                    "finishing the injected call",
                )?;
                self.state = TraceeState::InCallExit;
            }
            TraceeState::InCallExit | TraceeState::Interrupted => {}
        }
        if self.state == TraceeState::InCallExit {
            tracee::interrupt(self.tid).map_err(|e| self.perr("interrupt", e))?;
            self.resume(
                Resume::Cont,
                Want::EventStop,
                "the event stop to restore registers at",
            )?;
            self.state = TraceeState::Interrupted;
        }
        tracee::set_regs(self.tid, &self.saved).map_err(|e| self.perr("setregset", e))?;
        if self.mask_replaced {
            if let Some(m) = self.saved_mask {
                tracee::set_sigmask(self.tid, m).map_err(|e| self.perr("setsigmask", e))?;
            }
            self.mask_replaced = false;
        }
        self.state = TraceeState::Restored;
        for si in std::mem::take(&mut self.held) {
            // It becomes pending again and is delivered once we detach. A full queue (EAGAIN)
            // is retried by the caller after detaching, when the program drains it.
            if tracee::redeliver(self.pid, self.tid, &si) == Err(Errno::EAGAIN) {
                self.unsent.push(si);
            }
        }
        Ok(())
    }

    fn wait_event(&mut self, what: &str) -> Result<(), EngineError> {
        let end = Instant::now() + self.limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match tracee::wait_stop(self.tid, left) {
                Ok(s) => match react(Want::EventStop, s) {
                    Reaction::Arrived => {
                        self.state = TraceeState::Interrupted;
                        return Ok(());
                    }
                    Reaction::HoldSignal(sig) => self.hold(sig),
                    Reaction::Gone => {
                        self.state = TraceeState::Exited;
                        return Err(EngineError::Exited {
                            pid: self.pid,
                            during: what.into(),
                        });
                    }
                    Reaction::ResumeAgain => {}
                },
                Err(WaitError::Timeout) => {
                    return Err(EngineError::Timeout {
                        pid: self.pid,
                        tid: self.tid,
                        what: what.into(),
                        limit: self.limit,
                    })
                }
                Err(WaitError::Errno(e)) => return Err(self.perr("waitpid", e)),
            }
            tracee::cont(self.tid, 0).map_err(|e| self.perr("resume", e))?;
        }
    }

    /// Restore and report how that went. The thread stays in its event stop for detaching.
    /// Returns the held signals that could not be re-sent yet (queue full): send them with
    /// [`resend`] once the thread runs again.
    pub fn finish(mut self) -> Result<Vec<libc::siginfo_t>, EngineError> {
        self.restore()?;
        Ok(std::mem::take(&mut self.unsent))
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reactions_to_stops() {
        assert_eq!(react(Want::SyscallStop, Stop::Syscall), Reaction::Arrived);
        assert_eq!(
            react(Want::SyscallStop, Stop::Event { sig: libc::SIGSTOP }),
            Reaction::ResumeAgain,
            "a group stop does not end our call"
        );
        assert_eq!(
            react(Want::EventStop, Stop::Event { sig: libc::SIGTRAP }),
            Reaction::Arrived
        );
        assert_eq!(
            react(Want::EventStop, Stop::Event { sig: libc::SIGTSTP }),
            Reaction::Arrived,
            "a group stop is an event stop too: registers can be restored there"
        );
        assert_eq!(react(Want::EventStop, Stop::Syscall), Reaction::ResumeAgain);
        assert_eq!(
            react(Want::SyscallStop, Stop::Signal(libc::SIGUSR1)),
            Reaction::HoldSignal(libc::SIGUSR1)
        );
        assert_eq!(react(Want::EventStop, Stop::Killed(9)), Reaction::Gone);
        assert_eq!(react(Want::SyscallStop, Stop::Exited(0)), Reaction::Gone);
    }

    #[test]
    fn which_signals_our_call_caused() {
        let insn = 0x7fff_0000;
        assert!(caused_by_us(libc::SIGSYS, 1, insn + 2, insn, 2));
        assert!(
            !caused_by_us(libc::SIGSYS, 1, 0x1234, insn, 2),
            "another call trapped"
        );
        assert!(caused_by_us(libc::SIGSEGV, 1, insn, insn, 2));
        assert!(
            !caused_by_us(libc::SIGSEGV, 0, insn, insn, 2),
            "sent by kill(): not a fault"
        );
        assert!(!caused_by_us(libc::SIGUSR1, 1, insn, insn, 2));
    }

    #[test]
    fn blockable_mask_leaves_kill_and_stop() {
        assert_eq!(ALL_BLOCKABLE & (1 << 8), 0);
        assert_eq!(ALL_BLOCKABLE & (1 << 18), 0);
        assert_ne!(ALL_BLOCKABLE & (1 << (libc::SIGINT - 1)), 0);
        assert_ne!(ALL_BLOCKABLE & (1 << 63), 0, "real-time signals too");
    }
}
