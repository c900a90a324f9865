//! pidfd: end a connection without stopping the process (pidfd_getfd + shutdown).
//!
//! `pidfd_getfd(2)` (Linux >= 5.6) duplicates a file descriptor of another process into ours, as
//! SCM_RIGHTS would: our copy refers to the very same open socket. `shutdown(2)` acts on the
//! socket, not on the fd, so shutting our copy ends the program's connection while the program
//! runs on untouched; closing our copy afterwards only drops our reference. The target is never
//! stopped, traced or signalled.
//!
//! The copy is also an atomic reference: once we hold it, `fstat` of OUR fd is the truth about
//! which socket we are about to shut, whatever the program does with its fd number meanwhile.

use crate::model::{Match, Proto};
use crate::plan::{How, Outcome};
use serde::Serialize;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Environment variable that makes fdclose behave as on a kernel without pidfd_getfd, so the
/// ptrace fallback can be tested on a modern kernel. A test hook, not an operator setting.
pub const FORCE_NO_PIDFD_ENV: &str = "FDCLOSE_FORCE_NO_PIDFD";

/// Why the pidfd path cannot be used at all on this system (as opposed to failing for one fd).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("this kernel has no {call} (Linux >= {since} needed)")]
    NoSyscall {
        call: &'static str,
        since: &'static str,
    },
    #[error("pidfd use disabled by {FORCE_NO_PIDFD_ENV}=1 (test hook)")]
    Forced,
    #[error("{call} failed unexpectedly while probing: {err}")]
    Probe { call: &'static str, err: String },
}

/// A failure of the pidfd calls for one fd of one process.
#[derive(Debug, thiserror::Error)]
pub enum PidfdError {
    #[error("pid {pid}: {0}", .source)]
    Unavailable {
        pid: i32,
        #[source]
        source: Unavailable,
    },
    #[error("pid {pid} no longer exists")]
    NoProcess { pid: i32 },
    #[error("pid {pid} has no fd {fd} any more")]
    NoFd { pid: i32, fd: i32 },
    #[error(
        "not allowed to take fd {fd} of pid {pid}: pidfd_getfd needs ptrace access to the process \
         (PTRACE_MODE_ATTACH_REALCREDS: same real uid and a dumpable process, or CAP_SYS_PTRACE; \
         Yama ptrace_scope and LSMs may forbid it too)"
    )]
    Permission { pid: i32, fd: i32 },
    #[error("pid {pid} fd {fd}: {call}: {source}")]
    Os {
        pid: i32,
        fd: i32,
        call: &'static str,
        #[source]
        source: io::Error,
    },
}

impl PidfdError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            PidfdError::Os { source, .. } => source.raw_os_error(),
            PidfdError::Permission { .. } => Some(libc::EPERM),
            PidfdError::NoProcess { .. } => Some(libc::ESRCH),
            PidfdError::NoFd { .. } => Some(libc::EBADF),
            PidfdError::Unavailable { .. } => Some(libc::ENOSYS),
        }
    }
}

fn errno() -> io::Error {
    io::Error::last_os_error()
}

/// `pidfd_open(pid, 0)`: a handle on the process that stays valid (and refers to that process
/// only) even if the pid is reused.
pub fn pidfd_open_raw(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1; no memory is passed.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_long, 0 as libc::c_long) };
    if r < 0 {
        return Err(errno());
    }
    // SAFETY: r is a freshly created fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// `pidfd_getfd(pidfd, targetfd, 0)`: our own duplicate of the target's fd (close-on-exec).
pub fn pidfd_getfd_raw(pidfd: &OwnedFd, target_fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes three integers and returns a new fd or -1; no memory is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_getfd,
            pidfd.as_raw_fd() as libc::c_long,
            target_fd as libc::c_long,
            0 as libc::c_long,
        )
    };
    if r < 0 {
        return Err(errno());
    }
    // SAFETY: r is a freshly created fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Whether pidfd_open + pidfd_getfd work here: tried on ourselves, so only the kernel (or the
/// test hook) can say no. ENOSYS means the kernel predates the call.
pub fn probe() -> Result<(), Unavailable> {
    if std::env::var_os(FORCE_NO_PIDFD_ENV).is_some_and(|v| v == "1") {
        return Err(Unavailable::Forced);
    }
    let me = std::process::id() as i32;
    let pfd = pidfd_open_raw(me).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS) => Unavailable::NoSyscall {
            call: "pidfd_open",
            since: "5.3",
        },
        _ => Unavailable::Probe {
            call: "pidfd_open",
            err: e.to_string(),
        },
    })?;
    pidfd_getfd_raw(&pfd, pfd.as_raw_fd())
        .map(drop)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSYS) => Unavailable::NoSyscall {
                call: "pidfd_getfd",
                since: "5.6",
            },
            _ => Unavailable::Probe {
                call: "pidfd_getfd",
                err: e.to_string(),
            },
        })
}

/// Our duplicate of fd `fd` of process `pid`.
pub fn take_fd(pid: i32, fd: i32) -> Result<OwnedFd, PidfdError> {
    let pfd = pidfd_open_raw(pid).map_err(|e| open_error(pid, fd, e))?;
    pidfd_getfd_raw(&pfd, fd).map_err(|e| getfd_error(pid, fd, e))
}

fn open_error(pid: i32, fd: i32, e: io::Error) -> PidfdError {
    match e.raw_os_error() {
        Some(libc::ESRCH) => PidfdError::NoProcess { pid },
        Some(libc::ENOSYS) => PidfdError::Unavailable {
            pid,
            source: Unavailable::NoSyscall {
                call: "pidfd_open",
                since: "5.3",
            },
        },
        _ => PidfdError::Os {
            pid,
            fd,
            call: "pidfd_open",
            source: e,
        },
    }
}

/// pidfd_getfd's errors in the operator's terms (kernel/pid.c: EBADF no such fd, ESRCH the
/// process is exiting, EPERM the ptrace access check said no).
fn getfd_error(pid: i32, fd: i32, e: io::Error) -> PidfdError {
    match e.raw_os_error() {
        Some(libc::EBADF) => PidfdError::NoFd { pid, fd },
        Some(libc::ESRCH) => PidfdError::NoProcess { pid },
        Some(libc::EPERM) => PidfdError::Permission { pid, fd },
        Some(libc::ENOSYS) => PidfdError::Unavailable {
            pid,
            source: Unavailable::NoSyscall {
                call: "pidfd_getfd",
                since: "5.6",
            },
        },
        _ => PidfdError::Os {
            pid,
            fd,
            call: "pidfd_getfd",
            source: e,
        },
    }
}

/// What one pidfd step saw, for the journal: identity and tuple read from OUR copy (the truth
/// once we hold it), the TCP state before and after, and the errno if a call said no.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ShutdownRecord {
    /// Inode our duplicate held (`st_ino` of our copy), when we got that far.
    pub ino_seen: Option<u64>,
    /// getsockname/getpeername of our copy.
    pub local: Option<String>,
    pub peer: Option<String>,
    /// TCP state before shutdown, read from our copy (TCP_INFO).
    pub state_before: Option<String>,
    pub state_after: Option<String>,
    pub errno: Option<i32>,
}

/// Shut the connection behind fd `m.fd` of `m.pid` through a duplicate, leaving the process
/// running and its fd open. `announce` runs right before shutdown(2), once the duplicate is known
/// to be the planned socket (the journal's `before` record); if it fails nothing is done.
/// Returns the step's outcome and what was seen.
///
/// `Err` only when pidfd is unavailable on this kernel: the caller then falls back to ptrace.
pub fn shutdown_step(
    m: &Match,
    how: How,
    announce: impl FnOnce(&ShutdownRecord) -> Result<(), String>,
) -> Result<(Outcome, ShutdownRecord), Unavailable> {
    let mut rec = ShutdownRecord::default();
    let Some(fd) = m.fd else {
        let o = Outcome::Failed {
            error: "an orphan socket has no fd to shut down; use --action destroy".into(),
            errno: None,
        };
        return Ok((o, rec));
    };
    let dup = match take_fd(m.pid, fd) {
        Ok(d) => d,
        Err(PidfdError::Unavailable { source, .. }) => return Err(source),
        Err(e) => {
            rec.errno = e.errno();
            return Ok((error_outcome(&e), rec));
        }
    };

    // Our copy is a stable reference: check it is the planned socket before touching it.
    let st = match nix::sys::stat::fstat(dup.as_raw_fd()) {
        Ok(st) => st,
        Err(e) => {
            rec.errno = Some(e as i32);
            let o = Outcome::Failed {
                error: format!("pid {} fd {fd}: fstat of our duplicate: {e}", m.pid),
                errno: Some(e as i32),
            };
            return Ok((o, rec));
        }
    };
    rec.ino_seen = Some(st.st_ino);
    if let Some(o) = identity_check(m, st.st_mode, st.st_ino) {
        return Ok((o, rec));
    }

    let is_tcp = m.socket.as_ref().is_some_and(|s| s.proto == Proto::Tcp);
    let before = if is_tcp { tcp_state(&dup).ok() } else { None };
    rec.state_before = before.map(|s| tcp_state_name(s).to_string());
    rec.local = sock_name(&dup, false);
    rec.peer = sock_name(&dup, true);

    if let Err(e) = announce(&rec) {
        let o = Outcome::Failed {
            error: format!("{e}; fd {fd} of pid {} was left alone", m.pid),
            errno: None,
        };
        return Ok((o, rec));
    }

    // SAFETY: dup is an fd we own for the duration of the call; shutdown takes no memory.
    let r = unsafe { libc::shutdown(dup.as_raw_fd(), how.raw()) };
    if r < 0 {
        let e = errno();
        rec.errno = e.raw_os_error();
        return Ok((shutdown_error_outcome(m.pid, fd, e), rec));
    }

    let after = if is_tcp { tcp_state(&dup).ok() } else { None };
    rec.state_after = after.map(|s| tcp_state_name(s).to_string());
    let (verified, note) = match after {
        Some(s) => {
            let ok = ended(how, s, || peek_eof(&dup));
            let note = format!(
                "shut down through a pidfd duplicate, process not stopped; state {} -> {}",
                before.map(tcp_state_name).unwrap_or("?"),
                tcp_state_name(s)
            );
            (ok, Some(note))
        }
        None => (
            false,
            Some("shut down through a pidfd duplicate; not a TCP socket, state not checked".into()),
        ),
    };
    // Only our reference goes: the program's fd stays open on the (now shut) socket.
    drop(dup);
    Ok((Outcome::Done { verified, note }, rec))
}

/// Address of our copy (its own end, or the peer's), as text; `None` for unnamed or unix sockets.
fn sock_name(fd: &OwnedFd, peer: bool) -> Option<String> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: p points at a sockaddr_storage of `len` bytes, which fits every address family.
    let r = unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), p, &mut len)
        } else {
            libc::getsockname(fd.as_raw_fd(), p, &mut len)
        }
    };
    if r < 0 {
        return None;
    }
    let addr = match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into the storage.
            let a = unsafe { *(p as *const libc::sockaddr_in) };
            SocketAddr::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).into(),
                u16::from_be(a.sin_port),
            )
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6) into the storage.
            let a = unsafe { *(p as *const libc::sockaddr_in6) };
            crate::model::unmap(SocketAddr::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr).into(),
                u16::from_be(a.sin6_port),
            ))
        }
        _ => return None,
    };
    Some(addr.to_string())
}

/// The journal lines of a pidfd shutdown, "before" and "after" as the engine writes them, with
/// what only this path knows (no tracee: `via` says so).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Entry {
    Before {
        time: String,
        via: &'static str,
        pid: i32,
        fd: i32,
        inode: u64,
        target: String,
        action: String,
        how: How,
        local: Option<String>,
        peer: Option<String>,
        state: Option<String>,
    },
    After {
        time: String,
        via: &'static str,
        pid: i32,
        fd: i32,
        inode: u64,
        action: String,
        how: How,
        state: Option<String>,
        errno: Option<i32>,
        verified: bool,
        outcome: Outcome,
    },
}

/// One step with its journal records: `before` fsynced right before shutdown(2), `after` right
/// after. A journal that cannot be written stops the step before anything is changed.
pub fn shutdown_journaled(
    m: &Match,
    how: How,
    journal: &mut crate::journal::Journal,
) -> Result<Outcome, Unavailable> {
    let fd = m.fd.unwrap_or(-1);
    let mut announced = false;
    let (outcome, rec) = shutdown_step(m, how, |rec| {
        let e = Entry::Before {
            time: crate::journal::now(),
            via: "pidfd",
            pid: m.pid,
            fd,
            inode: rec.ino_seen.unwrap_or(m.ino),
            target: m.target.clone(),
            action: "shutdown".into(),
            how,
            local: rec.local.clone(),
            peer: rec.peer.clone(),
            state: rec.state_before.clone(),
        };
        journal.record(&e).map_err(|e| e.to_string())?;
        announced = true;
        Ok(())
    })?;
    if announced {
        let verified = matches!(outcome, Outcome::Done { verified: true, .. });
        let e = Entry::After {
            time: crate::journal::now(),
            via: "pidfd",
            pid: m.pid,
            fd,
            inode: rec.ino_seen.unwrap_or(m.ino),
            action: "shutdown".into(),
            how,
            state: rec.state_after.clone(),
            errno: rec.errno,
            verified,
            outcome: outcome.clone(),
        };
        if let Err(e) = journal.record(&e) {
            // The change is made; say that its record is missing rather than hide it.
            return Ok(match outcome {
                Outcome::Done { verified, note } => Outcome::Done {
                    verified,
                    note: Some(crate::destroy::join_note(
                        note,
                        format!("the journal's after record could not be written: {e}"),
                    )),
                },
                o => o,
            });
        }
    }
    Ok(outcome)
}

/// With `--no-ptrace`, `--action shutdown` can only go through pidfd: the sentence that refuses
/// it when this kernel lacks pidfd_getfd (or the test hook turns it off); `None` when it can run.
pub fn no_ptrace_refusal() -> Option<String> {
    probe().err().map(|why| {
        format!(
            "--no-ptrace: {why}, and without pidfd_getfd --action shutdown could only be done by \
             stopping the process with ptrace, so nothing was touched (drop --no-ptrace to allow it)"
        )
    })
}

/// Left alone unless our copy is the socket the plan named (Outcome::Changed otherwise).
fn identity_check(m: &Match, mode: libc::mode_t, ino: u64) -> Option<Outcome> {
    let is_sock = mode & libc::S_IFMT == libc::S_IFSOCK;
    if is_sock && ino == m.ino {
        return None;
    }
    let now = if is_sock {
        format!("socket:[{ino}]")
    } else {
        format!("a non-socket file (inode {ino})")
    };
    Some(Outcome::Changed { now })
}

fn error_outcome(e: &PidfdError) -> Outcome {
    match e {
        PidfdError::NoProcess { pid } => Outcome::Gone {
            what: format!("process {pid}"),
        },
        PidfdError::NoFd { pid, fd } => Outcome::Gone {
            what: format!("fd {fd} of pid {pid}"),
        },
        e => Outcome::Failed {
            error: e.to_string(),
            errno: e.errno(),
        },
    }
}

/// ENOTCONN: the connection had already ended (TCP_CLOSE) by the time we shut it: nothing to do.
fn shutdown_error_outcome(pid: i32, fd: i32, e: io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(libc::ENOTCONN) => Outcome::Gone {
            what: format!("connection of pid {pid} fd {fd} (already not connected)"),
        },
        errno => Outcome::Failed {
            error: format!("pid {pid} fd {fd}: shutdown: {e}"),
            errno,
        },
    }
}

/// The socket's TCP state number (include/net/tcp_states.h) from `tcpi_state`, the first byte
/// of struct tcp_info; a short buffer is fine, the kernel copies min(len, sizeof).
fn tcp_state(fd: &OwnedFd) -> io::Result<u8> {
    let mut buf = [0u8; 8];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is valid for len bytes and len is passed by pointer as getsockopt expects.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 || len < 1 {
        return Err(errno());
    }
    Ok(buf[0])
}

/// After SHUT_RD the state does not change; a non-blocking peek then reports end-of-file (or
/// still-queued data) instead of EAGAIN.
fn peek_eof(fd: &OwnedFd) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: b is valid for 1 byte; MSG_PEEK leaves any queued data for the program.
    let r = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    r >= 0
}

fn tcp_state_name(n: u8) -> &'static str {
    crate::model::SockState::from_tcp(n)
        .map(|s| s.name())
        .unwrap_or("unknown")
}

/// Did shutdown end the connection? For a write shutdown the kernel must have queued our FIN:
/// the state has left ESTABLISHED / CLOSE-WAIT (FIN-WAIT-1/2, LAST-ACK, CLOSING, TIME-WAIT,
/// CLOSE all qualify). A read-only shutdown leaves the state alone: `rd_eof` decides.
fn ended(how: How, after: u8, rd_eof: impl FnOnce() -> bool) -> bool {
    const ESTABLISHED: u8 = 1;
    const CLOSE_WAIT: u8 = 8;
    match how {
        How::Rd => rd_eof(),
        How::Wr | How::Rdwr => !matches!(after, ESTABLISHED | CLOSE_WAIT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SockState, SocketEntry};

    fn m(ino: u64) -> Match {
        Match {
            pid: 42,
            comm: "java".into(),
            fd: Some(7),
            ino,
            target: format!("socket:[{ino}]"),
            socket: Some(SocketEntry::closed_fd(ino, Proto::Tcp)),
            epoll: vec![],
        }
    }

    #[test]
    fn getfd_errnos_map_to_outcomes() {
        let e = |n| getfd_error(42, 7, io::Error::from_raw_os_error(n));
        assert_eq!(
            error_outcome(&e(libc::EBADF)),
            Outcome::Gone {
                what: "fd 7 of pid 42".into()
            }
        );
        assert_eq!(
            error_outcome(&e(libc::ESRCH)),
            Outcome::Gone {
                what: "process 42".into()
            }
        );
        match error_outcome(&e(libc::EPERM)) {
            Outcome::Failed { error, errno } => {
                assert_eq!(errno, Some(libc::EPERM));
                assert!(error.contains("PTRACE_MODE_ATTACH_REALCREDS"), "{error}");
            }
            o => panic!("{o:?}"),
        }
        assert!(matches!(e(libc::ENOSYS), PidfdError::Unavailable { .. }));
        assert!(matches!(
            error_outcome(&e(libc::EMFILE)),
            Outcome::Failed {
                errno: Some(libc::EMFILE),
                ..
            }
        ));
    }

    #[test]
    fn shutdown_errnos_map_to_outcomes() {
        let o = shutdown_error_outcome(1, 2, io::Error::from_raw_os_error(libc::ENOTCONN));
        assert!(matches!(o, Outcome::Gone { .. }));
        let o = shutdown_error_outcome(1, 2, io::Error::from_raw_os_error(libc::ENOTSOCK));
        assert!(matches!(
            o,
            Outcome::Failed {
                errno: Some(libc::ENOTSOCK),
                ..
            }
        ));
    }

    #[test]
    fn identity_needs_a_socket_with_the_planned_inode() {
        assert_eq!(identity_check(&m(99), libc::S_IFSOCK | 0o777, 99), None);
        assert_eq!(
            identity_check(&m(99), libc::S_IFSOCK | 0o777, 100),
            Some(Outcome::Changed {
                now: "socket:[100]".into()
            })
        );
        assert!(matches!(
            identity_check(&m(99), libc::S_IFREG | 0o644, 99),
            Some(Outcome::Changed { .. })
        ));
    }

    #[test]
    fn write_shutdown_ends_when_state_left_established_or_close_wait() {
        let s = |st: SockState| st as u8;
        assert!(ended(How::Rdwr, s(SockState::LastAck), || false));
        assert!(ended(How::Wr, s(SockState::FinWait1), || false));
        assert!(ended(How::Rdwr, s(SockState::Closed), || false));
        assert!(!ended(How::Rdwr, s(SockState::CloseWait), || true));
        assert!(!ended(How::Wr, s(SockState::Established), || true));
        assert!(ended(How::Rd, s(SockState::Established), || true));
        assert!(!ended(How::Rd, s(SockState::Established), || false));
    }

    #[test]
    fn probe_finds_pidfd_on_this_kernel() {
        // This machine runs Linux >= 5.6 (the forced fallback is tested through the binary, where
        // the environment belongs to one process only).
        assert_eq!(probe(), Ok(()));
    }
}
