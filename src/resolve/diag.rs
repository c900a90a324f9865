//! Netlink sock_diag (what `ss` uses): requests, replies, and the socket that carries them.
//!
//! The wire structures are hand-rolled from include/uapi/linux/{netlink,inet_diag,unix_diag,
//! sock_diag}.h: encoders and decoders are pure functions over byte slices, tested on golden
//! buffers commented field by field. [`DiagSocket`] is the small I/O part: open (optionally in
//! another network namespace), send one request, iterate the (multi-part) replies.
//!
//! Byte order: netlink headers and most fields are host order; ports and addresses inside
//! `inet_diag_sockid` are network order; `idiag_cookie` is two host-order u32 (low word first).

use super::netns::{self, NsPath};
use crate::model::{DiagId, MemInfo, Proto, SockState, SocketEntry};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Netlink protocol number of sock_diag (include/uapi/linux/netlink.h).
pub const NETLINK_SOCK_DIAG: i32 = 4;
/// nlmsg_type of a dump or lookup request (include/uapi/linux/sock_diag.h).
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// nlmsg_type that asks the kernel to abort one socket (needs CONFIG_INET_DIAG_DESTROY).
pub const SOCK_DESTROY: u16 = 21;

pub const NLM_F_REQUEST: u16 = 0x01;
pub const NLM_F_MULTI: u16 = 0x02;
pub const NLM_F_ACK: u16 = 0x04;
/// NLM_F_ROOT | NLM_F_MATCH.
pub const NLM_F_DUMP: u16 = 0x300;
/// The dump changed under the kernel while it was being sent (NLM_F_DUMP_INTR).
pub const NLM_F_DUMP_INTR: u16 = 0x10;

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

/// `struct nlmsghdr`: len u32, type u16, flags u16, seq u32, pid u32.
pub const NLMSG_HDRLEN: usize = 16;

// Attribute types of an inet_diag reply (enum in include/uapi/linux/inet_diag.h). Requesting one
// sets bit (type - 1) of `idiag_ext`.
pub const INET_DIAG_INFO: u16 = 2;
pub const INET_DIAG_SKMEMINFO: u16 = 7;
pub const INET_DIAG_SHUTDOWN: u16 = 8;

/// `idiag_ext` bits fdclose asks for: tcp_info (idle time) and socket memory.
pub const EXT_INFO: u8 = 1 << (INET_DIAG_INFO - 1);
pub const EXT_SKMEMINFO: u8 = 1 << (INET_DIAG_SKMEMINFO - 1);

// unix_diag (include/uapi/linux/unix_diag.h): what to show, and reply attribute types.
pub const UDIAG_SHOW_NAME: u32 = 0x01;
pub const UDIAG_SHOW_RQLEN: u32 = 0x10;
pub const UDIAG_SHOW_MEMINFO: u32 = 0x20;
pub const UDIAG_SHOW_UID: u32 = 0x40;
pub const UNIX_DIAG_NAME: u16 = 0;
pub const UNIX_DIAG_RQLEN: u16 = 4;
pub const UNIX_DIAG_MEMINFO: u16 = 5;
pub const UNIX_DIAG_UID: u16 = 7;

/// "Do not check the cookie" (INET_DIAG_NOCOOKIE).
pub const NO_COOKIE: u64 = u64::MAX;

const AF_UNIX: u8 = libc::AF_UNIX as u8;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
pub const IPPROTO_TCP: u8 = libc::IPPROTO_TCP as u8;
pub const IPPROTO_UDP: u8 = libc::IPPROTO_UDP as u8;

/// `struct inet_diag_sockid` (48 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockId {
    pub sport: u16,
    pub dport: u16,
    /// 16 bytes as on the wire; an IPv4 address uses the first 4.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ifindex: u32,
    pub cookie: u64,
}

pub const SOCKID_LEN: usize = 48;

impl SockId {
    /// Id of a socket from its endpoints (for an exact lookup or SOCK_DESTROY).
    pub fn new(local: SocketAddr, peer: SocketAddr, ifindex: u32, cookie: u64) -> SockId {
        SockId {
            sport: local.port(),
            dport: peer.port(),
            src: addr_bytes(local.ip()),
            dst: addr_bytes(peer.ip()),
            ifindex,
            cookie,
        }
    }

    pub fn encode(&self, out: &mut [u8]) {
        out[0..2].copy_from_slice(&self.sport.to_be_bytes());
        out[2..4].copy_from_slice(&self.dport.to_be_bytes());
        out[4..20].copy_from_slice(&self.src);
        out[20..36].copy_from_slice(&self.dst);
        out[36..40].copy_from_slice(&self.ifindex.to_ne_bytes());
        out[40..44].copy_from_slice(&(self.cookie as u32).to_ne_bytes());
        out[44..48].copy_from_slice(&((self.cookie >> 32) as u32).to_ne_bytes());
    }

    pub fn decode(b: &[u8]) -> Option<SockId> {
        let b = b.get(..SOCKID_LEN)?;
        let lo = u32::from_ne_bytes(b[40..44].try_into().ok()?) as u64;
        let hi = u32::from_ne_bytes(b[44..48].try_into().ok()?) as u64;
        Some(SockId {
            sport: u16::from_be_bytes([b[0], b[1]]),
            dport: u16::from_be_bytes([b[2], b[3]]),
            src: b[4..20].try_into().ok()?,
            dst: b[20..36].try_into().ok()?,
            ifindex: u32::from_ne_bytes(b[36..40].try_into().ok()?),
            cookie: lo | hi << 32,
        })
    }

    /// Endpoints, read per address family.
    pub fn endpoints(&self, family: u8) -> Option<(SocketAddr, SocketAddr)> {
        let ip = |b: &[u8; 16]| -> Option<IpAddr> {
            match family {
                AF_INET => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
                AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(*b))),
                _ => None,
            }
        };
        Some((
            SocketAddr::new(ip(&self.src)?, self.sport),
            SocketAddr::new(ip(&self.dst)?, self.dport),
        ))
    }
}

fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => b[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => b = v6.octets(),
    }
    b
}

/// `struct inet_diag_req_v2` (56 bytes): the body of a dump, an exact lookup, or SOCK_DESTROY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InetReq {
    pub family: u8,
    pub protocol: u8,
    /// `idiag_ext`: bit (attr - 1) asks for reply attribute `attr`.
    pub ext: u8,
    /// `idiag_states`: bit n selects TCP state n.
    pub states: u32,
    pub id: SockId,
}

pub const INET_REQ_LEN: usize = 56;

impl InetReq {
    pub fn encode(&self) -> [u8; INET_REQ_LEN] {
        let mut b = [0u8; INET_REQ_LEN];
        b[0] = self.family;
        b[1] = self.protocol;
        b[2] = self.ext;
        b[3] = 0; // pad
        b[4..8].copy_from_slice(&self.states.to_ne_bytes());
        self.id.encode(&mut b[8..56]);
        b
    }
}

/// Dump every socket of `family` (AF_INET or AF_INET6) and `protocol` in the states of `states`.
pub fn inet_dump_request(family: u8, protocol: u8, states: u32, ext: u8) -> InetReq {
    InetReq {
        family,
        protocol,
        ext,
        states,
        id: SockId {
            sport: 0,
            dport: 0,
            src: [0; 16],
            dst: [0; 16],
            ifindex: 0,
            cookie: NO_COOKIE,
        },
    }
}

/// The exact id of a socket we listed, for a lookup or SOCK_DESTROY (states: every state).
/// `None` for sockets without endpoints or a sock_diag id (unix sockets, /proc/net entries).
pub fn inet_exact_request(e: &SocketEntry) -> Option<InetReq> {
    let d = e.diag?;
    let (local, peer) = (e.local?, e.peer?);
    Some(InetReq {
        family: d.family,
        protocol: d.protocol,
        ext: 0,
        states: u32::MAX,
        id: SockId::new(local, peer, d.ifindex, d.cookie),
    })
}

/// `struct unix_diag_req` (24 bytes): dump unix sockets in `states`, showing `show`.
pub fn unix_dump_request(states: u32, show: u32) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[0] = AF_UNIX; // sdiag_family
    b[1] = 0; // sdiag_protocol; b[2..4] is padding
    b[4..8].copy_from_slice(&states.to_ne_bytes()); // udiag_states
    b[8..12].copy_from_slice(&0u32.to_ne_bytes()); // udiag_ino: 0 = all
    b[12..16].copy_from_slice(&show.to_ne_bytes()); // udiag_show
    b[16..20].copy_from_slice(&u32::MAX.to_ne_bytes()); // udiag_cookie[0]: no cookie
    b[20..24].copy_from_slice(&u32::MAX.to_ne_bytes()); // udiag_cookie[1]
    b
}

/// A whole netlink message: header + payload, padded to 4 bytes.
pub fn nlmsg(msg_type: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + payload.len();
    let mut b = Vec::with_capacity(align4(len));
    b.extend_from_slice(&(len as u32).to_ne_bytes());
    b.extend_from_slice(&msg_type.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: 0 = to the kernel
    b.extend_from_slice(payload);
    b.resize(align4(len), 0);
    b
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One message of a received buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NlMsg<'a> {
    pub msg_type: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Split a received datagram into messages. Stops at the first malformed header.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = NlMsg<'_>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            rest = &[];
            return None;
        }
        let m = NlMsg {
            msg_type: u16::from_ne_bytes([rest[4], rest[5]]),
            flags: u16::from_ne_bytes([rest[6], rest[7]]),
            seq: u32::from_ne_bytes(rest[8..12].try_into().unwrap()),
            payload: &rest[NLMSG_HDRLEN..len],
        };
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        Some(m)
    })
}

/// Error code of an NLMSG_ERROR payload (`struct nlmsgerr`): 0 is an ACK, else -errno.
pub fn error_code(payload: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(payload.get(0..4)?.try_into().ok()?))
}

/// Route attributes (`struct rtattr`/`nlattr`: len u16, type u16, data, padded to 4).
pub fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        // NLA_F_NESTED and NLA_F_NET_BYTEORDER live in the top two bits.
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            b = &[];
            return None;
        }
        let data = &b[4..len];
        b = b.get(align4(len)..).unwrap_or(&[]);
        Some((ty, data))
    })
}

/// `struct inet_diag_msg` (72 bytes) and the attributes after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InetMsg {
    pub family: u8,
    pub state: u8,
    pub timer: u8,
    pub retrans: u8,
    pub id: SockId,
    pub expires: u32,
    pub rqueue: u32,
    pub wqueue: u32,
    pub uid: u32,
    pub inode: u32,
}

pub const INET_MSG_LEN: usize = 72;

impl InetMsg {
    pub fn decode(b: &[u8]) -> Option<InetMsg> {
        let b = b.get(..INET_MSG_LEN)?;
        let u = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
        Some(InetMsg {
            family: b[0],
            state: b[1],
            timer: b[2],
            retrans: b[3],
            id: SockId::decode(&b[4..52])?,
            expires: u(52),
            rqueue: u(56),
            wqueue: u(60),
            uid: u(64),
            inode: u(68),
        })
    }
}

/// `tcp_info` offsets (include/uapi/linux/tcp.h): u8 tcpi_state at 0; after 8 bytes of u8
/// fields, u32s: rto 8, ato 12, snd_mss 16, rcv_mss 20, unacked 24, sacked 28, lost 32,
/// retrans 36, fackets 40, last_data_sent 44, last_ack_sent 48, last_data_recv 52.
const TCPI_LAST_DATA_RECV: usize = 52;

/// `tcpi_last_data_recv` (ms since data last arrived), if the tcp_info is long enough.
pub fn tcp_info_last_data_recv(info: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(
        info.get(TCPI_LAST_DATA_RECV..TCPI_LAST_DATA_RECV + 4)?
            .try_into()
            .ok()?,
    ))
}

/// `SK_MEMINFO_*` array (include/uapi/linux/sock_diag.h): rmem_alloc, rcvbuf, wmem_alloc, sndbuf,
/// fwd_alloc, wmem_queued, optmem, backlog, drops (older kernels send only the first 7 or 8).
pub fn parse_meminfo(b: &[u8]) -> Option<MemInfo> {
    if b.len() < 7 * 4 {
        return None;
    }
    let u = |i: usize| u32::from_ne_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
    Some(MemInfo {
        rmem_alloc: u(0),
        rcvbuf: u(1),
        wmem_alloc: u(2),
        sndbuf: u(3),
        fwd_alloc: u(4),
        wmem_queued: u(5),
        optmem: u(6),
    })
}

/// One inet_diag reply → socket entry (`proto` says how to read the state number).
pub fn inet_entry(payload: &[u8], protocol: u8) -> Option<SocketEntry> {
    let m = InetMsg::decode(payload)?;
    let proto = if protocol == IPPROTO_UDP {
        Proto::Udp
    } else {
        Proto::Tcp
    };
    let state = super::proc_net::inet_state(proto, m.state)?;
    let (local, peer) = m.id.endpoints(m.family)?;
    let mut idle_ms = None;
    let mut mem = None;
    for (ty, data) in attrs(&payload[INET_MSG_LEN..]) {
        match ty {
            INET_DIAG_INFO if proto == Proto::Tcp => {
                idle_ms = tcp_info_last_data_recv(data).map(u64::from)
            }
            INET_DIAG_SKMEMINFO => mem = parse_meminfo(data),
            _ => {}
        }
    }
    Some(SocketEntry {
        inode: m.inode as u64,
        proto,
        state,
        local: Some(local),
        peer: Some(peer),
        unix_path: None,
        recv_q: m.rqueue as u64,
        send_q: m.wqueue as u64,
        idle_ms,
        mem,
        uid: Some(m.uid),
        diag: Some(DiagId {
            family: m.family,
            protocol,
            ifindex: m.id.ifindex,
            cookie: m.id.cookie,
        }),
    })
}

/// `struct unix_diag_msg` (16 bytes) + attributes → socket entry.
pub fn unix_entry(payload: &[u8]) -> Option<SocketEntry> {
    let b = payload.get(..16)?;
    // b[0] family, b[1] type (SOCK_STREAM...), b[2] state, b[3] pad.
    let st = b[2];
    let inode = u32::from_ne_bytes(b[4..8].try_into().ok()?) as u64;
    let cookie = u32::from_ne_bytes(b[8..12].try_into().ok()?) as u64
        | (u32::from_ne_bytes(b[12..16].try_into().ok()?) as u64) << 32;
    let state = match st {
        1 => SockState::Established,
        10 => SockState::Listening,
        _ => SockState::Unconnected,
    };
    let mut e = SocketEntry::closed_fd(inode, Proto::Unix);
    e.state = state;
    e.diag = Some(DiagId {
        family: AF_UNIX,
        protocol: 0,
        ifindex: 0,
        cookie,
    });
    for (ty, data) in attrs(&payload[16..]) {
        match ty {
            UNIX_DIAG_NAME => e.unix_path = Some(unix_name(data)),
            UNIX_DIAG_RQLEN if data.len() >= 8 => {
                e.recv_q = u32::from_ne_bytes(data[0..4].try_into().ok()?) as u64;
                e.send_q = u32::from_ne_bytes(data[4..8].try_into().ok()?) as u64;
            }
            UNIX_DIAG_UID if data.len() >= 4 => {
                e.uid = Some(u32::from_ne_bytes(data[0..4].try_into().ok()?))
            }
            UNIX_DIAG_MEMINFO => e.mem = parse_meminfo(data),
            _ => {}
        }
    }
    Some(e)
}

/// sun_path bytes → display: abstract names (leading NUL) shown with `@`, as ss and
/// /proc/net/unix do.
fn unix_name(b: &[u8]) -> String {
    match b.split_first() {
        Some((0, rest)) => format!("@{}", String::from_utf8_lossy(rest)),
        _ => {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end]).into_owned()
        }
    }
}

/// A NETLINK_SOCK_DIAG socket, bound to the network namespace it was created in.
pub struct DiagSocket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

/// Largest dump datagram the kernel sends (netlink caps dump skbs near 32 KiB); a bigger buffer
/// costs nothing and never truncates.
const RECV_BUF: usize = 64 * 1024;

impl DiagSocket {
    /// Open in the namespace of the calling thread.
    pub fn open() -> io::Result<DiagSocket> {
        // SAFETY: plain socket(2) call; the returned fd is immediately owned.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DiagSocket {
            // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Open in the namespace at `ns`: the socket lives there for good, whichever thread uses it.
    pub fn open_in(ns: &NsPath) -> io::Result<DiagSocket> {
        netns::run_in(ns, DiagSocket::open)?
    }

    fn send(&mut self, msg_type: u16, flags: u16, payload: &[u8]) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let msg = nlmsg(msg_type, flags, self.seq, payload);
        // SAFETY: zeroed sockaddr_nl is valid; nl_pid 0 addresses the kernel.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `msg` and `sa` are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self.seq)
    }

    fn recv(&mut self) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            return Ok(n as usize);
        }
    }

    /// Send a dump request (`SOCK_DIAG_BY_FAMILY`, NLM_F_DUMP) and call `each` with the payload
    /// of every reply message until NLMSG_DONE. An NLMSG_ERROR ends it with that errno.
    ///
    /// A dump matches only on family, protocol, states and ports: the rest of the sockid is
    /// ignored. Use [`DiagSocket::get`] to look one socket up by its exact id and cookie.
    pub fn dump(&mut self, payload: &[u8], each: impl FnMut(&[u8])) -> io::Result<()> {
        self.transact(
            SOCK_DIAG_BY_FAMILY,
            NLM_F_REQUEST | NLM_F_DUMP,
            payload,
            each,
        )
    }

    /// Look up one socket by exact id (`inet_diag_req_v2` without NLM_F_DUMP). `Ok(None)` when
    /// the kernel has no such socket (ENOENT).
    pub fn get(&mut self, req: &InetReq) -> io::Result<Option<SocketEntry>> {
        let mut found = None;
        let r = self.transact(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, &req.encode(), |p| {
            found = inet_entry(p, req.protocol)
        });
        match r {
            Ok(()) => Ok(found),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Send one request that expects only an acknowledgement (e.g. `SOCK_DESTROY` with an exact
    /// [`InetReq`]): `Ok(())` on ACK, the kernel's errno otherwise (ENOENT: no such socket,
    /// EOPNOTSUPP: kernel without CONFIG_INET_DIAG_DESTROY, EPERM: no CAP_NET_ADMIN).
    pub fn request_ack(&mut self, msg_type: u16, payload: &[u8]) -> io::Result<()> {
        self.transact(msg_type, NLM_F_REQUEST | NLM_F_ACK, payload, |_| {})
    }

    /// Send one request; pass every reply payload to `each` until NLMSG_DONE, an NLMSG_ERROR
    /// (0 = ACK → Ok), or a single (non-multipart) reply.
    pub fn transact(
        &mut self,
        msg_type: u16,
        flags: u16,
        payload: &[u8],
        mut each: impl FnMut(&[u8]),
    ) -> io::Result<()> {
        let seq = self.send(msg_type, flags, payload)?;
        loop {
            let n = self.recv()?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            for m in messages(&self.buf[..n]) {
                if m.seq != seq {
                    continue; // a stale reply to an earlier request
                }
                match m.msg_type {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        return match error_code(m.payload) {
                            Some(0) => Ok(()),
                            Some(e) => Err(io::Error::from_raw_os_error(-e)),
                            None => Err(io::Error::from(io::ErrorKind::InvalidData)),
                        }
                    }
                    NLMSG_NOOP => {}
                    _ => {
                        each(m.payload);
                        if m.flags & NLM_F_MULTI == 0 {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// Every TCP or UDP socket (both address families) in `states`, with tcp_info and memory.
    pub fn inet_sockets(
        &mut self,
        protocol: u8,
        states: u32,
        mut each: impl FnMut(SocketEntry),
    ) -> io::Result<()> {
        let ext = if protocol == IPPROTO_TCP {
            EXT_INFO | EXT_SKMEMINFO
        } else {
            EXT_SKMEMINFO
        };
        for family in [AF_INET, AF_INET6] {
            let req = inet_dump_request(family, protocol, states, ext).encode();
            let r = self.dump(&req, |p| {
                if let Some(e) = inet_entry(p, protocol) {
                    each(e)
                }
            });
            match r {
                // No IPv6 in this kernel or namespace: no such sockets.
                Err(e) if family == AF_INET6 && e.raw_os_error() == Some(libc::ENOENT) => {}
                r => r?,
            }
        }
        Ok(())
    }

    /// Every unix socket in `states`, with name, queues, owner and memory.
    pub fn unix_sockets(
        &mut self,
        states: u32,
        mut each: impl FnMut(SocketEntry),
    ) -> io::Result<()> {
        let show = UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID | UDIAG_SHOW_MEMINFO;
        let req = unix_dump_request(states, show);
        self.dump(&req, |p| {
            if let Some(e) = unix_entry(p) {
                each(e)
            }
        })
    }
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    /// A dump request for IPv4 TCP sockets in CLOSE_WAIT, with tcp_info and memory.
    #[test]
    fn dump_request_bytes() {
        let req = inet_dump_request(AF_INET, IPPROTO_TCP, 1 << 8, EXT_INFO | EXT_SKMEMINFO);
        let msg = nlmsg(
            SOCK_DIAG_BY_FAMILY,
            NLM_F_REQUEST | NLM_F_DUMP,
            7,
            &req.encode(),
        );
        #[rustfmt::skip]
        let want: [u8; 72] = [
            // struct nlmsghdr
            0x48, 0x00, 0x00, 0x00, // nlmsg_len 72
            0x14, 0x00,             // nlmsg_type SOCK_DIAG_BY_FAMILY (20)
            0x01, 0x03,             // nlmsg_flags NLM_F_REQUEST | NLM_F_DUMP
            0x07, 0x00, 0x00, 0x00, // nlmsg_seq 7
            0x00, 0x00, 0x00, 0x00, // nlmsg_pid 0 (the kernel)
            // struct inet_diag_req_v2
            0x02,                   // sdiag_family AF_INET
            0x06,                   // sdiag_protocol IPPROTO_TCP
            0x42,                   // idiag_ext: INFO (1<<1) | SKMEMINFO (1<<6)
            0x00,                   // pad
            0x00, 0x01, 0x00, 0x00, // idiag_states: 1 << TCP_CLOSE_WAIT (8)
            // struct inet_diag_sockid: all zero = any socket
            0x00, 0x00,             // idiag_sport
            0x00, 0x00,             // idiag_dport
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // idiag_src
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // idiag_dst
            0x00, 0x00, 0x00, 0x00, // idiag_if
            0xff, 0xff, 0xff, 0xff, // idiag_cookie[0]: INET_DIAG_NOCOOKIE
            0xff, 0xff, 0xff, 0xff, // idiag_cookie[1]
        ];
        assert_eq!(msg, want);
        let back: Vec<NlMsg> = messages(&msg).collect();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].payload, &want[16..]);
    }

    /// An exact request for one socket, compared with what a Python script (struct.pack) sent to
    /// this kernel when capturing REPLY below: 127.0.0.1:57471 → 127.0.0.1:55766.
    #[test]
    fn exact_request_matches_an_independent_encoding() {
        let captured = "480000001400010307000000000000000206420000010000e07fd9d6\
                        7f000001000000000000000000000000\
                        7f000001000000000000000000000000\
                        00000000ffffffffffffffff";
        let req = InetReq {
            family: AF_INET,
            protocol: IPPROTO_TCP,
            ext: EXT_INFO | EXT_SKMEMINFO,
            states: 1 << 8,
            id: SockId::new(
                "127.0.0.1:57471".parse().unwrap(),
                "127.0.0.1:55766".parse().unwrap(),
                0,
                NO_COOKIE,
            ),
        };
        let msg = nlmsg(
            SOCK_DIAG_BY_FAMILY,
            NLM_F_REQUEST | NLM_F_DUMP,
            7,
            &req.encode(),
        );
        assert_eq!(hex(&msg), captured);
    }

    #[test]
    fn exact_request_from_a_listed_socket_for_sock_destroy() {
        let e = inet_entry(&REPLY[16..], IPPROTO_TCP).unwrap();
        let req = inet_exact_request(&e).unwrap();
        assert_eq!(req.family, AF_INET);
        assert_eq!(req.protocol, IPPROTO_TCP);
        assert_eq!(req.id.sport, 57471);
        assert_eq!(req.id.dport, 55766);
        assert_eq!(req.id.cookie, 0x5709);
        let b = req.encode();
        assert_eq!(&b[4..8], &[0xff; 4]); // every state
        assert_eq!(&b[8..10], &[0xe0, 0x7f]); // sport 57471, network order
        assert_eq!(&b[48..56], &[0x09, 0x57, 0, 0, 0, 0, 0, 0]); // cookie, low word first
        let msg = nlmsg(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, 1, &b);
        assert_eq!(&msg[4..8], &[21, 0, 0x05, 0x00]);
        assert!(inet_exact_request(&SocketEntry::closed_fd(5, Proto::Tcp)).is_none());
    }

    /// Captured on this kernel (6.18, x86_64): the server side of a loopback connection whose
    /// client sent 5 bytes and closed: CLOSE_WAIT with 5 unread bytes.
    #[rustfmt::skip]
    const REPLY: [u8; 448] = concat_bytes(&[
        &[
            // struct nlmsghdr
            0xc0, 0x01, 0x00, 0x00, // nlmsg_len 448
            0x14, 0x00,             // nlmsg_type SOCK_DIAG_BY_FAMILY
            0x02, 0x00,             // nlmsg_flags NLM_F_MULTI
            0x07, 0x00, 0x00, 0x00, // nlmsg_seq 7
            0x09, 0x57, 0x00, 0x00, // nlmsg_pid (the requester's port id)
            // struct inet_diag_msg
            0x02,                   // idiag_family AF_INET
            0x08,                   // idiag_state TCP_CLOSE_WAIT
            0x00,                   // idiag_timer
            0x00,                   // idiag_retrans
            0xe0, 0x7f,             // id.idiag_sport 57471 (network order)
            0xd9, 0xd6,             // id.idiag_dport 55766
            0x7f, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // id.idiag_src 127.0.0.1
            0x7f, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // id.idiag_dst 127.0.0.1
            0x00, 0x00, 0x00, 0x00, // id.idiag_if 0
            0x09, 0x57, 0x00, 0x00, // id.idiag_cookie[0]
            0x00, 0x00, 0x00, 0x00, // id.idiag_cookie[1]
            0x00, 0x00, 0x00, 0x00, // idiag_expires
            0x05, 0x00, 0x00, 0x00, // idiag_rqueue 5 (unread bytes)
            0x00, 0x00, 0x00, 0x00, // idiag_wqueue 0
            0x00, 0x00, 0x00, 0x00, // idiag_uid 0
            0xeb, 0xaa, 0x00, 0x00, // idiag_inode 43755
            // attributes: len u16, type u16, data, padded to 4
            0x05, 0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00, // INET_DIAG_SHUTDOWN: RCV_SHUTDOWN
            0x08, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, // INET_DIAG_MARK 0
            0x0c, 0x00, 0x15, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, // INET_DIAG_CGROUP_ID 1
            0x06, 0x00, 0x16, 0x00, 0x52, 0x00, 0x00, 0x00, // INET_DIAG_SOCKOPT flags
            0x28, 0x00, 0x07, 0x00,                         // INET_DIAG_SKMEMINFO, 9 x u32:
            0x45, 0x03, 0x00, 0x00, // rmem_alloc 837
            0x00, 0x00, 0x02, 0x00, // rcvbuf 131072
            0x00, 0x00, 0x00, 0x00, // wmem_alloc 0
            0x00, 0x1e, 0x3c, 0x00, // sndbuf 3939840
            0xbb, 0x0c, 0x00, 0x00, // fwd_alloc 3259
            0x00, 0x00, 0x00, 0x00, // wmem_queued 0
            0x00, 0x00, 0x00, 0x00, // optmem 0
            0x00, 0x00, 0x00, 0x00, // backlog 0
            0x00, 0x00, 0x00, 0x00, // drops 0
            0x1c, 0x01, 0x02, 0x00, // INET_DIAG_INFO, 280 bytes of struct tcp_info:
        ],
        &TCP_INFO,
    ]);

    /// struct tcp_info of REPLY: tcpi_state 8 (CLOSE_WAIT) at offset 0; tcpi_last_data_sent 68
    /// at 44, tcpi_last_ack_sent 0 at 48, tcpi_last_data_recv 68 (ms) at 52.
    #[rustfmt::skip]
    const TCP_INFO: [u8; 280] = [
        0x08, 0x00, 0x00, 0x00, 0x00, 0x07, 0xaa, 0x01, 0x40, 0x0d, 0x03, 0x00, 0x40, 0x9c, 0x00, 0x00,
        0x00, 0x80, 0x00, 0x00, 0x18, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x44, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x44, 0x00, 0x00, 0x00, 0x44, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00,
        0xcb, 0xff, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0b, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x7f,
        0x0a, 0x00, 0x00, 0x00, 0xcb, 0xff, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0xcb, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0e, 0x04, 0xd8, 0x7a, 0x09, 0x00, 0x00, 0x00,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    /// The NLMSG_DONE that ended that dump: header + int 0.
    #[rustfmt::skip]
    const DONE: [u8; 20] = [
        0x14, 0x00, 0x00, 0x00, // nlmsg_len 20
        0x03, 0x00,             // NLMSG_DONE
        0x02, 0x00,             // NLM_F_MULTI
        0x07, 0x00, 0x00, 0x00, // seq 7
        0x09, 0x57, 0x00, 0x00, // pid
        0x00, 0x00, 0x00, 0x00, // status 0
    ];

    const fn concat_bytes<const N: usize>(parts: &[&[u8]]) -> [u8; N] {
        let mut out = [0u8; N];
        let mut i = 0;
        let mut p = 0;
        while p < parts.len() {
            let mut j = 0;
            while j < parts[p].len() {
                out[i] = parts[p][j];
                i += 1;
                j += 1;
            }
            p += 1;
        }
        assert!(i == N);
        out
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn captured_reply_parses_field_by_field() {
        let mut buf = REPLY.to_vec();
        buf.extend_from_slice(&DONE);
        let msgs: Vec<NlMsg> = messages(&buf).collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0].msg_type, SOCK_DIAG_BY_FAMILY);
        assert_eq!(msgs[0].flags, NLM_F_MULTI);
        assert_eq!(msgs[0].seq, 7);
        assert_eq!(msgs[1].msg_type, NLMSG_DONE);

        let m = InetMsg::decode(msgs[0].payload).unwrap();
        assert_eq!((m.family, m.state, m.rqueue, m.wqueue), (2, 8, 5, 0));
        assert_eq!(m.inode, 43755);
        assert_eq!(m.id.cookie, 0x5709);

        let e = inet_entry(msgs[0].payload, IPPROTO_TCP).unwrap();
        assert_eq!(e.inode, 43755);
        assert_eq!(e.proto, Proto::Tcp);
        assert_eq!(e.state, SockState::CloseWait);
        assert_eq!(e.local, Some("127.0.0.1:57471".parse().unwrap()));
        assert_eq!(e.peer, Some("127.0.0.1:55766".parse().unwrap()));
        assert_eq!((e.recv_q, e.send_q), (5, 0));
        assert_eq!(e.idle_ms, Some(68));
        assert_eq!(e.uid, Some(0));
        assert_eq!(
            e.mem,
            Some(MemInfo {
                rmem_alloc: 837,
                rcvbuf: 131072,
                wmem_alloc: 0,
                sndbuf: 3939840,
                fwd_alloc: 3259,
                wmem_queued: 0,
                optmem: 0,
            })
        );
        assert_eq!(
            e.diag,
            Some(DiagId {
                family: 2,
                protocol: 6,
                ifindex: 0,
                cookie: 0x5709
            })
        );
        let types: Vec<u16> = attrs(&msgs[0].payload[INET_MSG_LEN..])
            .map(|a| a.0)
            .collect();
        assert_eq!(types, vec![8, 15, 21, 22, 7, 2]);
    }

    #[test]
    fn truncated_and_malformed_buffers_are_refused() {
        assert!(InetMsg::decode(&REPLY[16..80]).is_none());
        assert!(inet_entry(&REPLY[16..40], IPPROTO_TCP).is_none());
        // A header claiming more bytes than were received ends the walk.
        let mut bad = DONE;
        bad[0] = 0xff;
        assert_eq!(messages(&bad).count(), 0);
        assert_eq!(messages(&DONE[..10]).count(), 0);
        assert!(parse_meminfo(&[0; 24]).is_none());
        assert_eq!(tcp_info_last_data_recv(&TCP_INFO[..55]), None);
        // A zero-length attribute must not loop forever.
        assert_eq!(attrs(&[0, 0, 1, 0, 9, 9, 9, 9]).count(), 0);
    }

    #[test]
    fn nlmsg_error_carries_negative_errno() {
        #[rustfmt::skip]
        let err: [u8; 36] = [
            0x24, 0x00, 0x00, 0x00, // nlmsg_len 36
            0x02, 0x00,             // NLMSG_ERROR
            0x00, 0x01,             // NLM_F_CAPPED
            0x01, 0x00, 0x00, 0x00, // seq 1
            0x00, 0x00, 0x00, 0x00, // pid
            0xfe, 0xff, 0xff, 0xff, // error -2 (ENOENT: no such socket)
            // the request's header, echoed (payload capped)
            0x48, 0x00, 0x00, 0x00, 0x15, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let m: Vec<NlMsg> = messages(&err).collect();
        assert_eq!(m[0].msg_type, NLMSG_ERROR);
        assert_eq!(error_code(m[0].payload), Some(-libc::ENOENT));
    }

    /// unix_diag request for listening sockets, showing name, queues and uid.
    #[test]
    fn unix_request_bytes() {
        let b = unix_dump_request(1 << 10, UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID);
        #[rustfmt::skip]
        let want: [u8; 24] = [
            0x01,                   // sdiag_family AF_UNIX
            0x00,                   // sdiag_protocol
            0x00, 0x00,             // pad
            0x00, 0x04, 0x00, 0x00, // udiag_states: 1 << TCP_LISTEN (10)
            0x00, 0x00, 0x00, 0x00, // udiag_ino: any
            0x51, 0x00, 0x00, 0x00, // udiag_show: NAME | RQLEN | UID
            0xff, 0xff, 0xff, 0xff, // udiag_cookie[0]
            0xff, 0xff, 0xff, 0xff, // udiag_cookie[1]
        ];
        assert_eq!(b, want);
    }

    /// Captured: a listening unix socket bound to the abstract name "\0fdclose-golden".
    #[test]
    fn unix_reply_parses() {
        #[rustfmt::skip]
        let reply: [u8; 80] = [
            0x50, 0x00, 0x00, 0x00, 0x14, 0x00, 0x02, 0x00, // nlmsg_len 80, type 20, NLM_F_MULTI
            0x08, 0x00, 0x00, 0x00, 0x09, 0x57, 0x00, 0x00, // seq 8, pid
            // struct unix_diag_msg
            0x01,                   // udiag_family AF_UNIX
            0x01,                   // udiag_type SOCK_STREAM
            0x0a,                   // udiag_state TCP_LISTEN
            0x00,                   // pad
            0xf7, 0xaa, 0x00, 0x00, // udiag_ino 43767
            0x0b, 0x10, 0x00, 0x00, // udiag_cookie[0]
            0x00, 0x00, 0x00, 0x00, // udiag_cookie[1]
            // UNIX_DIAG_NAME, 16 bytes of sun_path: NUL + "fdclose-golden"
            0x13, 0x00, 0x00, 0x00,
            0x00, b'f', b'd', b'c', b'l', b'o', b's', b'e', b'-', b'g', b'o', b'l', b'd', b'e', b'n', 0x00,
            // UNIX_DIAG_RQLEN: backlog 0 of max 128 (listening sockets report the accept queue)
            0x0c, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00,
            // UNIX_DIAG_SHUTDOWN 0 (not requested; the kernel adds it)
            0x05, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00,
            // UNIX_DIAG_UID 0
            0x08, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let m: Vec<NlMsg> = messages(&reply).collect();
        assert_eq!(m.len(), 1);
        let e = unix_entry(m[0].payload).unwrap();
        assert_eq!(e.inode, 43767);
        assert_eq!(e.proto, Proto::Unix);
        assert_eq!(e.state, SockState::Listening);
        assert_eq!(e.unix_path.as_deref(), Some("@fdclose-golden"));
        assert_eq!((e.recv_q, e.send_q), (0, 128));
        assert_eq!(e.uid, Some(0));
        assert_eq!(e.diag.unwrap().cookie, 0x100b);
    }

    /// Live: the kernel answers a dump for a CLOSE_WAIT socket we create, state-filtered.
    #[test]
    fn live_dump_finds_our_close_wait_socket() {
        use std::io::Write;
        use std::os::unix::fs::MetadataExt;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        c.write_all(b"abc").unwrap();
        drop(c);
        let ino = std::fs::metadata(format!("/proc/self/fd/{}", a.as_raw_fd()))
            .unwrap()
            .ino();
        let mut s = DiagSocket::open().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let mut found = None;
            s.inet_sockets(IPPROTO_TCP, SockState::CloseWait.kernel_bit(), |e| {
                assert_eq!(e.state, SockState::CloseWait);
                if e.inode == ino {
                    found = Some(e)
                }
            })
            .unwrap();
            if let Some(e) = found {
                // 3 unread bytes, plus 1 for the FIN on kernels that count it in rcv_nxt.
                assert!((3..=4).contains(&e.recv_q), "recv_q {}", e.recv_q);
                assert_eq!(e.local, Some(a.local_addr().unwrap()));
                assert_eq!(e.peer, Some(a.peer_addr().unwrap()));
                assert!(e.mem.is_some() && e.idle_ms.is_some());
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no CLOSE_WAIT entry");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Looking it up again by its exact id answers, and a wrong cookie does not.
        let e = {
            let mut v = None;
            s.inet_sockets(IPPROTO_TCP, u32::MAX, |e| {
                if e.inode == ino {
                    v = Some(e)
                }
            })
            .unwrap();
            v.unwrap()
        };
        let mut req = inet_exact_request(&e).unwrap();
        assert_eq!(s.get(&req).unwrap().map(|g| g.inode), Some(ino));
        req.id.cookie ^= 1;
        assert_eq!(s.get(&req).unwrap(), None);
        // SOCK_DESTROY-shaped request with a stale cookie: the kernel refuses to touch it.
        let r = s.request_ack(SOCK_DESTROY, &req.encode());
        assert!(r.is_err(), "destroy with a wrong cookie must fail");
    }
}
