//! Thin, typed wrappers over the ptrace requests the engine uses, the classification of wait
//! statuses into stops (pure), and waiting with a deadline.

use fdclose_arch::{AbiKind, AnyRegs};
use nix::errno::Errno;
use std::time::{Duration, Instant};

// Request numbers from include/uapi/linux/ptrace.h (the same on every architecture).
const PTRACE_CONT: u32 = 7;
const PTRACE_DETACH: u32 = 17;
const PTRACE_SYSCALL: u32 = 24;
const PTRACE_GETSIGINFO: u32 = 0x4202;
const PTRACE_GETREGSET: u32 = 0x4204;
const PTRACE_SETREGSET: u32 = 0x4205;
const PTRACE_SEIZE: u32 = 0x4206;
const PTRACE_INTERRUPT: u32 = 0x4207;
const PTRACE_GETSIGMASK: u32 = 0x420a;
const PTRACE_SETSIGMASK: u32 = 0x420b;
/// arm64 regset holding the number of the call a thread is entering (include/uapi/linux/elf.h).
const NT_ARM_SYSTEM_CALL: usize = 0x404;
/// Syscall stops report SIGTRAP | 0x80, so they cannot be mistaken for a real SIGTRAP.
const PTRACE_O_TRACESYSGOOD: usize = 1;
const PTRACE_EVENT_STOP: i32 = 128;
/// NT_PRSTATUS from include/uapi/linux/elf.h: the general registers.
const NT_PRSTATUS: usize = 1;
/// Large enough for every register block in fdclose-arch (aarch64's 272 bytes is the largest).
const REGS_BUF: usize = 512;

/// Where a traced thread is, as far as the engine is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceeState {
    /// Seized, not yet stopped by us.
    Running,
    /// In a PTRACE_EVENT_STOP (interrupt or group stop): registers may be saved and restored here.
    Interrupted,
    /// Stopped at the entry of a call we injected.
    InCallEntry,
    /// Stopped at the exit of a call we injected: the result is in the return register.
    InCallExit,
    /// Registers and signal mask are back as we found them, still in an event stop.
    Restored,
    Detached,
    /// The thread (or the whole process) is gone.
    Exited,
}

impl TraceeState {
    pub fn name(self) -> &'static str {
        match self {
            TraceeState::Running => "running",
            TraceeState::Interrupted => "interrupted",
            TraceeState::InCallEntry => "in-call-entry",
            TraceeState::InCallExit => "in-call-exit",
            TraceeState::Restored => "restored",
            TraceeState::Detached => "detached",
            TraceeState::Exited => "exited",
        }
    }
}

/// What a waitpid status means for a seized thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Exited(i32),
    Killed(i32),
    /// Syscall-entry or -exit stop (which one, the caller knows from what it asked for).
    Syscall,
    /// PTRACE_EVENT_STOP: `sig` is SIGTRAP for PTRACE_INTERRUPT, the stop signal for a group stop.
    Event {
        sig: i32,
    },
    /// The thread is about to receive `sig`: we decide whether it gets it.
    Signal(i32),
    /// Another ptrace event (we ask for none; reported so it is never mistaken for one above).
    OtherEvent {
        event: i32,
        sig: i32,
    },
}

impl Stop {
    pub fn from_status(status: i32) -> Stop {
        if libc::WIFEXITED(status) {
            return Stop::Exited(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            return Stop::Killed(libc::WTERMSIG(status));
        }
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xffff;
        match event {
            0 if sig == libc::SIGTRAP | 0x80 => Stop::Syscall,
            0 => Stop::Signal(sig),
            PTRACE_EVENT_STOP => Stop::Event { sig },
            _ => Stop::OtherEvent { event, sig },
        }
    }

    pub fn is_gone(self) -> bool {
        matches!(self, Stop::Exited(_) | Stop::Killed(_))
    }
}

/// Why waiting for a stop ended without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitError {
    Timeout,
    Errno(Errno),
}

fn raw(req: u32, tid: i32, addr: usize, data: usize) -> Result<libc::c_long, Errno> {
    Errno::clear();
    // SAFETY: every request used with this helper either takes no pointer (addr/data are plain
    // integers) or is called below with a pointer to a live, large-enough buffer it owns.
    let r = unsafe {
        libc::ptrace(
            req as _,
            tid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    if r == -1 && Errno::last_raw() != 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

pub fn seize(tid: i32) -> Result<(), Errno> {
    // No PTRACE_O_EXITKILL: if fdclose dies, the process must live on.
    raw(PTRACE_SEIZE, tid, 0, PTRACE_O_TRACESYSGOOD).map(drop)
}

pub fn interrupt(tid: i32) -> Result<(), Errno> {
    raw(PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}

pub fn cont(tid: i32, sig: i32) -> Result<(), Errno> {
    raw(PTRACE_CONT, tid, 0, sig as usize).map(drop)
}

pub fn syscall(tid: i32, sig: i32) -> Result<(), Errno> {
    raw(PTRACE_SYSCALL, tid, 0, sig as usize).map(drop)
}

pub fn detach(tid: i32) -> Result<(), Errno> {
    raw(PTRACE_DETACH, tid, 0, 0).map(drop)
}

/// The thread's general registers; the block's size tells its ABI (an x86_64 kernel hands back
/// the 32-bit block for an i386 thread).
pub fn get_regs(tid: i32) -> Result<AnyRegs, Errno> {
    let mut buf = [0u8; REGS_BUF];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    raw(
        PTRACE_GETREGSET,
        tid,
        NT_PRSTATUS,
        &mut iov as *mut libc::iovec as usize,
    )?;
    let len = iov.iov_len;
    AbiKind::from_regset_len(len)
        .and_then(|k| k.regs_from_bytes(&buf[..len]))
        .ok_or(Errno::ENOEXEC)
}

pub fn set_regs(tid: i32, regs: &AnyRegs) -> Result<(), Errno> {
    let mut bytes = regs.to_bytes();
    let mut iov = libc::iovec {
        iov_base: bytes.as_mut_ptr().cast(),
        iov_len: bytes.len(),
    };
    raw(
        PTRACE_SETREGSET,
        tid,
        NT_PRSTATUS,
        &mut iov as *mut libc::iovec as usize,
    )
    .map(drop)
}

/// At a syscall-entry stop, make the kernel skip the call the thread is entering (it returns
/// -ENOSYS). `regs` are the thread's registers as read at this stop.
pub fn skip_entered_call(tid: i32, regs: &AnyRegs) -> Result<(), Errno> {
    match regs.kind() {
        // arm64 reads the number from its own regset, not x8, once the entry stop is over.
        AbiKind::Aarch64 => {
            let mut nr: i32 = -1;
            let mut iov = libc::iovec {
                iov_base: (&mut nr as *mut i32).cast(),
                iov_len: std::mem::size_of::<i32>(),
            };
            raw(
                PTRACE_SETREGSET,
                tid,
                NT_ARM_SYSTEM_CALL,
                &mut iov as *mut libc::iovec as usize,
            )
            .map(drop)
        }
        // x86 (orig_ax) and riscv64 (a7) read the number back from the registers.
        _ => {
            let mut r = *regs;
            r.set_nr_reg(-1);
            set_regs(tid, &r)
        }
    }
}

/// The blocked-signal mask (Linux >= 3.11; EIO/EINVAL before).
pub fn get_sigmask(tid: i32) -> Result<u64, Errno> {
    let mut mask = 0u64;
    raw(PTRACE_GETSIGMASK, tid, 8, &mut mask as *mut u64 as usize)?;
    Ok(mask)
}

pub fn set_sigmask(tid: i32, mask: u64) -> Result<(), Errno> {
    let mut m = mask;
    raw(PTRACE_SETSIGMASK, tid, 8, &mut m as *mut u64 as usize).map(drop)
}

pub fn get_siginfo(tid: i32) -> Result<libc::siginfo_t, Errno> {
    // SAFETY: siginfo_t is plain old data; all-zero is a valid value.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    raw(
        PTRACE_GETSIGINFO,
        tid,
        0,
        &mut si as *mut libc::siginfo_t as usize,
    )?;
    Ok(si)
}

/// Wait for the next stop of thread `tid`, up to `limit`. Polls with WNOHANG and a short,
/// growing sleep, so a stop that comes at once (the common case) costs microseconds.
pub fn wait_stop(tid: i32, limit: Duration) -> Result<Stop, WaitError> {
    let end = Instant::now() + limit;
    let mut pause = Duration::from_micros(5);
    let mut spins = 0u32;
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out-pointer for the duration of the call.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if r == tid {
            return Ok(Stop::from_status(status));
        }
        if r < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(WaitError::Errno(e));
        }
        if Instant::now() >= end {
            return Err(WaitError::Timeout);
        }
        if spins < 50 {
            spins += 1;
            std::thread::yield_now();
        } else {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }
}

/// Send `sig` to thread `tid` of `pid` again, keeping what siginfo we can: a queued signal's value
/// is re-queued with rt_tgsigqueueinfo; a kill()/tgkill() one is re-sent with tgkill (its sender
/// pid then reads as fdclose's).
pub fn redeliver(pid: i32, tid: i32, si: &libc::siginfo_t) -> Result<(), Errno> {
    const SI_TKILL: i32 = -6;
    if si.si_code < 0 && si.si_code != SI_TKILL {
        let mut copy = *si;
        // SAFETY: rt_tgsigqueueinfo reads one siginfo_t from the pointer, which is valid.
        let r = unsafe {
            libc::syscall(
                libc::SYS_rt_tgsigqueueinfo,
                pid,
                tid,
                si.si_signo,
                &mut copy as *mut libc::siginfo_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
    }
    // SAFETY: tgkill takes only integers.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, si.si_signo) };
    if r == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Status words as the kernel builds them (kernel/exit.c wait_task_stopped, ptrace_do_notify).
    fn stopped(sig: i32, event: i32) -> i32 {
        (event << 16) | (sig << 8) | 0x7f
    }

    #[test]
    fn statuses_classify() {
        assert_eq!(
            Stop::from_status(stopped(libc::SIGTRAP | 0x80, 0)),
            Stop::Syscall
        );
        assert_eq!(
            Stop::from_status(stopped(libc::SIGTRAP, PTRACE_EVENT_STOP)),
            Stop::Event { sig: libc::SIGTRAP }
        );
        let group = Stop::from_status(stopped(libc::SIGSTOP, PTRACE_EVENT_STOP));
        assert_eq!(group, Stop::Event { sig: libc::SIGSTOP });
        assert_eq!(
            Stop::from_status(stopped(libc::SIGUSR1, 0)),
            Stop::Signal(libc::SIGUSR1)
        );
        assert_eq!(
            Stop::from_status(stopped(libc::SIGTRAP, 0)),
            Stop::Signal(libc::SIGTRAP)
        );
        assert_eq!(
            Stop::from_status(stopped(libc::SIGTRAP, 6)),
            Stop::OtherEvent {
                event: 6,
                sig: libc::SIGTRAP
            }
        );
        assert_eq!(Stop::from_status(3 << 8), Stop::Exited(3));
        assert_eq!(
            Stop::from_status(libc::SIGKILL),
            Stop::Killed(libc::SIGKILL)
        );
        assert!(Stop::Killed(9).is_gone() && Stop::Exited(0).is_gone());
    }
}
