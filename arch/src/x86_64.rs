//! x86_64: `syscall`, number in rax, arguments rdi rsi rdx r10 r8 r9, result in rax.
//!
//! Numbers: arch/x86/entry/syscalls/syscall_64.tbl in the kernel source (checked against
//! `libc::SYS_*` and the installed asm/unistd_64.h by this crate's tests).

use crate::{reg_block, Abi, AbiKind, Sys};

reg_block!(
    /// `struct user_regs_struct` of arch/x86/include/asm/user_64.h (NT_PRSTATUS, 27 words).
    Regs,
    u64,
    [
        r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip,
        cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs,
    ]
);

pub struct X86_64;

impl Abi for X86_64 {
    const KIND: AbiKind = AbiKind::X86_64;
    type Regs = Regs;
    const SYSCALL_INSN: &'static [u8] = &[
        0x0f, // two-byte opcode escape
        0x05, // SYSCALL
    ];
    const INSN_ALIGN: usize = 1;

    fn nr(sys: Sys) -> Option<i64> {
        Some(match sys {
            Sys::Read => 0,
            Sys::Close => 3,
            Sys::Poll => 7,
            Sys::RtSigprocmask => 14,
            Sys::Select => 23,
            Sys::Pause => 34,
            Sys::Nanosleep => 35,
            Sys::Getpid => 39,
            Sys::Socket => 41,
            Sys::Accept => 43,
            Sys::Recvfrom => 45,
            Sys::Recvmsg => 47,
            Sys::Shutdown => 48,
            Sys::Wait4 => 61,
            Sys::Fcntl => 72,
            Sys::RtSigtimedwait => 128,
            Sys::Futex => 202,
            Sys::RestartSyscall => 219,
            Sys::ClockNanosleep => 230,
            Sys::EpollWait => 232,
            Sys::Pselect6 => 270,
            Sys::Ppoll => 271,
            Sys::EpollPwait => 281,
            Sys::Accept4 => 288,
            Sys::Dup3 => 292,
            Sys::EpollPwait2 => 441,
            Sys::FutexTime64
            | Sys::ClockNanosleepTime64
            | Sys::PpollTime64
            | Sys::Pselect6Time64 => return None,
        })
    }

    fn set_call(r: &mut Regs, insn: u64, nr: i64, a: [u64; 6]) {
        r.rip = insn;
        r.rax = nr as u64;
        // -1 tells the kernel's signal path "not in a syscall": it must not rewind rip or reload
        // rax for a restart of whatever call the thread was in when we stopped it.
        r.orig_rax = u64::MAX;
        r.rdi = a[0];
        r.rsi = a[1];
        r.rdx = a[2];
        r.r10 = a[3];
        r.r8 = a[4];
        r.r9 = a[5];
    }

    fn result(r: &Regs) -> i64 {
        r.rax as i64
    }
    fn ip(r: &Regs) -> u64 {
        r.rip
    }
    fn sp(r: &Regs) -> u64 {
        r.rsp
    }
    fn nr_reg(r: &Regs) -> i64 {
        r.orig_rax as i64
    }
    fn set_nr_reg(r: &mut Regs, nr: i64) {
        r.orig_rax = nr as u64;
    }
    const RESTART_NR_AFTER_STOP: bool = false;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RegBlock;

    #[test]
    fn set_call_places_number_args_and_ip() {
        let mut r = Regs {
            rax: (-512i64) as u64, // -ERESTARTSYS of an interrupted call
            orig_rax: 202,
            rip: 0x1000,
            rsp: 0x7ff0,
            ..Default::default()
        };
        X86_64::set_call(&mut r, 0xdead0, 3, [97, 2, 3, 4, 5, 6]);
        assert_eq!(
            (
                r.rip,
                r.rax,
                r.orig_rax as i64,
                r.rdi,
                r.rsi,
                r.rdx,
                r.r10,
                r.r8,
                r.r9
            ),
            (0xdead0, 3, -1, 97, 2, 3, 4, 5, 6)
        );
        assert_eq!(r.rsp, 0x7ff0, "stack untouched");
        r.rax = (-9i64) as u64;
        assert_eq!(X86_64::result(&r), -9);
    }

    #[test]
    fn layout_matches_kernel_offsets() {
        // offsetof(struct user_regs_struct, orig_rax) == 15*8 (ORIG_RAX in ptrace-abi.h).
        let r = Regs {
            orig_rax: 0x1122,
            ..Default::default()
        };
        let b = r.to_bytes();
        assert_eq!(
            u64::from_ne_bytes(b[15 * 8..16 * 8].try_into().unwrap()),
            0x1122
        );
        assert_eq!(r.fields()[16].0, "rip");
    }
}
