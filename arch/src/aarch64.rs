//! aarch64: `svc #0`, number in x8, arguments x0..x5, result in x0.
//!
//! Numbers: include/uapi/asm-generic/unistd.h in the kernel source (aarch64 and riscv64 share
//! that table; checked against the installed header by this crate's tests).
//!
//! Quirks (arch/arm64/kernel/ptrace.c, signal.c): at syscall stops x7 reads as 0/1 (entry/exit)
//! and writes to it are ignored, so registers are saved only at the interrupt stop. The kernel
//! rewinds pc and reloads x0 for a restart *before* the stop but sets x8 to restart_syscall (for
//! -ERESTART_RESTARTBLOCK: nanosleep, futex with a timeout...) only *after* it, so the engine
//! learns that number at the restart's entry stop before restoring (RESTART_NR_AFTER_STOP); the
//! VM tests (integration/vm) check that a nanosleep interrupted there keeps its remaining time.

use crate::{reg_block, Abi, AbiKind, Sys};

reg_block!(
    /// `struct user_pt_regs` of arch/arm64/include/uapi/asm/ptrace.h (x0..x30, sp, pc, pstate).
    Regs,
    u64,
    [
        x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15, x16, x17, x18, x19,
        x20, x21, x22, x23, x24, x25, x26, x27, x28, x29, x30, sp, pc, pstate,
    ]
);

/// The asm-generic numbers aarch64 and riscv64 share.
pub(crate) fn generic_nr(sys: Sys) -> Option<i64> {
    Some(match sys {
        Sys::EpollPwait => 22,
        Sys::Dup3 => 24,
        Sys::Fcntl => 25,
        Sys::Close => 57,
        Sys::Read => 63,
        Sys::Pselect6 => 72,
        Sys::Ppoll => 73,
        Sys::Futex => 98,
        Sys::Nanosleep => 101,
        Sys::ClockNanosleep => 115,
        Sys::RestartSyscall => 128,
        Sys::RtSigprocmask => 135,
        Sys::RtSigtimedwait => 137,
        Sys::Getpid => 172,
        Sys::Socket => 198,
        Sys::Accept => 202,
        Sys::Recvfrom => 207,
        Sys::Shutdown => 210,
        Sys::Recvmsg => 212,
        Sys::Accept4 => 242,
        Sys::Wait4 => 260,
        Sys::EpollPwait2 => 441,
        // The generic table never had these (libc emulates them with the calls above).
        Sys::EpollWait | Sys::Poll | Sys::Select | Sys::Pause => return None,
        Sys::FutexTime64 | Sys::ClockNanosleepTime64 | Sys::PpollTime64 | Sys::Pselect6Time64 => {
            return None
        }
    })
}

pub struct Aarch64;

impl Abi for Aarch64 {
    const KIND: AbiKind = AbiKind::Aarch64;
    type Regs = Regs;
    const SYSCALL_INSN: &'static [u8] = &[
        0x01, // SVC #0 = 0xd4000001, little-endian: imm16 = 0, low bits 0b00001 (SVC)
        0x00, //   imm16 (low bits)
        0x00, //   imm16 (high bits)
        0xd4, //   exception-generation class
    ];
    const INSN_ALIGN: usize = 4;

    fn nr(sys: Sys) -> Option<i64> {
        generic_nr(sys)
    }

    fn set_call(r: &mut Regs, insn: u64, nr: i64, a: [u64; 6]) {
        // No orig_x0/syscallno in this block: the kernel's restart decision for the call we
        // interrupted was taken before the stop (do_signal), so nothing to disarm here.
        r.pc = insn;
        r.x8 = nr as u64;
        r.x0 = a[0];
        r.x1 = a[1];
        r.x2 = a[2];
        r.x3 = a[3];
        r.x4 = a[4];
        r.x5 = a[5];
    }

    fn result(r: &Regs) -> i64 {
        r.x0 as i64
    }
    fn ip(r: &Regs) -> u64 {
        r.pc
    }
    fn sp(r: &Regs) -> u64 {
        r.sp
    }
    fn nr_reg(r: &Regs) -> i64 {
        r.x8 as i64
    }
    fn set_nr_reg(r: &mut Regs, nr: i64) {
        r.x8 = nr as u64;
    }
    const RESTART_NR_AFTER_STOP: bool = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RegBlock;

    #[test]
    fn set_call_uses_x8_and_x0_to_x5() {
        let mut r = Regs {
            x7: 1,
            x30: 0x4444,
            sp: 0x8000,
            pc: 0x1000,
            ..Default::default()
        };
        Aarch64::set_call(&mut r, 0x5_0000, 210, [12, 2, 0, 0, 0, 0]);
        assert_eq!((r.pc, r.x8, r.x0, r.x1), (0x5_0000, 210, 12, 2));
        assert_eq!(
            (r.x7, r.x30, r.sp),
            (1, 0x4444, 0x8000),
            "other registers untouched"
        );
        r.x0 = (-104i64) as u64;
        assert_eq!(Aarch64::result(&r), -104);
        assert_eq!(Aarch64::SYSCALL_INSN, 0xd400_0001u32.to_le_bytes());
    }

    #[test]
    fn pc_is_word_32() {
        let r = Regs {
            pc: 7,
            ..Default::default()
        };
        assert_eq!(r.fields()[32], ("pc", 7));
        assert_eq!(Regs::SIZE, 272);
    }
}
