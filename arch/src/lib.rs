//! Per-architecture facts for injecting system calls into another process with ptrace: register
//! layouts (`#[repr(C)]` structs of our own, so every ABI compiles and is tested on any host),
//! syscall numbers, the syscall instruction's bytes, and which register carries what.
//!
//! One file per ABI, each implementing [`Abi`]. The engine works on a thread whose ABI it learns
//! at run time (an x86_64 kernel runs i386 programs too), so [`AbiKind`] and [`AnyRegs`] dispatch
//! to the right implementation. The host's native ABI is chosen in exactly one place below.

pub mod aarch64;
pub mod i386;
pub mod riscv64;
pub mod x86_64;

use std::fmt;

/// The system calls fdclose injects or needs to recognise. Call sites name these, never numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sys {
    Close,
    Shutdown,
    Dup3,
    Socket,
    Fcntl,
    Getpid,
    RestartSyscall,
    RtSigprocmask,
    // Calls a thread may be blocked in (read from /proc/PID/task/TID/syscall) when we pick the
    // injection thread.
    Read,
    Futex,
    Nanosleep,
    ClockNanosleep,
    Accept,
    Accept4,
    Poll,
    Ppoll,
    Select,
    Pselect6,
    Wait4,
    Recvfrom,
    Recvmsg,
    EpollWait,
    EpollPwait,
    EpollPwait2,
    RtSigtimedwait,
    Pause,
    // 32-bit ABIs only: the 64-bit-time variants glibc >= 2.34 uses there.
    FutexTime64,
    ClockNanosleepTime64,
    PpollTime64,
    Pselect6Time64,
}

/// What an interrupted blocking call does when its thread resumes after a ptrace stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resumption {
    /// The kernel restarts it transparently (futex, read, accept, nanosleep...).
    Restarts,
    /// It returns EINTR to the program after any stop (epoll_wait, sigtimedwait...: signal(7)).
    Eintr,
}

impl Sys {
    /// Calls signal(7) lists as failing with EINTR after a stop even without a handler.
    pub fn resumption(self) -> Resumption {
        match self {
            Sys::EpollWait
            | Sys::EpollPwait
            | Sys::EpollPwait2
            | Sys::RtSigtimedwait
            | Sys::Pause => Resumption::Eintr,
            _ => Resumption::Restarts,
        }
    }

    /// Every variant, for reverse look-ups (number → call).
    pub const ALL: [Sys; 30] = [
        Sys::Close,
        Sys::Shutdown,
        Sys::Dup3,
        Sys::Socket,
        Sys::Fcntl,
        Sys::Getpid,
        Sys::RestartSyscall,
        Sys::RtSigprocmask,
        Sys::Read,
        Sys::Futex,
        Sys::Nanosleep,
        Sys::ClockNanosleep,
        Sys::Accept,
        Sys::Accept4,
        Sys::Poll,
        Sys::Ppoll,
        Sys::Select,
        Sys::Pselect6,
        Sys::Wait4,
        Sys::Recvfrom,
        Sys::Recvmsg,
        Sys::EpollWait,
        Sys::EpollPwait,
        Sys::EpollPwait2,
        Sys::RtSigtimedwait,
        Sys::Pause,
        Sys::FutexTime64,
        Sys::ClockNanosleepTime64,
        Sys::PpollTime64,
        Sys::Pselect6Time64,
    ];
}

/// One ABI: how a thread of that kind makes a system call.
pub trait Abi {
    const KIND: AbiKind;
    /// Register block as PTRACE_GETREGSET(NT_PRSTATUS) returns it for a thread of this ABI.
    type Regs: Copy + Default + fmt::Debug + PartialEq + RegBlock;
    /// Bytes of the instruction that enters the kernel.
    const SYSCALL_INSN: &'static [u8];
    /// Alignment the instruction must have to be executable where we find it.
    const INSN_ALIGN: usize;
    /// The call's number in this ABI's table, `None` if the ABI has no such call.
    fn nr(sys: Sys) -> Option<i64>;
    /// Prepare `regs` so that resuming at `insn` runs syscall `nr` with `args`, with the kernel's
    /// restart logic switched off for the registers we came from.
    fn set_call(regs: &mut Self::Regs, insn: u64, nr: i64, args: [u64; 6]);
    /// The value the call returned (sign-extended): -4095..=-1 is -errno.
    fn result(regs: &Self::Regs) -> i64;
    fn ip(regs: &Self::Regs) -> u64;
    fn sp(regs: &Self::Regs) -> u64;
    /// Where the kernel reads the call number when the thread enters a call (x86: orig_ax as a
    /// syscall stop shows it; aarch64 x8; riscv64 a7).
    fn nr_reg(regs: &Self::Regs) -> i64;
    fn set_nr_reg(regs: &mut Self::Regs, nr: i64);
    /// True where the kernel's signal path sets the number for a `-ERESTART_RESTARTBLOCK`
    /// restart (restart_syscall) only *after* the ptrace stop (arm64 and riscv do_signal: pc is
    /// rewound before get_signal(), `setup_restart_syscall()` runs after it and only if pc is
    /// still the rewound one). Registers saved at the stop then name the interrupted call itself,
    /// which would run again from the start (a nanosleep sleeping its whole time again).
    const RESTART_NR_AFTER_STOP: bool;
}

/// A `#[repr(C)]` block of equally sized integer registers, convertible to and from the bytes
/// ptrace exchanges, with names for the journal.
pub trait RegBlock: Sized {
    /// Size in bytes (the iov_len PTRACE_GETREGSET reports for this ABI).
    const SIZE: usize;
    fn from_bytes(b: &[u8]) -> Option<Self>;
    fn to_bytes(&self) -> Vec<u8>;
    /// (name, value) of every register, in layout order.
    fn fields(&self) -> Vec<(&'static str, u64)>;
    /// Set a register by name (for restoring from a journal). False if no such name.
    fn set_field(&mut self, name: &str, value: u64) -> bool;
}

/// Declares a register struct whose fields all have one integer type, with its byte conversions.
macro_rules! reg_block {
    ($(#[$m:meta])* $name:ident, $t:ty, [$($f:ident),* $(,)?]) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name { $(pub $f: $t),* }

        impl $crate::RegBlock for $name {
            const SIZE: usize = std::mem::size_of::<$name>();
            fn from_bytes(b: &[u8]) -> Option<Self> {
                const W: usize = std::mem::size_of::<$t>();
                if b.len() != Self::SIZE { return None; }
                let mut it = b.chunks_exact(W).map(|c| <$t>::from_ne_bytes(c.try_into().unwrap()));
                Some($name { $($f: it.next()?),* })
            }
            fn to_bytes(&self) -> Vec<u8> {
                let mut v = Vec::with_capacity(Self::SIZE);
                $(v.extend_from_slice(&self.$f.to_ne_bytes());)*
                v
            }
            fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($f), self.$f as u64)),*]
            }
            fn set_field(&mut self, name: &str, value: u64) -> bool {
                match name {
                    $(stringify!($f) => { self.$f = value as $t; true })*
                    _ => false,
                }
            }
        }
    };
}
pub(crate) use reg_block;

/// The ABIs fdclose knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AbiKind {
    X86_64,
    /// 32-bit x86 programs on an x86_64 kernel (compat, `int 0x80`).
    I386,
    Aarch64,
    Riscv64,
}

/// Runs `$body` with `$A` bound to the ABI type of `$kind`.
macro_rules! with_abi {
    ($kind:expr, $A:ident => $body:expr) => {
        match $kind {
            AbiKind::X86_64 => {
                type $A = x86_64::X86_64;
                $body
            }
            AbiKind::I386 => {
                type $A = i386::I386;
                $body
            }
            AbiKind::Aarch64 => {
                type $A = aarch64::Aarch64;
                $body
            }
            AbiKind::Riscv64 => {
                type $A = riscv64::Riscv64;
                $body
            }
        }
    };
}

impl AbiKind {
    pub fn name(self) -> &'static str {
        match self {
            AbiKind::X86_64 => "x86_64",
            AbiKind::I386 => "i386",
            AbiKind::Aarch64 => "aarch64",
            AbiKind::Riscv64 => "riscv64",
        }
    }
    pub fn nr(self, sys: Sys) -> Option<i64> {
        with_abi!(self, A => A::nr(sys))
    }
    /// Which known call a number read from /proc/PID/task/TID/syscall is.
    pub fn sys_of(self, nr: i64) -> Option<Sys> {
        Sys::ALL.into_iter().find(|s| self.nr(*s) == Some(nr))
    }
    pub fn syscall_insn(self) -> &'static [u8] {
        with_abi!(self, A => A::SYSCALL_INSN)
    }
    pub fn insn_align(self) -> usize {
        with_abi!(self, A => A::INSN_ALIGN)
    }
    /// Size of the NT_PRSTATUS register block for this ABI.
    pub fn regs_size(self) -> usize {
        with_abi!(self, A => <A as Abi>::Regs::SIZE)
    }
    pub fn regs_from_bytes(self, b: &[u8]) -> Option<AnyRegs> {
        Some(match self {
            AbiKind::X86_64 => AnyRegs::X86_64(x86_64::Regs::from_bytes(b)?),
            AbiKind::I386 => AnyRegs::I386(i386::Regs::from_bytes(b)?),
            AbiKind::Aarch64 => AnyRegs::Aarch64(aarch64::Regs::from_bytes(b)?),
            AbiKind::Riscv64 => AnyRegs::Riscv64(riscv64::Regs::from_bytes(b)?),
        })
    }
    /// The ABIs a thread may have on a kernel of this host's architecture, told apart by the
    /// size of the register block the kernel hands back.
    pub fn on_host() -> &'static [AbiKind] {
        native::HOST_ABIS
    }
    /// The ABI of a thread whose NT_PRSTATUS block is `len` bytes long, on this host.
    pub fn from_regset_len(len: usize) -> Option<AbiKind> {
        Self::on_host()
            .iter()
            .copied()
            .find(|k| k.regs_size() == len)
    }
}

impl fmt::Display for AbiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A thread's registers, of whichever ABI it has.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AnyRegs {
    X86_64(x86_64::Regs),
    I386(i386::Regs),
    Aarch64(aarch64::Regs),
    Riscv64(riscv64::Regs),
}

macro_rules! with_regs {
    ($regs:expr, $A:ident, $r:ident => $body:expr) => {
        match $regs {
            AnyRegs::X86_64($r) => {
                type $A = x86_64::X86_64;
                $body
            }
            AnyRegs::I386($r) => {
                type $A = i386::I386;
                $body
            }
            AnyRegs::Aarch64($r) => {
                type $A = aarch64::Aarch64;
                $body
            }
            AnyRegs::Riscv64($r) => {
                type $A = riscv64::Riscv64;
                $body
            }
        }
    };
}

impl AnyRegs {
    pub fn kind(&self) -> AbiKind {
        with_regs!(self, A, _r => A::KIND)
    }
    pub fn set_call(&mut self, insn: u64, nr: i64, args: [u64; 6]) {
        with_regs!(self, A, r => A::set_call(r, insn, nr, args))
    }
    pub fn result(&self) -> i64 {
        with_regs!(self, A, r => A::result(r))
    }
    pub fn ip(&self) -> u64 {
        with_regs!(self, A, r => A::ip(r))
    }
    pub fn sp(&self) -> u64 {
        with_regs!(self, A, r => A::sp(r))
    }
    pub fn nr_reg(&self) -> i64 {
        with_regs!(self, A, r => A::nr_reg(r))
    }
    pub fn set_nr_reg(&mut self, nr: i64) {
        with_regs!(self, A, r => A::set_nr_reg(r, nr))
    }
    /// See [`Abi::RESTART_NR_AFTER_STOP`].
    pub fn restart_nr_after_stop(&self) -> bool {
        with_regs!(self, A, _r => A::RESTART_NR_AFTER_STOP)
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        with_regs!(self, _A, r => r.to_bytes())
    }
    pub fn fields(&self) -> Vec<(&'static str, u64)> {
        with_regs!(self, _A, r => r.fields())
    }
    pub fn set_field(&mut self, name: &str, value: u64) -> bool {
        with_regs!(self, _A, r => r.set_field(name, value))
    }
}

/// Result of a system call as the kernel leaves it in the return register: -4095..=-1 is -errno.
pub fn errno_of(result: i64) -> Option<i32> {
    if (-4095..0).contains(&result) {
        Some(-result as i32)
    } else {
        None
    }
}

// The one place that looks at the host architecture.
#[cfg(target_arch = "x86_64")]
mod native {
    use super::AbiKind;
    pub type Native = super::x86_64::X86_64;
    pub const HOST_ABIS: &[AbiKind] = &[AbiKind::X86_64, AbiKind::I386];
}
#[cfg(target_arch = "aarch64")]
mod native {
    use super::AbiKind;
    pub type Native = super::aarch64::Aarch64;
    // 32-bit ARM (compat) programs are not supported: their 18-word block matches no ABI here.
    pub const HOST_ABIS: &[AbiKind] = &[AbiKind::Aarch64];
}
#[cfg(target_arch = "riscv64")]
mod native {
    use super::AbiKind;
    pub type Native = super::riscv64::Riscv64;
    pub const HOST_ABIS: &[AbiKind] = &[AbiKind::Riscv64];
}
#[cfg(target_arch = "x86")]
mod native {
    use super::AbiKind;
    pub type Native = super::i386::I386;
    pub const HOST_ABIS: &[AbiKind] = &[AbiKind::I386];
}
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "x86"
)))]
compile_error!("fdclose supports x86_64 (with i386 programs), aarch64 and riscv64 only");

/// The ABI of programs built for this host.
pub type Native = native::Native;

#[cfg(test)]
mod tests {
    use super::*;

    /// The native table agrees with the C library's numbers.
    #[test]
    // c_long is i32 on 32-bit hosts: the conversion is needed there.
    #[allow(clippy::useless_conversion)]
    fn native_numbers_match_libc() {
        let pairs: &[(Sys, libc::c_long)] = &[
            (Sys::Close, libc::SYS_close),
            (Sys::Shutdown, libc::SYS_shutdown),
            (Sys::Dup3, libc::SYS_dup3),
            (Sys::Socket, libc::SYS_socket),
            (Sys::Getpid, libc::SYS_getpid),
            (Sys::RestartSyscall, libc::SYS_restart_syscall),
            (Sys::RtSigprocmask, libc::SYS_rt_sigprocmask),
            (Sys::Read, libc::SYS_read),
            (Sys::Futex, libc::SYS_futex),
            (Sys::ClockNanosleep, libc::SYS_clock_nanosleep),
            (Sys::Accept4, libc::SYS_accept4),
            (Sys::Ppoll, libc::SYS_ppoll),
            (Sys::Pselect6, libc::SYS_pselect6),
            (Sys::Wait4, libc::SYS_wait4),
            (Sys::Recvfrom, libc::SYS_recvfrom),
            (Sys::Recvmsg, libc::SYS_recvmsg),
            (Sys::EpollPwait, libc::SYS_epoll_pwait),
            (Sys::RtSigtimedwait, libc::SYS_rt_sigtimedwait),
        ];
        for (sys, n) in pairs {
            assert_eq!(Native::nr(*sys), Some(i64::from(*n)), "{sys:?}");
        }
        #[cfg(target_pointer_width = "64")]
        assert_eq!(Native::nr(Sys::Fcntl), Some(i64::from(libc::SYS_fcntl)));
    }

    /// Every ABI's numbers agree with the kernel UAPI headers installed on this machine
    /// (linux-libc-dev ships all of them on any host).
    #[test]
    fn tables_match_installed_uapi_headers() {
        let x86_64 = parse_defines("/usr/include/x86_64-linux-gnu/asm/unistd_64.h");
        let i386 = parse_defines("/usr/include/x86_64-linux-gnu/asm/unistd_32.h");
        let generic = parse_defines("/usr/include/asm-generic/unistd.h");
        assert!(
            !x86_64.is_empty() && !i386.is_empty() && !generic.is_empty(),
            "linux-libc-dev headers missing: apt-get install linux-libc-dev"
        );
        for sys in Sys::ALL {
            let name = uapi_name(sys);
            for (kind, table) in [
                (AbiKind::X86_64, &x86_64),
                (AbiKind::I386, &i386),
                (AbiKind::Aarch64, &generic),
                (AbiKind::Riscv64, &generic),
            ] {
                let mut expect = table.get(name).copied();
                if kind == AbiKind::I386 && sys == Sys::Fcntl {
                    expect = i386.get("fcntl").copied();
                }
                if matches!(kind, AbiKind::Aarch64 | AbiKind::Riscv64) && sys == Sys::Fcntl {
                    expect = generic.get("3264_fcntl").copied();
                }
                // select(2) on i386 is _newselect; the old one takes a struct pointer.
                if kind == AbiKind::I386 && sys == Sys::Select {
                    expect = i386.get("_newselect").copied();
                }
                // asm-generic defines the time64 calls only when __BITS_PER_LONG == 32.
                if kind != AbiKind::I386 && name.ends_with("_time64") {
                    expect = None;
                }
                assert_eq!(kind.nr(sys), expect, "{kind} {sys:?} ({name})");
            }
        }
    }

    fn uapi_name(sys: Sys) -> &'static str {
        match sys {
            Sys::Close => "close",
            Sys::Shutdown => "shutdown",
            Sys::Dup3 => "dup3",
            Sys::Socket => "socket",
            Sys::Fcntl => "fcntl",
            Sys::Getpid => "getpid",
            Sys::RestartSyscall => "restart_syscall",
            Sys::RtSigprocmask => "rt_sigprocmask",
            Sys::Read => "read",
            Sys::Futex => "futex",
            Sys::Nanosleep => "nanosleep",
            Sys::ClockNanosleep => "clock_nanosleep",
            Sys::Accept => "accept",
            Sys::Accept4 => "accept4",
            Sys::Poll => "poll",
            Sys::Ppoll => "ppoll",
            Sys::Select => "select",
            Sys::Pselect6 => "pselect6",
            Sys::Wait4 => "wait4",
            Sys::Recvfrom => "recvfrom",
            Sys::Recvmsg => "recvmsg",
            Sys::EpollWait => "epoll_wait",
            Sys::EpollPwait => "epoll_pwait",
            Sys::EpollPwait2 => "epoll_pwait2",
            Sys::RtSigtimedwait => "rt_sigtimedwait",
            Sys::Pause => "pause",
            Sys::FutexTime64 => "futex_time64",
            Sys::ClockNanosleepTime64 => "clock_nanosleep_time64",
            Sys::PpollTime64 => "ppoll_time64",
            Sys::Pselect6Time64 => "pselect6_time64",
        }
    }

    /// `#define __NR_name 123` and `#define __NR3264_name 123` lines of a UAPI header.
    fn parse_defines(path: &str) -> std::collections::HashMap<String, i64> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut m = std::collections::HashMap::new();
        for l in text.lines() {
            let mut w = l.split_whitespace();
            if w.next() != Some("#define") {
                continue;
            }
            let (Some(name), Some(val)) = (w.next(), w.next()) else {
                continue;
            };
            let Ok(v) = val.parse::<i64>() else { continue };
            if let Some(n) = name.strip_prefix("__NR3264_") {
                m.insert(format!("3264_{n}"), v);
            } else if let Some(n) = name.strip_prefix("__NR_") {
                m.insert(n.to_string(), v);
            }
        }
        m
    }

    #[test]
    fn errno_range() {
        assert_eq!(errno_of(-9), Some(9));
        assert_eq!(errno_of(-4095), Some(4095));
        assert_eq!(errno_of(-4096), None);
        assert_eq!(errno_of(0), None);
        assert_eq!(errno_of(7), None);
    }

    #[test]
    fn regset_lengths_tell_abis_apart() {
        assert_eq!(AbiKind::X86_64.regs_size(), 27 * 8);
        assert_eq!(AbiKind::I386.regs_size(), 17 * 4);
        assert_eq!(AbiKind::Aarch64.regs_size(), 34 * 8);
        assert_eq!(AbiKind::Riscv64.regs_size(), 32 * 8);
        for k in AbiKind::on_host() {
            assert_eq!(AbiKind::from_regset_len(k.regs_size()), Some(*k));
        }
    }

    #[test]
    fn bytes_round_trip_for_every_abi() {
        for kind in [
            AbiKind::X86_64,
            AbiKind::I386,
            AbiKind::Aarch64,
            AbiKind::Riscv64,
        ] {
            let n = kind.regs_size();
            let bytes: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let regs = kind.regs_from_bytes(&bytes).unwrap();
            assert_eq!(regs.kind(), kind);
            assert_eq!(regs.to_bytes(), bytes);
            assert!(kind.regs_from_bytes(&bytes[1..]).is_none());
            let mut r2 = regs;
            let (name, v) = regs.fields()[3];
            assert!(r2.set_field(name, v + 1));
            assert_ne!(r2, regs);
            assert!(!r2.set_field("nope", 0));
        }
    }

    #[test]
    fn eintr_calls_are_the_ones_signal7_lists() {
        assert_eq!(Sys::EpollWait.resumption(), Resumption::Eintr);
        assert_eq!(Sys::Futex.resumption(), Resumption::Restarts);
        assert_eq!(AbiKind::X86_64.sys_of(232), Some(Sys::EpollWait));
        assert_eq!(AbiKind::I386.sys_of(240), Some(Sys::Futex));
        assert_eq!(AbiKind::Aarch64.sys_of(22), Some(Sys::EpollPwait));
        assert_eq!(AbiKind::Riscv64.sys_of(9999), None);
    }
}
