//! destroy: SOCK_DESTROY through sock_diag, for orphans and owned sockets.
//!
//! An orphan (a socket its program already closed, e.g. FIN-WAIT-1 behind a zero window holding
//! megabytes of Send-Q) has no fd anyone could close; only the kernel can drop it. sock_diag's
//! `SOCK_DESTROY` request (Linux >= 4.5, `CONFIG_INET_DIAG_DESTROY`) aborts the socket named by
//! an exact `inet_diag_sockid` — addresses, ports, interface *and cookie*, so a different socket
//! that reused the tuple is never hit. The caller needs CAP_NET_ADMIN
//! in the socket's network namespace, and the request must be sent on a netlink socket created
//! in that namespace.
//!
//! Each socket is handled on its own: one failure never stops the batch. Afterwards the same
//! exact id is looked up again; ENOENT (or ESTALE: another socket holds the tuple now) proves ours
//! is gone. A cookie that no longer matches the socket on the tuple gets ENOENT from current
//! kernels (ESTALE from older ones): the stranger is never touched.

use crate::journal::Journal;
use crate::model::{DiagId, Match, SockState, SocketEntry};
use crate::plan::Outcome;
use serde::Serialize;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

// include/uapi/linux/netlink.h, sock_diag.h, inet_diag.h
const NETLINK_SOCK_DIAG: i32 = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_HDRLEN: usize = 16;
/// sizeof(struct inet_diag_req_v2): family, protocol, ext, pad (4) + states (4) + sockid (48).
const REQ_V2_LEN: usize = 56;

/// How long one netlink answer may take before the socket is reported as failed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The exact identity of one inet socket, as `struct inet_diag_sockid` carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SockId {
    pub family: u8,
    pub protocol: u8,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub ifindex: u32,
    pub cookie: u64,
}

impl SockId {
    /// The id of a socket the resolver listed through sock_diag; `None` when it was not (no
    /// cookie is known, and destroying by tuple alone could hit a different socket).
    pub fn of(s: &SocketEntry) -> Option<SockId> {
        let DiagId {
            family,
            protocol,
            ifindex,
            cookie,
        } = s.diag?;
        Some(SockId {
            family,
            protocol,
            local: s.local?,
            peer: s.peer?,
            ifindex,
            cookie,
        })
    }
}

/// One address as the 16 bytes of `idiag_src`/`idiag_dst`: IPv4 in the first four (network
/// order), IPv6 whole. An AF_INET6 socket with IPv4 peers is addressed by the mapped form.
fn addr_bytes(family: u8, ip: IpAddr) -> [u8; 16] {
    let mut b = [0u8; 16];
    match (family as i32, ip) {
        (libc::AF_INET6, IpAddr::V4(v4)) => b = v4.to_ipv6_mapped().octets(),
        (_, IpAddr::V6(v6)) => b = v6.octets(),
        (_, IpAddr::V4(v4)) => b[..4].copy_from_slice(&v4.octets()),
    }
    b
}

/// A sock_diag request naming exactly one socket: `nlmsghdr` + `inet_diag_req_v2`.
/// `SOCK_DESTROY` with `NLM_F_ACK` (the kernel answers with an error message, 0 on success), or
/// `SOCK_DIAG_BY_FAMILY` without `NLM_F_DUMP` (an exact get: the socket's record, or an error).
fn request(msg_type: u16, flags: u16, seq: u32, id: &SockId) -> Vec<u8> {
    let len = NLMSG_HDRLEN + REQ_V2_LEN;
    let mut b = Vec::with_capacity(len);
    // struct nlmsghdr (host order)
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&msg_type.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel

    // struct inet_diag_req_v2
    b.push(id.family);
    b.push(id.protocol);
    b.push(0); // idiag_ext: no extensions wanted
    b.push(0); // pad
    b.extend_from_slice(&0u32.to_ne_bytes()); // idiag_states: unused by exact requests

    // struct inet_diag_sockid: ports and addresses in network order
    b.extend_from_slice(&id.local.port().to_be_bytes());
    b.extend_from_slice(&id.peer.port().to_be_bytes());
    b.extend_from_slice(&addr_bytes(id.family, id.local.ip()));
    b.extend_from_slice(&addr_bytes(id.family, id.peer.ip()));
    b.extend_from_slice(&id.ifindex.to_ne_bytes());
    // idiag_cookie[2]: low 32 bits first, each host order (net/core/sock_diag.c
    // sock_diag_save_cookie / sock_diag_check_cookie).
    b.extend_from_slice(&(id.cookie as u32).to_ne_bytes());
    b.extend_from_slice(&((id.cookie >> 32) as u32).to_ne_bytes());
    debug_assert_eq!(b.len(), len);
    b
}

/// What the kernel answered to one exact request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// NLMSG_ERROR with error 0 (the ACK).
    Ack,
    /// NLMSG_ERROR with -errno.
    Errno(i32),
    /// A SOCK_DIAG_BY_FAMILY record: the socket exists.
    Found,
}

/// The answer to request `seq` in one netlink datagram; `None` if the datagram holds none.
fn parse_answer(buf: &[u8], seq: u32) -> Option<Answer> {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let h = &buf[off..];
        let len = u32::from_ne_bytes(h[0..4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes(h[4..6].try_into().unwrap());
        let mseq = u32::from_ne_bytes(h[8..12].try_into().unwrap());
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return None;
        }
        if mseq == seq {
            match ty {
                NLMSG_ERROR if len >= NLMSG_HDRLEN + 4 => {
                    let e = i32::from_ne_bytes(h[16..20].try_into().unwrap());
                    return Some(if e == 0 {
                        Answer::Ack
                    } else {
                        Answer::Errno(-e)
                    });
                }
                SOCK_DIAG_BY_FAMILY => return Some(Answer::Found),
                NLMSG_DONE => return Some(Answer::Errno(libc::ENOENT)),
                _ => {}
            }
        }
        off += (len + 3) & !3;
    }
    None
}

/// What one destroy attempt means for the operator.
fn outcome_for_errno(errno: i32, id: &SockId) -> Outcome {
    match errno {
        libc::ENOENT => Outcome::Gone {
            what: format!("socket {} -> {} (already gone)", id.local, id.peer),
        },
        libc::ESTALE => Outcome::Changed {
            now: format!(
                "a different socket (not cookie {:#x}) holds {} -> {}",
                id.cookie, id.local, id.peer
            ),
        },
        libc::EOPNOTSUPP => Outcome::Failed {
            error: "this kernel was built without CONFIG_INET_DIAG_DESTROY; for owned sockets use \
                    --action close"
                .into(),
            errno: Some(errno),
        },
        libc::EPERM | libc::EACCES => Outcome::Failed {
            error: "SOCK_DESTROY needs CAP_NET_ADMIN in the socket's network namespace (run \
                    fdclose as root there)"
                .into(),
            errno: Some(errno),
        },
        e => Outcome::Failed {
            error: format!(
                "SOCK_DESTROY {} -> {}: {}",
                id.local,
                id.peer,
                io::Error::from_raw_os_error(e)
            ),
            errno: Some(e),
        },
    }
}

/// A sock_diag netlink socket bound to one network namespace.
struct DiagSocket {
    fd: OwnedFd,
}

impl DiagSocket {
    /// Open in our own namespace.
    fn open_here() -> io::Result<DiagSocket> {
        // SAFETY: socket() takes integers only and returns a new fd or -1.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is new and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let tv = libc::timeval {
            tv_sec: ANSWER_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: tv is a valid timeval for the duration of the call, its size passed with it.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DiagSocket { fd })
    }

    /// Open inside the namespace `ns` (an open /proc/PID/ns/net or /run/netns/NAME): a netlink
    /// socket belongs to the namespace of the thread that creates it, so a short-lived thread
    /// enters the namespace, creates it and ends; the process itself never changes namespace.
    fn open_in(ns: &std::fs::File) -> io::Result<DiagSocket> {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: ns is an open namespace file; setns changes only this thread, which
                // ends right after creating the socket.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                    return Err(io::Error::last_os_error());
                }
                DiagSocket::open_here()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
        })
    }

    /// Send one request and wait for its answer.
    fn ask(&self, req: &[u8], seq: u32) -> io::Result<Answer> {
        // SAFETY: req is valid for req.len() bytes; the kernel is the destination (no address
        // needed on an unconnected netlink socket: the default destination is pid 0).
        let r = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: buf is valid for buf.len() writable bytes.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(a) = parse_answer(&buf[..n as usize], seq) {
                return Ok(a);
            }
        }
    }
}

/// What happened to one socket, for the journal and the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DestroyRecord {
    /// Inode of the network namespace the socket lives in.
    pub netns: Option<u64>,
    pub pid: i32,
    pub fd: Option<i32>,
    pub inode: u64,
    pub proto: String,
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    pub state: Option<SockState>,
    pub send_q: u64,
    pub recv_q: u64,
    /// Kernel memory the socket held when listed (skmem: rmem + wmem_queued + fwd + opt).
    pub mem: Option<u64>,
    pub cookie: Option<u64>,
    pub errno: Option<i32>,
    /// The exact id was looked up again afterwards and the kernel no longer knows it.
    pub verified: bool,
}

impl DestroyRecord {
    pub fn of(m: &Match) -> DestroyRecord {
        let s = m.socket.as_ref();
        DestroyRecord {
            netns: None,
            pid: m.pid,
            fd: m.fd,
            inode: m.inode().unwrap_or(m.ino),
            proto: s.map(|s| s.proto.name()).unwrap_or("-").to_string(),
            local: s.and_then(|s| s.local),
            peer: s.and_then(|s| s.peer),
            state: s.map(|s| s.state),
            send_q: s.map_or(0, |s| s.send_q),
            recv_q: s.map_or(0, |s| s.recv_q),
            mem: s.and_then(|s| s.mem).map(|m| m.total()),
            cookie: s.and_then(|s| s.diag).map(|d| d.cookie),
            errno: None,
            verified: false,
        }
    }
}

/// Destroys sockets one by one, keeping one sock_diag socket per network namespace.
pub struct Destroyer {
    /// Namespace of sockets no process owns (`--netns`); ours when `None`.
    orphan_netns: Option<PathBuf>,
    sockets: HashMap<u64, DiagSocket>,
    seq: u32,
}

impl Destroyer {
    pub fn new(orphan_netns: Option<PathBuf>) -> Destroyer {
        Destroyer {
            orphan_netns,
            sockets: HashMap::new(),
            seq: 0,
        }
    }

    /// The namespace file a step's socket lives in: its owner's, or `--netns` for orphans.
    fn netns_path(&self, m: &Match) -> PathBuf {
        if m.pid > 0 {
            return PathBuf::from(format!("/proc/{}/ns/net", m.pid));
        }
        self.orphan_netns
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc/self/ns/net"))
    }

    /// The sock_diag socket for namespace `path`, opened on first use; returns its inode too.
    fn socket_for(&mut self, path: &Path) -> io::Result<(u64, &DiagSocket)> {
        let ns = std::fs::File::open(path)?;
        let ino = ns.metadata()?.ino();
        if !self.sockets.contains_key(&ino) {
            let here = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
            let s = if ino == here {
                DiagSocket::open_here()?
            } else {
                DiagSocket::open_in(&ns)?
            };
            self.sockets.insert(ino, s);
        }
        Ok((ino, &self.sockets[&ino]))
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Destroy one socket and check it is gone. Never panics on kernel refusals: every failure is
    /// an `Outcome` for this socket alone.
    pub fn destroy(&mut self, m: &Match) -> (Outcome, DestroyRecord) {
        self.destroy_announced(m, |_| Ok(()))
    }

    /// As [`Destroyer::destroy`], with `announce` run right before SOCK_DESTROY is sent (the
    /// journal's `before` record, namespace known); if it fails nothing is sent.
    pub fn destroy_announced(
        &mut self,
        m: &Match,
        announce: impl FnOnce(&DestroyRecord) -> Result<(), String>,
    ) -> (Outcome, DestroyRecord) {
        let mut rec = DestroyRecord::of(m);
        let Some(id) = m.socket.as_ref().and_then(SockId::of) else {
            let o = Outcome::Failed {
                error: "no exact sock_diag identity (addresses and cookie) for this socket: only \
                        TCP/UDP sockets listed through sock_diag can be destroyed"
                    .into(),
                errno: None,
            };
            return (o, rec);
        };
        let path = self.netns_path(m);
        let (seq_d, seq_l) = (self.next_seq(), self.next_seq());
        let (ns, sock) = match self.socket_for(&path) {
            Ok(x) => x,
            Err(e) => {
                rec.errno = e.raw_os_error();
                let o = if m.pid > 0 && e.raw_os_error() == Some(libc::ENOENT) {
                    Outcome::Gone {
                        what: format!("process {}", m.pid),
                    }
                } else {
                    Outcome::Failed {
                        error: format!(
                            "cannot open sock_diag in network namespace {}: {e}",
                            path.display()
                        ),
                        errno: e.raw_os_error(),
                    }
                };
                return (o, rec);
            }
        };
        rec.netns = Some(ns);
        if let Err(e) = announce(&rec) {
            let o = Outcome::Failed {
                error: format!("{e}; socket {} -> {} was left alone", id.local, id.peer),
                errno: None,
            };
            return (o, rec);
        }

        let answer = sock.ask(
            &request(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, seq_d, &id),
            seq_d,
        );
        match answer {
            Ok(Answer::Ack) | Ok(Answer::Found) => {}
            Ok(Answer::Errno(e)) => {
                rec.errno = Some(e);
                return (outcome_for_errno(e, &id), rec);
            }
            Err(e) => {
                rec.errno = e.raw_os_error();
                let o = Outcome::Failed {
                    error: format!("SOCK_DESTROY {} -> {}: netlink: {e}", id.local, id.peer),
                    errno: e.raw_os_error(),
                };
                return (o, rec);
            }
        }

        // Look the exact id up again: the kernel must not know it any more.
        let check = sock.ask(
            &request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq_l, &id),
            seq_l,
        );
        rec.verified = matches!(
            check,
            Ok(Answer::Errno(libc::ENOENT)) | Ok(Answer::Errno(libc::ESTALE))
        );
        let mut note = match check {
            Ok(Answer::Found) => {
                Some("the kernel accepted SOCK_DESTROY but still lists the socket".into())
            }
            Ok(Answer::Errno(e)) if !rec.verified => Some(format!(
                "could not check the socket is gone: {}",
                io::Error::from_raw_os_error(e)
            )),
            Err(e) => Some(format!("could not check the socket is gone: {e}")),
            _ => None,
        };
        if let Some(fd) = m.fd {
            let owned = format!(
                "fd {fd} stays open in pid {} ({}): the program now gets ECONNABORTED or EOF on \
                 it; release the fd with --action close",
                m.pid, m.comm
            );
            note = Some(join_note(note, owned));
        }
        (
            Outcome::Done {
                verified: rec.verified,
                note,
            },
            rec,
        )
    }

    /// One step with its journal records: `before` fsynced right before SOCK_DESTROY, `after`
    /// right after. A journal that cannot be written stops the step before anything is sent.
    pub fn destroy_journaled(&mut self, m: &Match, journal: &mut Journal) -> Outcome {
        let mut announced = false;
        let (outcome, rec) = self.destroy_announced(m, |rec| {
            let e = Entry::Before {
                time: crate::journal::now(),
                via: "sock_diag",
                action: "destroy",
                socket: rec.clone(),
            };
            journal.record(&e).map_err(|e| e.to_string())?;
            announced = true;
            Ok(())
        });
        if !announced {
            return outcome;
        }
        let e = Entry::After {
            time: crate::journal::now(),
            via: "sock_diag",
            action: "destroy",
            socket: rec,
            outcome: outcome.clone(),
        };
        match journal.record(&e) {
            Ok(()) => outcome,
            // The change is made; say that its record is missing rather than hide it.
            Err(e) => match outcome {
                Outcome::Done { verified, note } => Outcome::Done {
                    verified,
                    note: Some(join_note(
                        note,
                        format!("the journal's after record could not be written: {e}"),
                    )),
                },
                o => o,
            },
        }
    }
}

/// `a; b`, or just `b`.
pub(crate) fn join_note(a: Option<String>, b: String) -> String {
    match a {
        Some(a) if !a.is_empty() => format!("{a}; {b}"),
        _ => b,
    }
}

/// The journal lines of a destroy, "before" and "after" like the engine's: the socket's pid,
/// namespace, fd, inode, full tuple, state, queues, memory and cookie; after it also the errno,
/// whether the kernel no longer knows the socket, and the outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Entry {
    Before {
        time: String,
        via: &'static str,
        action: &'static str,
        #[serde(flatten)]
        socket: DestroyRecord,
    },
    After {
        time: String,
        via: &'static str,
        action: &'static str,
        #[serde(flatten)]
        socket: DestroyRecord,
        outcome: Outcome,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_id() -> SockId {
        SockId {
            family: libc::AF_INET as u8,
            protocol: libc::IPPROTO_TCP as u8,
            local: "127.0.0.1:40103".parse().unwrap(),
            peer: "127.0.0.1:52550".parse().unwrap(),
            ifindex: 0,
            cookie: 0x0000_0001_0000_2a2b,
        }
    }

    /// Golden SOCK_DESTROY request, field by field (little-endian host).
    #[test]
    #[cfg(target_endian = "little")]
    fn destroy_request_bytes_v4() {
        let got = request(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, 7, &v4_id());
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            // struct nlmsghdr
            0x48, 0x00, 0x00, 0x00,             // nlmsg_len = 72
            0x15, 0x00,                         // nlmsg_type = SOCK_DESTROY (21)
            0x05, 0x00,                         // nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK
            0x07, 0x00, 0x00, 0x00,             // nlmsg_seq = 7
            0x00, 0x00, 0x00, 0x00,             // nlmsg_pid = 0 (the kernel)
            // struct inet_diag_req_v2
            0x02,                               // sdiag_family = AF_INET
            0x06,                               // sdiag_protocol = IPPROTO_TCP
            0x00,                               // idiag_ext
            0x00,                               // pad
            0x00, 0x00, 0x00, 0x00,             // idiag_states
            // struct inet_diag_sockid
            0x9c, 0xa7,                         // idiag_sport = 40103 (big-endian)
            0xcd, 0x46,                         // idiag_dport = 52550 (big-endian)
            0x7f, 0x00, 0x00, 0x01,             // idiag_src = 127.0.0.1 ...
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,             // ... rest zero for IPv4
            0x7f, 0x00, 0x00, 0x01,             // idiag_dst = 127.0.0.1 ...
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,             // idiag_if = 0
            0x2b, 0x2a, 0x00, 0x00,             // idiag_cookie[0] = low 32 bits
            0x01, 0x00, 0x00, 0x00,             // idiag_cookie[1] = high 32 bits
        ];
        assert_eq!(got, want);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn lookup_request_bytes_v6_and_mapped() {
        let id = SockId {
            family: libc::AF_INET6 as u8,
            protocol: libc::IPPROTO_TCP as u8,
            local: "[::1]:80".parse().unwrap(),
            peer: "10.0.0.5:443".parse().unwrap(), // filter-string address, never contacted
            ifindex: 3,
            cookie: u64::MAX - 1,
        };
        let got = request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, &id);
        assert_eq!(got.len(), 72);
        assert_eq!(&got[4..8], &[0x14, 0x00, 0x01, 0x00]); // type 20, flags REQUEST only
        assert_eq!(got[16], 10); // AF_INET6
        assert_eq!(&got[24..28], &[0x00, 0x50, 0x01, 0xbb]); // ports 80, 443
        let mut lo = [0u8; 16];
        lo[15] = 1;
        assert_eq!(&got[28..44], &lo); // ::1
        let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 5];
        assert_eq!(&got[44..60], &mapped); // an IPv4 peer of an AF_INET6 socket: ::ffff:10.0.0.5
        assert_eq!(&got[60..64], &[3, 0, 0, 0]); // ifindex
        assert_eq!(
            &got[64..72],
            &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    /// nlmsghdr + error for `seq`.
    fn err_msg(seq: u32, err: i32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&err.to_ne_bytes());
        b.extend_from_slice(&[0u8; 16]); // the request's header, echoed
        b
    }

    #[test]
    fn answers_parse_by_sequence() {
        assert_eq!(parse_answer(&err_msg(5, 0), 5), Some(Answer::Ack));
        assert_eq!(
            parse_answer(&err_msg(5, -libc::ENOENT), 5),
            Some(Answer::Errno(libc::ENOENT))
        );
        // An answer to an older request is skipped, the next one in the datagram found.
        let mut two = err_msg(4, -libc::EPERM);
        two.extend(err_msg(5, -libc::EOPNOTSUPP));
        assert_eq!(parse_answer(&two, 5), Some(Answer::Errno(libc::EOPNOTSUPP)));
        assert_eq!(parse_answer(&err_msg(4, 0), 5), None);
        let mut found = err_msg(9, 0);
        found[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        assert_eq!(parse_answer(&found, 9), Some(Answer::Found));
        assert_eq!(parse_answer(&found[..10], 9), None); // truncated
    }

    #[test]
    fn errnos_map_to_outcomes() {
        let id = v4_id();
        assert!(matches!(
            outcome_for_errno(libc::ENOENT, &id),
            Outcome::Gone { .. }
        ));
        assert!(matches!(
            outcome_for_errno(libc::ESTALE, &id),
            Outcome::Changed { .. }
        ));
        match outcome_for_errno(libc::EOPNOTSUPP, &id) {
            Outcome::Failed { error, errno } => {
                assert_eq!(errno, Some(libc::EOPNOTSUPP));
                assert!(error.contains("CONFIG_INET_DIAG_DESTROY"));
                assert!(error.contains("--action close"));
            }
            o => panic!("{o:?}"),
        }
        match outcome_for_errno(libc::EPERM, &id) {
            Outcome::Failed { error, errno } => {
                assert_eq!(errno, Some(libc::EPERM));
                assert!(error.contains("CAP_NET_ADMIN"));
            }
            o => panic!("{o:?}"),
        }
        assert!(matches!(
            outcome_for_errno(libc::EINVAL, &id),
            Outcome::Failed {
                errno: Some(libc::EINVAL),
                ..
            }
        ));
    }

    #[test]
    fn only_sock_diag_listed_sockets_have_an_id() {
        let mut s = SocketEntry::closed_fd(0, crate::model::Proto::Tcp);
        assert_eq!(SockId::of(&s), None);
        s.local = Some("127.0.0.1:1".parse().unwrap());
        s.peer = Some("127.0.0.1:2".parse().unwrap());
        assert_eq!(SockId::of(&s), None);
        s.diag = Some(DiagId {
            family: 2,
            protocol: 6,
            ifindex: 0,
            cookie: 9,
        });
        assert_eq!(SockId::of(&s).unwrap().cookie, 9);
    }
}
