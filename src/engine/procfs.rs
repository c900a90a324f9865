//! What the engine reads from /proc, as pure parsers tested on literal text, plus the few
//! functions that read the files.

use super::EngineError;
use fdclose_arch::{AbiKind, Sys};

/// The fields of /proc/PID/status the engine decides on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub name: String,
    /// First letter of `State:` (R, S, D, T, t, Z, X, I).
    pub state: char,
    pub tgid: i32,
    pub tracer_pid: i32,
    /// Real, effective, saved, filesystem uids.
    pub uids: [u32; 4],
    /// `Seccomp:` 0 none, 1 strict, 2 filter.
    pub seccomp: u8,
    pub cap_eff: u64,
}

pub fn parse_status(text: &str) -> Status {
    let mut s = Status::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "Name" => s.name = v.to_string(),
            "State" => s.state = v.chars().next().unwrap_or('?'),
            "Tgid" => s.tgid = v.parse().unwrap_or(0),
            "TracerPid" => s.tracer_pid = v.parse().unwrap_or(0),
            "Uid" => {
                for (i, u) in v.split_whitespace().take(4).enumerate() {
                    s.uids[i] = u.parse().unwrap_or(u32::MAX);
                }
            }
            "Seccomp" => s.seccomp = v.parse().unwrap_or(0),
            "CapEff" => s.cap_eff = u64::from_str_radix(v, 16).unwrap_or(0),
            _ => {}
        }
    }
    s
}

/// PF_KTHREAD in the `flags` field (9th) of /proc/PID/stat (include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;

/// Whether /proc/PID/stat describes a kernel thread. The comm field may contain spaces and
/// parentheses, so fields are counted from the last ')'.
pub fn stat_is_kthread(stat: &str) -> bool {
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    // After ')': state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9).
    rest.split_whitespace()
        .nth(6)
        .and_then(|f| f.parse::<u64>().ok())
        .is_some_and(|f| f & PF_KTHREAD != 0)
}

/// What /proc/PID/task/TID/syscall says the thread is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskSyscall {
    /// Running (on a CPU) when read.
    Running,
    /// Blocked, but not in a system call (e.g. a page fault, or stopped in user space).
    NotInSyscall,
    /// Blocked in system call `nr`.
    In { nr: i64 },
}

pub fn parse_task_syscall(text: &str) -> Option<TaskSyscall> {
    let first = text.split_whitespace().next()?;
    Some(match first {
        "running" => TaskSyscall::Running,
        "-1" => TaskSyscall::NotInSyscall,
        n => TaskSyscall::In {
            nr: n.parse().ok()?,
        },
    })
}

impl TaskSyscall {
    /// How good a thread in this state is for injection (higher is better), for a thread of
    /// `abi`. A call that returns EINTR after any stop (epoll_wait) is the worst choice: the
    /// program would see that EINTR because of us.
    pub fn injection_rank(self, abi: AbiKind) -> u8 {
        use fdclose_arch::Resumption;
        match self {
            TaskSyscall::In { nr } => match abi.sys_of(nr).map(Sys::resumption) {
                Some(Resumption::Restarts) => 3,
                None => 2,
                Some(Resumption::Eintr) => 0,
            },
            TaskSyscall::NotInSyscall | TaskSyscall::Running => 1,
        }
    }

    pub fn describe(self, abi: AbiKind) -> String {
        match self {
            TaskSyscall::Running => "running".into(),
            TaskSyscall::NotInSyscall => "not in a system call".into(),
            TaskSyscall::In { nr } => match abi.sys_of(nr) {
                Some(s) => format!("{s:?} ({nr})").to_lowercase(),
                None => format!("syscall {nr}"),
            },
        }
    }
}

/// One line of /proc/PID/maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub path: String,
}

impl Mapping {
    pub fn executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }
    pub fn readable(&self) -> bool {
        self.perms.as_bytes().first() == Some(&b'r')
    }
}

pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (range, perms) = (w.next()?, w.next()?);
            let (_off, _dev, _ino) = (w.next()?, w.next()?, w.next()?);
            let path = w.collect::<Vec<_>>().join(" ");
            let (s, e) = range.split_once('-')?;
            Some(Mapping {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                perms: perms.to_string(),
                path,
            })
        })
        .collect()
}

/// (major, minor, patch) of a kernel release string such as "6.18.0-1-amd64" or "3.10.0-1160.el7".
pub fn parse_release(rel: &str) -> Option<(u32, u32, u32)> {
    let mut it = rel
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>());
    let major = it.next()?.ok()?;
    let minor = it.next()?.ok()?;
    let patch = it.next().and_then(|p| p.ok()).unwrap_or(0);
    Some((major, minor, patch))
}

pub fn kernel_release() -> Option<(u32, u32, u32)> {
    let u = nix::sys::utsname::uname().ok()?;
    parse_release(&u.release().to_string_lossy())
}

/// What decides whether the kernel lets us ptrace a process (kernel/ptrace.c
/// __ptrace_may_access, Yama), gathered so the reason for a refusal can be named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtraceFacts {
    pub our_euid: u32,
    pub our_cap_eff: u64,
    pub target_uids: [u32; 4],
    /// /proc/sys/kernel/yama/ptrace_scope, `None` without Yama.
    pub yama_scope: Option<u8>,
    /// The target descends from us (Yama scope 1 allows that).
    pub is_descendant: bool,
    /// Target's user namespace differs from ours.
    pub other_userns: bool,
}

const CAP_SYS_PTRACE: u64 = 1 << 19;

impl PtraceFacts {
    /// The reason ptrace will be (or was) refused, or `None` if nothing we know of forbids it.
    pub fn denial(&self) -> Option<String> {
        let cap = self.our_cap_eff & CAP_SYS_PTRACE != 0;
        match self.yama_scope {
            Some(3) => {
                return Some(
                    "Yama forbids all ptrace on this system (kernel.yama.ptrace_scope = 3; only a \
                     reboot lowers it)"
                        .into(),
                )
            }
            Some(2) if !cap => {
                return Some(
                    "Yama allows ptrace only with CAP_SYS_PTRACE (kernel.yama.ptrace_scope = 2): \
                     run fdclose as root"
                        .into(),
                )
            }
            Some(1) if !cap && !self.is_descendant => {
                return Some(
                    "Yama allows ptrace only of your own descendants (kernel.yama.ptrace_scope = \
                     1): run fdclose as root or with CAP_SYS_PTRACE"
                        .into(),
                )
            }
            _ => {}
        }
        if !cap && self.target_uids[..3].iter().any(|&u| u != self.our_euid) {
            return Some(format!(
                "it runs as uid {} and fdclose as uid {} without CAP_SYS_PTRACE: run fdclose as \
                 root or as that user",
                self.target_uids[0], self.our_euid
            ));
        }
        if self.other_userns && !cap {
            return Some(
                "it lives in another user namespace (a container): run fdclose from the host as \
                 root"
                    .into(),
            );
        }
        None
    }
}

pub fn read_proc(pid: i32, rel: &str) -> Result<String, EngineError> {
    let path = format!("/proc/{pid}/{rel}");
    std::fs::read_to_string(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            EngineError::NoSuchProcess { pid }
        } else {
            EngineError::Proc { pid, path, source }
        }
    })
}

pub fn status(pid: i32) -> Result<Status, EngineError> {
    read_proc(pid, "status").map(|t| parse_status(&t))
}

/// The process has exited: /proc has no status for it any more, or it is a zombie (Z) or dead (X)
/// whose status is still readable until its parent reaps it. ptrace answers ESRCH in all three.
pub fn gone(pid: i32) -> bool {
    status(pid).map_or(true, |s| matches!(s.state, 'Z' | 'X'))
}

pub fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Thread ids of `pid`, sorted.
pub fn tids(pid: i32) -> Result<Vec<i32>, EngineError> {
    let path = format!("/proc/{pid}/task");
    let rd = std::fs::read_dir(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            EngineError::NoSuchProcess { pid }
        } else {
            EngineError::Proc { pid, path, source }
        }
    })?;
    let mut v: Vec<i32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// The state letter of thread `tid` (from /proc/PID/task/TID/stat), `None` if it is gone.
pub fn task_state(pid: i32, tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    stat_state(&stat)
}

/// The state letter of a /proc stat line (the field after the last ')').
pub fn stat_state(stat: &str) -> Option<char> {
    stat.rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next())
}

/// Threads of `pid` that have not exited (a leader that called pthread_exit stays listed as a
/// zombie while the others run).
pub fn live_tids(pid: i32) -> Result<Vec<i32>, EngineError> {
    Ok(tids(pid)?
        .into_iter()
        .filter(|&t| task_state(pid, t).is_some_and(|c| !matches!(c, 'Z' | 'X')))
        .collect())
}

pub fn task_syscall(pid: i32, tid: i32) -> Option<TaskSyscall> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
        .ok()
        .and_then(|t| parse_task_syscall(&t))
}

/// The ABI of an ELF executable from its first 20 bytes (e_ident class and e_machine), as far
/// as fdclose knows it.
pub fn abi_of_elf_header(h: &[u8]) -> Option<AbiKind> {
    if h.len() < 20 || &h[..4] != b"\x7fELF" {
        return None;
    }
    let machine = u16::from_le_bytes([h[18], h[19]]);
    match (h[4], machine) {
        (1, 3) => Some(AbiKind::I386),      // ELFCLASS32, EM_386
        (2, 62) => Some(AbiKind::X86_64),   // ELFCLASS64, EM_X86_64
        (2, 183) => Some(AbiKind::Aarch64), // EM_AARCH64
        (2, 243) => Some(AbiKind::Riscv64), // EM_RISCV
        _ => None,
    }
}

/// The ABI of the program `pid` runs (before any thread is stopped to ask the kernel).
pub fn exe_abi(pid: i32) -> Option<AbiKind> {
    use std::io::Read;
    let mut h = [0u8; 20];
    std::fs::File::open(format!("/proc/{pid}/exe"))
        .ok()?
        .read_exact(&mut h)
        .ok()?;
    abi_of_elf_header(&h)
}

/// Whether `pid` descends from us (walking PPid up to 1).
pub fn descends_from_us(pid: i32) -> bool {
    let me = std::process::id() as i32;
    let mut p = pid;
    for _ in 0..256 {
        let Ok(t) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
            return false;
        };
        let ppid = t
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse::<i32>().ok())
            .unwrap_or(0);
        if ppid == me {
            return true;
        }
        if ppid <= 1 {
            return false;
        }
        p = ppid;
    }
    false
}

pub fn ptrace_facts(pid: i32, target: &Status) -> PtraceFacts {
    let me = parse_status(&std::fs::read_to_string("/proc/self/status").unwrap_or_default());
    let ns = |p: &str| std::fs::read_link(p).ok();
    PtraceFacts {
        our_euid: nix::unistd::geteuid().as_raw(),
        our_cap_eff: me.cap_eff,
        target_uids: target.uids,
        yama_scope: std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        is_descendant: descends_from_us(pid),
        other_userns: ns(&format!("/proc/{pid}/ns/user")) != ns("/proc/self/ns/user"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tjava\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\n\
Pid:\t4242\nPPid:\t1\nTracerPid:\t812\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n\
CapEff:\t000001ffffffffff\nNoNewPrivs:\t0\nSeccomp:\t2\nSeccomp_filters:\t1\n";

    #[test]
    fn status_fields() {
        let s = parse_status(STATUS);
        assert_eq!(s.name, "java");
        assert_eq!(s.state, 'S');
        assert_eq!(s.tgid, 4242);
        assert_eq!(s.tracer_pid, 812);
        assert_eq!(s.uids, [1000; 4]);
        assert_eq!(s.seccomp, 2);
        assert_eq!(s.cap_eff, 0x1ff_ffff_ffff);
    }

    #[test]
    fn kthread_flag_counted_after_the_last_paren() {
        // kthreadd: flags 2129984 = 0x208040 has PF_KTHREAD.
        let k = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 7";
        assert!(stat_is_kthread(k));
        let u = "77 (a) b (c)) S 1 77 77 0 -1 4194560 120 0 0 0 1 0 0 0 20 0 1 0 9";
        assert!(!stat_is_kthread(u));
    }

    #[test]
    fn stat_state_letter() {
        assert_eq!(stat_state("7 (a) b) Z 1 7"), Some('Z'));
        assert_eq!(stat_state("7 (x) S 1"), Some('S'));
        assert_eq!(stat_state("garbage"), None);
    }

    #[test]
    fn task_syscall_lines() {
        assert_eq!(parse_task_syscall("running\n"), Some(TaskSyscall::Running));
        assert_eq!(
            parse_task_syscall("-1 0x7ffd2a1c 0x7f01\n"),
            Some(TaskSyscall::NotInSyscall)
        );
        let futex = "202 0x7f3c 0x80 0x2 0x0 0x0 0x0 0x7ffd 0x7f3c\n";
        assert_eq!(parse_task_syscall(futex), Some(TaskSyscall::In { nr: 202 }));
        assert_eq!(parse_task_syscall(""), None);
        let x = AbiKind::X86_64;
        assert!(
            TaskSyscall::In { nr: 202 }.injection_rank(x)
                > TaskSyscall::In { nr: 232 }.injection_rank(x),
            "futex beats epoll_wait"
        );
        assert!(
            TaskSyscall::Running.injection_rank(x) > TaskSyscall::In { nr: 232 }.injection_rank(x)
        );
        assert_eq!(TaskSyscall::In { nr: 232 }.describe(x), "epollwait (232)");
    }

    #[test]
    fn maps_lines() {
        let text =
            "7ffd1b7e5000-7ffd1b7e7000 r-xp 00000000 00:00 0                          [vdso]\n\
7f0e1c028000-7f0e1c1bd000 r-xp 00028000 08:01 1835   /usr/lib/x86_64-linux-gnu/libc.so.6\n\
7f0e1c1bd000-7f0e1c215000 r--p 001bd000 08:01 1835   /usr/lib/with space/x.so\n\
55d0c4a00000-55d0c4a21000 rw-p 00000000 00:00 0 \n";
        let m = parse_maps(text);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].path, "[vdso]");
        assert!(m[0].executable() && m[0].readable());
        assert_eq!((m[0].start, m[0].end), (0x7ffd1b7e5000, 0x7ffd1b7e7000));
        assert_eq!(m[2].path, "/usr/lib/with space/x.so");
        assert!(!m[2].executable());
        assert_eq!(m[3].path, "");
    }

    #[test]
    fn elf_headers() {
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 1;
        h[18] = 3;
        assert_eq!(abi_of_elf_header(&h), Some(AbiKind::I386));
        h[4] = 2;
        h[18] = 62;
        assert_eq!(abi_of_elf_header(&h), Some(AbiKind::X86_64));
        h[18] = 183;
        assert_eq!(abi_of_elf_header(&h), Some(AbiKind::Aarch64));
        h[18] = 40; // EM_ARM
        assert_eq!(abi_of_elf_header(&h), None);
        assert_eq!(abi_of_elf_header(b"#!/bin/sh"), None);
        let me = std::process::id() as i32;
        assert_eq!(
            exe_abi(me),
            Some(<fdclose_arch::Native as fdclose_arch::Abi>::KIND)
        );
    }

    #[test]
    fn releases() {
        assert_eq!(parse_release("6.18.0-1-amd64"), Some((6, 18, 0)));
        assert_eq!(parse_release("3.10.0-1160.el7.x86_64"), Some((3, 10, 0)));
        assert_eq!(parse_release("6.6"), Some((6, 6, 0)));
        assert_eq!(parse_release("x"), None);
    }

    fn facts() -> PtraceFacts {
        PtraceFacts {
            our_euid: 1000,
            our_cap_eff: 0,
            target_uids: [1000; 4],
            yama_scope: None,
            is_descendant: false,
            other_userns: false,
        }
    }

    #[test]
    fn ptrace_denial_reasons() {
        assert_eq!(facts().denial(), None);
        let f = PtraceFacts {
            yama_scope: Some(1),
            ..facts()
        };
        assert!(f.denial().unwrap().contains("ptrace_scope = 1"));
        let f = PtraceFacts {
            yama_scope: Some(1),
            is_descendant: true,
            ..facts()
        };
        assert_eq!(f.denial(), None);
        let f = PtraceFacts {
            yama_scope: Some(2),
            our_cap_eff: CAP_SYS_PTRACE,
            ..facts()
        };
        assert_eq!(f.denial(), None);
        let f = PtraceFacts {
            yama_scope: Some(3),
            our_euid: 0,
            our_cap_eff: !0,
            ..facts()
        };
        assert!(f.denial().unwrap().contains("= 3"));
        let f = PtraceFacts {
            target_uids: [0, 0, 0, 0],
            ..facts()
        };
        assert!(f.denial().unwrap().contains("uid 0"));
        let f = PtraceFacts {
            other_userns: true,
            ..facts()
        };
        assert!(f.denial().unwrap().contains("namespace"));
    }
}
