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
use crate::model::{Match, SockState, SocketEntry};
use crate::plan::Outcome;
use crate::resolve::diag::{self, DiagSocket, InetReq, NLM_F_ACK, NLM_F_REQUEST, SOCK_DESTROY};
use crate::resolve::netns::NsPath;
use serde::Serialize;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The exact `inet_diag_req_v2` naming a socket the resolver listed through sock_diag; `None`
/// when it was not (no cookie is known, and destroying by tuple alone could hit a different
/// socket).
pub fn exact_request(s: &SocketEntry) -> Option<InetReq> {
    diag::inet_exact_request(s)
}

/// The whole SOCK_DESTROY message for `req` (the kernel answers with an ACK or an errno).
pub fn destroy_message(seq: u32, req: &InetReq) -> Vec<u8> {
    diag::nlmsg(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, seq, &req.encode())
}

/// `local -> peer` of a socket, for messages.
fn tuple(s: &SocketEntry) -> String {
    let a =
        |x: Option<SocketAddr>| x.map_or("*".to_string(), |a| crate::model::unmap(a).to_string());
    format!("{} -> {}", a(s.local), a(s.peer))
}

/// What one refusal of SOCK_DESTROY means for the operator.
fn outcome_for_errno(errno: i32, what: &str, cookie: u64) -> Outcome {
    match errno {
        // Also the answer when the cookie no longer matches the socket on that tuple (current
        // kernels): our socket is gone, a stranger may hold the tuple and was not touched.
        libc::ENOENT => Outcome::Gone {
            what: format!("socket {what} (already gone)"),
        },
        // Older kernels' answer to a cookie mismatch.
        libc::ESTALE => Outcome::Changed {
            now: format!("a different socket (not cookie {cookie:#x}) holds {what}"),
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
                "SOCK_DESTROY {what}: {}",
                crate::resolve::errno_text(&io::Error::from_raw_os_error(e))
            ),
            errno: Some(e),
        },
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
}

impl Destroyer {
    pub fn new(orphan_netns: Option<PathBuf>) -> Destroyer {
        Destroyer {
            orphan_netns,
            sockets: HashMap::new(),
        }
    }

    /// The namespace file a step's socket lives in: its owner's, or `--netns` for orphans.
    fn netns_path(&self, m: &Match) -> NsPath {
        if m.pid > 0 {
            return NsPath::of_pid(m.pid);
        }
        self.orphan_netns
            .clone()
            .map(NsPath)
            .unwrap_or_else(NsPath::own)
    }

    /// The sock_diag socket for namespace `ns`, opened on first use; returns its inode too.
    fn socket_for(&mut self, ns: &NsPath) -> io::Result<(u64, &mut DiagSocket)> {
        let ino = ns.inode()?;
        let sock = match self.sockets.entry(ino) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(if ino == crate::resolve::netns::own_netns_inode() {
                    DiagSocket::open()?
                } else {
                    DiagSocket::open_in(ns)?
                })
            }
        };
        Ok((ino, sock))
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
        let (Some(sock), Some(req)) =
            (m.socket.as_ref(), m.socket.as_ref().and_then(exact_request))
        else {
            let o = Outcome::Failed {
                error: "no exact sock_diag identity (addresses and cookie) for this socket: only \
                        TCP/UDP sockets listed through sock_diag can be destroyed"
                    .into(),
                errno: None,
            };
            return (o, rec);
        };
        let what = tuple(sock);
        let ns = self.netns_path(m);
        let (ino, diag) = match self.socket_for(&ns) {
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
                            "cannot open sock_diag in network namespace {}: {}",
                            ns.0.display(),
                            crate::resolve::errno_text(&e)
                        ),
                        errno: e.raw_os_error(),
                    }
                };
                return (o, rec);
            }
        };
        rec.netns = Some(ino);
        if let Err(e) = announce(&rec) {
            let o = Outcome::Failed {
                error: format!("{e}; socket {what} was left alone"),
                errno: None,
            };
            return (o, rec);
        }

        if let Err(e) = diag.request_ack(SOCK_DESTROY, &req.encode()) {
            rec.errno = e.raw_os_error();
            let o = match e.raw_os_error() {
                Some(n) => outcome_for_errno(n, &what, req.id.cookie),
                None => Outcome::Failed {
                    error: format!("SOCK_DESTROY {what}: netlink: {e}"),
                    errno: None,
                },
            };
            return (o, rec);
        }

        // Look the exact id up again: the kernel must not know it any more.
        let check = diag.get(&req);
        rec.verified = match &check {
            Ok(None) => true,
            Err(e) => e.raw_os_error() == Some(libc::ESTALE),
            Ok(Some(_)) => false,
        };
        let mut note = match check {
            Ok(None) => Some(released(&rec)),
            Ok(Some(still)) => Some(format!(
                "the kernel accepted SOCK_DESTROY but still lists the socket ({})",
                still.state
            )),
            Err(e) if !rec.verified => Some(format!("could not check the socket is gone: {e}")),
            Err(_) => Some(released(&rec)),
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

/// What the kernel let go of, in the operator's words.
fn released(rec: &DestroyRecord) -> String {
    let mut s = format!("released send-q {} bytes", rec.send_q);
    if rec.recv_q > 0 {
        s.push_str(&format!(", recv-q {} bytes", rec.recv_q));
    }
    if let Some(mem) = rec.mem {
        s.push_str(&format!(", {mem} bytes of socket memory"));
    }
    s
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
    use crate::model::{DiagId, Proto};

    fn entry(local: &str, peer: &str, family: i32, cookie: u64) -> SocketEntry {
        let mut s = SocketEntry::closed_fd(0, Proto::Tcp);
        s.state = SockState::FinWait1;
        s.local = Some(local.parse().unwrap());
        s.peer = Some(peer.parse().unwrap());
        s.diag = Some(DiagId {
            family: family as u8,
            protocol: libc::IPPROTO_TCP as u8,
            ifindex: 0,
            cookie,
        });
        s
    }

    /// Golden SOCK_DESTROY message, field by field (little-endian host).
    #[test]
    #[cfg(target_endian = "little")]
    fn destroy_request_bytes_v4() {
        let e = entry(
            "127.0.0.1:40103",
            "127.0.0.1:52550",
            libc::AF_INET,
            0x1_0000_2a2b,
        );
        let got = destroy_message(7, &exact_request(&e).unwrap());
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
            0x00,                               // idiag_ext: nothing extra
            0x00,                               // pad
            0xff, 0xff, 0xff, 0xff,             // idiag_states: all (ignored by exact requests)
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
    fn destroy_request_bytes_v6_mapped() {
        // An AF_INET6 socket with an IPv4 peer is listed (and addressed) by the mapped form.
        // 10.0.0.5 is a filter-string address here, never contacted.
        let e = entry(
            "[::1]:80",
            "[::ffff:10.0.0.5]:443",
            libc::AF_INET6,
            u64::MAX - 1,
        );
        let got = destroy_message(1, &exact_request(&e).unwrap());
        assert_eq!(got.len(), 72);
        assert_eq!(&got[4..8], &[0x15, 0x00, 0x05, 0x00]); // SOCK_DESTROY, REQUEST|ACK
        assert_eq!(got[16], 10); // AF_INET6
        assert_eq!(&got[24..28], &[0x00, 0x50, 0x01, 0xbb]); // ports 80, 443
        let mut lo = [0u8; 16];
        lo[15] = 1;
        assert_eq!(&got[28..44], &lo); // ::1
        let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 5];
        assert_eq!(&got[44..60], &mapped);
        assert_eq!(
            &got[64..72],
            &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn errnos_map_to_outcomes() {
        let w = "127.0.0.1:1 -> 127.0.0.1:2";
        assert!(matches!(
            outcome_for_errno(libc::ENOENT, w, 1),
            Outcome::Gone { .. }
        ));
        assert!(matches!(
            outcome_for_errno(libc::ESTALE, w, 1),
            Outcome::Changed { .. }
        ));
        match outcome_for_errno(libc::EOPNOTSUPP, w, 1) {
            Outcome::Failed { error, errno } => {
                assert_eq!(errno, Some(libc::EOPNOTSUPP));
                assert!(error.contains("CONFIG_INET_DIAG_DESTROY"));
                assert!(error.contains("--action close"));
            }
            o => panic!("{o:?}"),
        }
        match outcome_for_errno(libc::EPERM, w, 1) {
            Outcome::Failed { error, errno } => {
                assert_eq!(errno, Some(libc::EPERM));
                assert!(error.contains("CAP_NET_ADMIN"));
            }
            o => panic!("{o:?}"),
        }
        match outcome_for_errno(libc::EINVAL, w, 1) {
            Outcome::Failed { error, errno } => {
                assert_eq!(errno, Some(libc::EINVAL));
                assert!(error.contains(w), "{error}");
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn only_sock_diag_listed_sockets_can_be_named() {
        let mut s = SocketEntry::closed_fd(0, Proto::Tcp);
        assert!(exact_request(&s).is_none());
        s.local = Some("127.0.0.1:1".parse().unwrap());
        s.peer = Some("127.0.0.1:2".parse().unwrap());
        assert!(exact_request(&s).is_none(), "no cookie, no destroy");
        let e = entry("127.0.0.1:1", "127.0.0.1:2", libc::AF_INET, 9);
        assert_eq!(exact_request(&e).unwrap().id.cookie, 9);
    }

    #[test]
    fn a_step_without_an_id_fails_alone_and_touches_nothing() {
        let m = Match {
            pid: 0,
            comm: "-".into(),
            fd: None,
            ino: 0,
            target: "orphan".into(),
            socket: Some(SocketEntry::closed_fd(0, Proto::Tcp)),
            epoll: vec![],
        };
        let mut d = Destroyer::new(None);
        let (o, rec) = d.destroy_announced(&m, |_| panic!("announced without an id"));
        assert!(matches!(o, Outcome::Failed { errno: None, .. }), "{o:?}");
        assert!(!rec.verified);
    }
}
