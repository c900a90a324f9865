//! riscv64: `ecall`, number in a7, arguments a0..a5, result in a0.
//!
//! Numbers: include/uapi/asm-generic/unistd.h in the kernel source (shared with aarch64).
//!
//! Kernel bug: before commit ce4f78f1b53d ("riscv: signal: handle syscall restart before
//! get_signal", v6.9) the restart of an interrupted call was decided after
//! the ptrace stop from `orig_a0`, which an injected call overwrites: the program then sees
//! errno 512. [`restart_fixed`] tells whether a kernel release has the fix; without it the
//! engine never injects into a thread that is inside a system call.

use crate::{reg_block, Abi, AbiKind, Sys};

reg_block!(
    /// `struct user_regs_struct` of arch/riscv/include/uapi/asm/ptrace.h (pc, x1..x31).
    Regs,
    u64,
    [
        pc, ra, sp, gp, tp, t0, t1, t2, s0, s1, a0, a1, a2, a3, a4, a5, a6, a7, s2, s3, s4, s5, s6,
        s7, s8, s9, s10, s11, t3, t4, t5, t6,
    ]
);

/// Whether kernel release `major.minor.patch` surely restarts interrupted calls before the ptrace
/// stop. Only v6.9 and later count: stable backports (6.6.y) are not tracked by number, so older
/// series are treated as unfixed, which costs at most a different choice of thread.
pub fn restart_fixed(major: u32, minor: u32, _patch: u32) -> bool {
    (major, minor) >= (6, 9)
}

pub struct Riscv64;

impl Abi for Riscv64 {
    const KIND: AbiKind = AbiKind::Riscv64;
    type Regs = Regs;
    const SYSCALL_INSN: &'static [u8] = &[
        0x73, // ECALL = 0x00000073: opcode SYSTEM (0b1110011)
        0x00, //   rd = 0, funct3 = 0
        0x00, //   rs1 = 0
        0x00, //   imm12 = 0 (ECALL, not EBREAK)
    ];
    const INSN_ALIGN: usize = 4;

    fn nr(sys: Sys) -> Option<i64> {
        crate::aarch64::generic_nr(sys)
    }

    fn set_call(r: &mut Regs, insn: u64, nr: i64, a: [u64; 6]) {
        r.pc = insn;
        r.a7 = nr as u64;
        r.a0 = a[0];
        r.a1 = a[1];
        r.a2 = a[2];
        r.a3 = a[3];
        r.a4 = a[4];
        r.a5 = a[5];
    }

    fn result(r: &Regs) -> i64 {
        r.a0 as i64
    }
    fn ip(r: &Regs) -> u64 {
        r.pc
    }
    fn sp(r: &Regs) -> u64 {
        r.sp
    }
    fn nr_reg(r: &Regs) -> i64 {
        r.a7 as i64
    }
    fn set_nr_reg(r: &mut Regs, nr: i64) {
        r.a7 = nr as u64;
    }
    const RESTART_NR_AFTER_STOP: bool = true;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_call_uses_a7_and_a0_to_a5() {
        let mut r = Regs {
            ra: 0x99,
            sp: 0x8000,
            a6: 6,
            ..Default::default()
        };
        Riscv64::set_call(&mut r, 0x2_0000, 57, [97, 0, 0, 0, 0, 11]);
        assert_eq!((r.pc, r.a7, r.a0, r.a5), (0x2_0000, 57, 97, 11));
        assert_eq!((r.ra, r.sp, r.a6), (0x99, 0x8000, 6));
        r.a0 = (-9i64) as u64;
        assert_eq!(Riscv64::result(&r), -9);
        assert_eq!(Riscv64::SYSCALL_INSN, 0x0000_0073u32.to_le_bytes());
    }

    #[test]
    fn restart_fix_versions() {
        assert!(!restart_fixed(6, 1, 100));
        assert!(!restart_fixed(6, 6, 29));
        assert!(!restart_fixed(6, 6, 30), "backports are not assumed");
        assert!(restart_fixed(6, 9, 0));
        assert!(restart_fixed(6, 12, 1));
        assert!(!restart_fixed(5, 15, 200));
    }
}
