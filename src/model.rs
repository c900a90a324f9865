//! The plain values every stage passes along: sockets, processes, matches.
//!
//! Nothing here touches the OS; the resolver fills these in, the filters read them, the planner and
//! the reports print them.

use serde::Serialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Transport as the operator names it (`--proto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Unix,
    /// Any other socket family (netlink, packet, ...): listed only with `--fd`/`--inode`.
    Other,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Unix => "unix",
            Proto::Other => "other",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Socket state. The TCP values are the kernel's `TCP_*` numbers (include/net/tcp_states.h), which
/// /proc/net/tcp prints in hex and sock_diag returns in `idiag_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SockState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    // kebab-case alone would give "fin-wait1": spell them as `--state` and `ss` do.
    #[serde(rename = "fin-wait-1")]
    FinWait1 = 4,
    #[serde(rename = "fin-wait-2")]
    FinWait2 = 5,
    TimeWait = 6,
    /// TCP_CLOSE, and also a socket fd found in no kernel table (`ss -s` "closed").
    Closed = 7,
    CloseWait = 8,
    LastAck = 9,
    Listening = 10,
    Closing = 11,
    /// TCP_NEW_SYN_RECV (12): request sockets, never owned by an fd.
    NewSynRecv = 12,
    /// Not a connection-oriented state: UDP/unix sockets that are neither listening nor connected.
    Unconnected = 100,
}

impl SockState {
    /// Every state an operator can name with `--state`, in kernel order.
    pub const NAMED: [SockState; 11] = [
        SockState::Established,
        SockState::SynSent,
        SockState::SynRecv,
        SockState::FinWait1,
        SockState::FinWait2,
        SockState::TimeWait,
        SockState::Closed,
        SockState::CloseWait,
        SockState::LastAck,
        SockState::Listening,
        SockState::Closing,
    ];

    /// From the kernel's TCP state number; `None` for numbers it never reports.
    pub fn from_tcp(n: u8) -> Option<SockState> {
        Some(match n {
            1 => SockState::Established,
            2 => SockState::SynSent,
            3 => SockState::SynRecv,
            4 => SockState::FinWait1,
            5 => SockState::FinWait2,
            6 => SockState::TimeWait,
            7 => SockState::Closed,
            8 => SockState::CloseWait,
            9 => SockState::LastAck,
            10 => SockState::Listening,
            11 => SockState::Closing,
            12 => SockState::NewSynRecv,
            _ => return None,
        })
    }

    /// The lower-case name `ss` uses in its state filter (and `--state` accepts).
    pub fn name(self) -> &'static str {
        match self {
            SockState::Established => "established",
            SockState::SynSent => "syn-sent",
            SockState::SynRecv => "syn-recv",
            SockState::FinWait1 => "fin-wait-1",
            SockState::FinWait2 => "fin-wait-2",
            SockState::TimeWait => "time-wait",
            SockState::Closed => "closed",
            SockState::CloseWait => "close-wait",
            SockState::LastAck => "last-ack",
            SockState::Listening => "listening",
            SockState::Closing => "closing",
            SockState::NewSynRecv => "new-syn-recv",
            SockState::Unconnected => "unconnected",
        }
    }

    /// Bit for the kernel's state filter (`idiag_states`: bit n set selects TCP state n).
    pub fn kernel_bit(self) -> u32 {
        match self {
            SockState::Unconnected => 1 << SockState::Closed as u32,
            s => 1 << s as u32,
        }
    }
}

impl fmt::Display for SockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Socket memory as sock_diag's `INET_DIAG_SKMEMINFO` reports it (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemInfo {
    /// sk_rmem_alloc
    pub rmem_alloc: u32,
    /// sk_rcvbuf
    pub rcvbuf: u32,
    /// sk_wmem_alloc
    pub wmem_alloc: u32,
    /// sk_sndbuf
    pub sndbuf: u32,
    /// sk_forward_alloc
    pub fwd_alloc: u32,
    /// sk_wmem_queued
    pub wmem_queued: u32,
    /// sk_omem_alloc
    pub optmem: u32,
}

impl MemInfo {
    /// Bytes this socket holds in the kernel (what `ss -m` adds up as skmem).
    pub fn total(&self) -> u64 {
        self.rmem_alloc as u64
            + self.wmem_queued as u64
            + self.fwd_alloc as u64
            + self.optmem as u64
    }
}

/// The exact identity sock_diag needs to address one socket again (`struct inet_diag_sockid`),
/// kept so `SOCK_DESTROY` can name the very socket we listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DiagId {
    /// AF_INET or AF_INET6 as the kernel reported it.
    pub family: u8,
    /// IPPROTO_TCP / IPPROTO_UDP.
    pub protocol: u8,
    pub ifindex: u32,
    pub cookie: u64,
}

/// One socket as the kernel describes it, joined to fds by `inode`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SocketEntry {
    /// Socket inode (the N of `socket:[N]`); 0 for orphans owned by no fd.
    pub inode: u64,
    pub proto: Proto,
    pub state: SockState,
    /// Unix sockets have no IP endpoints: `local`/`peer` are `None` and `unix_path` may be set.
    pub local: Option<SocketAddr>,
    pub peer: Option<SocketAddr>,
    pub unix_path: Option<String>,
    pub recv_q: u64,
    pub send_q: u64,
    /// Milliseconds since data was last received (tcp_info `tcpi_last_data_recv`), when known.
    pub idle_ms: Option<u64>,
    pub mem: Option<MemInfo>,
    pub uid: Option<u32>,
    pub diag: Option<DiagId>,
}

impl SocketEntry {
    /// An fd that points at a socket no kernel table lists any more (`ss -s` "closed").
    pub fn closed_fd(inode: u64, proto: Proto) -> SocketEntry {
        SocketEntry {
            inode,
            proto,
            state: SockState::Closed,
            local: None,
            peer: None,
            unix_path: None,
            recv_q: 0,
            send_q: 0,
            idle_ms: None,
            mem: None,
            uid: None,
            diag: None,
        }
    }

    /// Peer address with IPv4-mapped IPv6 (`::ffff:a.b.c.d`) shown as the IPv4 it is.
    pub fn peer_display(&self) -> Option<SocketAddr> {
        self.peer.map(unmap)
    }

    pub fn local_display(&self) -> Option<SocketAddr> {
        self.local.map(unmap)
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`, keeping the port; other addresses unchanged.
pub fn unmap(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(unmap_ip(addr.ip()), addr.port())
}

pub fn unmap_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A process we looked at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Process {
    pub pid: i32,
    pub comm: String,
    /// Inode of /proc/PID/ns/net: which network namespace its sockets live in.
    pub netns: u64,
}

/// One fd of one process that holds a selected socket (or, for `--fd` on a non-socket, nothing).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Match {
    pub pid: i32,
    pub comm: String,
    /// `None` for orphan sockets, which no fd holds.
    pub fd: Option<i32>,
    /// Inode the fd must still hold right before we act on it: `st_ino` of /proc/PID/fd/N (the
    /// socket inode for sockets). For orphans, the socket inode (0).
    pub ino: u64,
    /// What the fd pointed at when resolved: `socket:[N]` for sockets, the link text otherwise.
    pub target: String,
    /// The socket behind the fd; `None` when the fd is not a socket (selected by `--fd`).
    pub socket: Option<SocketEntry>,
    /// Epoll fds of the same process that watch this fd.
    pub epoll: Vec<i32>,
}

impl Match {
    /// Socket inode, when the fd is a socket.
    pub fn inode(&self) -> Option<u64> {
        self.socket.as_ref().map(|s| s.inode)
    }
}

/// A process the search could not read, and why (reported once at the end, never fatal when no
/// `--pid` was named).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub pid: i32,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_numbers_round_trip_through_names() {
        for s in SockState::NAMED {
            assert_eq!(SockState::from_tcp(s as u8), Some(s));
            // JSON spells every state as `--state` does.
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        assert_eq!(SockState::from_tcp(0), None);
        assert_eq!(SockState::from_tcp(13), None);
        assert_eq!(SockState::CloseWait.name(), "close-wait");
        assert_eq!(SockState::CloseWait.kernel_bit(), 1 << 8);
    }

    #[test]
    fn mapped_addresses_display_as_ipv4() {
        let a: SocketAddr = "[::ffff:10.0.0.5]:8080".parse().unwrap();
        assert_eq!(unmap(a).to_string(), "10.0.0.5:8080");
        let b: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(unmap(b), b);
    }
}
