//! i386 (also 32-bit programs on an x86_64 kernel): `int 0x80`, number in eax, arguments ebx ecx
//! edx esi edi ebp, result in eax (sign-extended to 64 bits here).
//!
//! Numbers: arch/x86/entry/syscalls/syscall_32.tbl in the kernel source (checked against the
//! installed asm/unistd_32.h by this crate's tests). socket (359) and shutdown (373) exist as
//! direct calls only since Linux 4.3; before that they go through socketcall (102), whose
//! arguments live in memory: see [`direct_socket_calls`].

use crate::{reg_block, Abi, AbiKind, Sys};

reg_block!(
    /// `struct user_regs_struct` of arch/x86/include/asm/user_32.h (what NT_PRSTATUS holds for a
    /// compat thread on an x86_64 kernel: 17 words of 32 bits).
    Regs,
    u32,
    [ebx, ecx, edx, esi, edi, ebp, eax, xds, xes, xfs, xgs, orig_eax, eip, xcs, eflags, esp, xss]
);

/// socketcall(2), the only way into the socket calls for i386 programs on kernels before 4.3.
pub const SOCKETCALL: i64 = 102;

/// Whether a kernel of this (major, minor) version has direct socket/shutdown calls for i386.
pub fn direct_socket_calls(major: u32, minor: u32) -> bool {
    (major, minor) >= (4, 3)
}

/// The `cs` selector value of a 32-bit user thread on an x86_64 kernel (__USER32_CS).
pub const USER32_CS: u64 = 0x23;

pub struct I386;

impl Abi for I386 {
    const KIND: AbiKind = AbiKind::I386;
    type Regs = Regs;
    const SYSCALL_INSN: &'static [u8] = &[
        0xcd, // INT imm8
        0x80, // vector 0x80: the 32-bit system call gate
    ];
    const INSN_ALIGN: usize = 1;

    fn nr(sys: Sys) -> Option<i64> {
        Some(match sys {
            Sys::RestartSyscall => 0,
            Sys::Read => 3,
            Sys::Close => 6,
            Sys::Getpid => 20,
            Sys::Pause => 29,
            Sys::Fcntl => 55,
            Sys::Wait4 => 114,
            Sys::Select => 142, // _newselect
            Sys::Nanosleep => 162,
            Sys::Poll => 168,
            Sys::RtSigprocmask => 175,
            Sys::RtSigtimedwait => 177,
            Sys::Futex => 240,
            Sys::EpollWait => 256,
            Sys::ClockNanosleep => 267,
            Sys::Pselect6 => 308,
            Sys::Ppoll => 309,
            Sys::EpollPwait => 319,
            Sys::Dup3 => 330,
            Sys::Socket => 359,
            Sys::Accept4 => 364,
            Sys::Recvfrom => 371,
            Sys::Recvmsg => 372,
            Sys::Shutdown => 373,
            Sys::ClockNanosleepTime64 => 407,
            Sys::Pselect6Time64 => 413,
            Sys::PpollTime64 => 414,
            Sys::FutexTime64 => 422,
            Sys::EpollPwait2 => 441,
            // i386 never had a direct accept(2): accept4 or socketcall.
            Sys::Accept => return None,
        })
    }

    fn set_call(r: &mut Regs, insn: u64, nr: i64, a: [u64; 6]) {
        r.eip = insn as u32;
        r.eax = nr as u32;
        // As on x86_64: no restart of the call we interrupted (the kernel sign-extends this).
        r.orig_eax = u32::MAX;
        r.ebx = a[0] as u32;
        r.ecx = a[1] as u32;
        r.edx = a[2] as u32;
        r.esi = a[3] as u32;
        r.edi = a[4] as u32;
        r.ebp = a[5] as u32;
    }

    fn result(r: &Regs) -> i64 {
        r.eax as i32 as i64
    }
    fn ip(r: &Regs) -> u64 {
        r.eip as u64
    }
    fn sp(r: &Regs) -> u64 {
        r.esp as u64
    }
    fn nr_reg(r: &Regs) -> i64 {
        r.orig_eax as i32 as i64
    }
    fn set_nr_reg(r: &mut Regs, nr: i64) {
        r.orig_eax = nr as u32;
    }
    const RESTART_NR_AFTER_STOP: bool = false;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_call_uses_the_32bit_argument_registers() {
        let mut r = Regs {
            eax: (-4i32) as u32,
            orig_eax: 240,
            eip: 0xf7f0_0000,
            ebp: 77,
            ..Default::default()
        };
        I386::set_call(&mut r, 0xf7fc_1234, 373, [5, 2, 0, 0, 0, 9]);
        assert_eq!(
            (r.eip, r.eax, r.orig_eax, r.ebx, r.ecx, r.ebp),
            (0xf7fc_1234, 373, u32::MAX, 5, 2, 9)
        );
        r.eax = (-9i32) as u32;
        assert_eq!(I386::result(&r), -9, "sign-extended");
        r.eax = 0xf000_0000;
        assert_eq!(I386::result(&r), 0xf000_0000u32 as i32 as i64);
    }

    #[test]
    fn socket_calls_need_linux_4_3() {
        assert!(!direct_socket_calls(3, 10));
        assert!(!direct_socket_calls(4, 2));
        assert!(direct_socket_calls(4, 3));
        assert!(direct_socket_calls(6, 1));
    }
}
