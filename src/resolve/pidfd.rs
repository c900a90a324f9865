//! The pidfd backend: describe a target's TCP sockets from duplicates of its own fds.
//!
//! sock_diag walks every TCP socket of the kernel's hash tables (all namespaces share them), so
//! its cost grows with the host's socket count — 20+ ms with 35,000 TIME-WAIT sockets — however
//! few sockets the target holds. With `pidfd_getfd` (Linux >= 5.6) we duplicate each socket fd of
//! the target into our process and ask the socket itself (TCP_INFO, getsockname, ioctls): the
//! cost depends on the target's fds only. The duplicate is closed at once; closing a duplicate
//! does not close the target's fd, and nothing here changes the socket.
//!
//! Fields are made to agree with what sock_diag reports for the same socket:
//! - state from `tcpi_state`; TCP_CLOSE gives [`SocketEntry::closed_fd`], as a socket in no
//!   table gives there;
//! - listeners: `recv_q`/`send_q` = accept queue length / backlog, which `tcp_get_info` puts in
//!   `tcpi_unacked` / `tcpi_sacked` for a listener, as `tcp_diag_get_info` does in
//!   `idiag_rqueue` / `idiag_wqueue`;
//! - others: `send_q` = SIOCOUTQ (`write_seq - snd_una`, as sock_diag); `recv_q` = SIOCINQ, plus
//!   one for an unread FIN once the peer has closed (SIOCINQ leaves the FIN out, sock_diag counts
//!   `rcv_nxt - copied_seq` with it). The FIN is unread if data is (reads are in order), or, with
//!   no data left, if the receive queue still holds memory (SO_MEMINFO `rmem_alloc`): the FIN's
//!   skb stays queued until a read returns 0, which frees it;
//! - peer: getpeername, or the unspecified address and port 0 when not connected (sock_diag's
//!   zero `idiag_dst`);
//! - `uid`: the socket inode's owner (fstat), which is where `sk_uid` comes from;
//! - `diag`: family (of getsockname's address), protocol (SO_PROTOCOL), ifindex (SO_BINDTOIFINDEX, `sk_bound_dev_if` as
//!   `idiag_if`), cookie (SO_COOKIE), so a later exact sock_diag lookup or SOCK_DESTROY works.
//!
//! - `mem`: SO_MEMINFO, the same `sk_get_meminfo` array sock_diag sends as INET_DIAG_SKMEMINFO.

use crate::model::{DiagId, MemInfo, Proto, SockState, SocketEntry};
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

/// Offsets in `struct tcp_info` (include/uapi/linux/tcp.h), stable since Linux 2.6.
const TCPI_STATE: usize = 0;
const TCPI_UNACKED: usize = 24;
const TCPI_SACKED: usize = 28;
const TCPI_LAST_DATA_RECV: usize = 52;

const TCP_LISTEN: u8 = 10;
const TCP_CLOSE: u8 = 7;

/// What fdclose uses of `struct tcp_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    pub state: u8,
    /// Listener: accept queue length. Others: unacknowledged segments.
    pub unacked: u32,
    /// Listener: backlog. Others: SACKed segments.
    pub sacked: u32,
    pub last_data_recv: u32,
}

/// `struct tcp_info` bytes (as getsockopt filled them) → the fields we use; `None` if too short.
pub fn parse_tcp_info(b: &[u8]) -> Option<TcpInfo> {
    let u =
        |o: usize| -> Option<u32> { Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?)) };
    Some(TcpInfo {
        state: *b.get(TCPI_STATE)?,
        unacked: u(TCPI_UNACKED)?,
        sacked: u(TCPI_SACKED)?,
        last_data_recv: u(TCPI_LAST_DATA_RECV)?,
    })
}

/// States in which the peer's FIN has been received (it counts in sock_diag's rqueue until read).
fn fin_received(state: SockState) -> bool {
    matches!(
        state,
        SockState::CloseWait | SockState::LastAck | SockState::Closing | SockState::TimeWait
    )
}

/// What one socket told us, before mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub inode: u64,
    pub uid: u32,
    pub family: u8,
    pub ifindex: u32,
    pub cookie: u64,
    pub info: TcpInfo,
    pub local: Option<SocketAddr>,
    /// `None`: not connected (ENOTCONN).
    pub peer: Option<SocketAddr>,
    /// SIOCINQ / SIOCOUTQ; not asked of listeners (EINVAL there).
    pub inq: u32,
    pub outq: u32,
    pub mem: Option<MemInfo>,
}

/// A probed TCP socket → the entry sock_diag would have given (see the module comment).
pub fn entry_of(p: &Probe) -> SocketEntry {
    let state = match SockState::from_tcp(p.info.state) {
        Some(s) if p.info.state != TCP_CLOSE => s,
        // Closed, or a number we do not know: what a socket in no table looks like.
        _ => return SocketEntry::closed_fd(p.inode, Proto::Tcp),
    };
    let unspecified = |port| match p.family as i32 {
        libc::AF_INET6 => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        _ => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
    };
    let (recv_q, send_q) = if p.info.state == TCP_LISTEN {
        (p.info.unacked as u64, p.info.sacked as u64)
    } else {
        let queued = p.inq > 0 || p.mem.is_some_and(|m| m.rmem_alloc > 0);
        let fin = u64::from(queued && fin_received(state));
        (p.inq as u64 + fin, p.outq as u64)
    };
    SocketEntry {
        inode: p.inode,
        proto: Proto::Tcp,
        state,
        local: Some(p.local.unwrap_or_else(|| unspecified(0))),
        peer: Some(p.peer.unwrap_or_else(|| unspecified(0))),
        unix_path: None,
        recv_q,
        send_q,
        idle_ms: Some(p.info.last_data_recv as u64),
        mem: p.mem,
        uid: Some(p.uid),
        diag: Some(DiagId {
            family: p.family,
            protocol: libc::IPPROTO_TCP as u8,
            ifindex: p.ifindex,
            cookie: p.cookie,
        }),
    }
}

/// `struct sockaddr_in` / `sockaddr_in6` bytes (network-order port and address) → address.
pub fn parse_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?) as i32;
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let a: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port))
        }
        libc::AF_INET6 => {
            let a: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port))
        }
        _ => None,
    }
}

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

/// `pidfd_getfd(pidfd, fd, 0)`: a duplicate of the target's fd in our process.
pub use crate::pidfd::pidfd_getfd_raw as getfd;
/// `pidfd_open(pid, 0)` (the wrapper shared with `--action shutdown`).
pub use crate::pidfd::pidfd_open_raw as open;

/// getsockopt into a buffer; returns the length the kernel filled.
fn sockopt_bytes(fd: &OwnedFd, level: i32, name: i32, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is valid for `len` writable bytes and `len` is a valid socklen_t the kernel
    // updates with what it wrote (never more than the len we passed).
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(last_err());
    }
    Ok(len as usize)
}

fn sockopt_u32(fd: &OwnedFd, level: i32, name: i32) -> io::Result<u32> {
    let mut b = [0u8; 4];
    sockopt_bytes(fd, level, name, &mut b)?;
    Ok(u32::from_ne_bytes(b))
}

fn sockopt_u64(fd: &OwnedFd, level: i32, name: i32) -> io::Result<u64> {
    let mut b = [0u8; 8];
    sockopt_bytes(fd, level, name, &mut b)?;
    Ok(u64::from_ne_bytes(b))
}

fn ioctl_int(fd: &OwnedFd, req: libc::c_ulong) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: SIOCINQ/SIOCOUTQ write one int through the pointer, which is valid.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, &mut v as *mut libc::c_int) };
    if r < 0 {
        return Err(last_err());
    }
    Ok(v.max(0) as u32)
}

type NameFn =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn name_of(fd: &OwnedFd, f: NameFn) -> io::Result<Option<SocketAddr>> {
    let mut ss = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: ss is a zeroed sockaddr_storage, large enough for any address; len says so.
    let r = unsafe { f(fd.as_raw_fd(), ss.as_mut_ptr().cast(), &mut len) };
    if r < 0 {
        let e = last_err();
        return match e.raw_os_error() {
            Some(libc::ENOTCONN) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: zero-initialised above, partly overwritten by the kernel: every byte is defined.
    let ss = unsafe { ss.assume_init() };
    // SAFETY: viewing the plain-data struct as bytes, within its size.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&ss as *const libc::sockaddr_storage).cast::<u8>(),
            size_of::<libc::sockaddr_storage>(),
        )
    };
    Ok(parse_sockaddr(&bytes[..(len as usize).min(bytes.len())]))
}

/// SO_MEMINFO (Linux 4.12+); `None` if refused.
fn meminfo(fd: &OwnedFd) -> Option<MemInfo> {
    const SO_MEMINFO: i32 = 55; // include/uapi/asm-generic/socket.h
    let mut b = [0u8; 4 * 16];
    let n = sockopt_bytes(fd, libc::SOL_SOCKET, SO_MEMINFO, &mut b).ok()?;
    super::diag::parse_meminfo(&b[..n])
}

/// What became of one of the target's fds.
#[derive(Debug)]
pub enum Probed {
    Tcp(Probe),
    /// A socket, but not TCP over IPv4/IPv6.
    NotTcp,
    /// The fd was closed, or now holds another file, since the fd table was read.
    Changed,
}

/// Duplicate the target's `fd`, check it still holds socket `inode`, and ask it. The duplicate
/// is closed on return. Errors are those of pidfd_getfd other than "no such fd" (EBADF), e.g.
/// EPERM, for the caller to fall back on.
pub fn probe(pidfd: &OwnedFd, fd: i32, inode: u64) -> io::Result<Probed> {
    let dup = match getfd(pidfd, fd) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => return Ok(Probed::Changed),
        Err(e) => return Err(e),
    };
    let mut st = MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: st is valid for one struct stat.
    if unsafe { libc::fstat(dup.as_raw_fd(), st.as_mut_ptr()) } < 0 {
        return Err(last_err());
    }
    // SAFETY: fstat succeeded and filled it (it was zeroed before anyway).
    let st = unsafe { st.assume_init() };
    if st.st_ino != inode || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Ok(Probed::Changed);
    }
    // The family from getsockname (an inet socket always has a name, 0.0.0.0:0 if unbound),
    // which saves a getsockopt(SO_DOMAIN) per fd: other families parse to None.
    let Some(local) = name_of(&dup, libc::getsockname)? else {
        return Ok(Probed::NotTcp);
    };
    let family = if local.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let protocol = sockopt_u32(&dup, libc::SOL_SOCKET, libc::SO_PROTOCOL)? as i32;
    if protocol != libc::IPPROTO_TCP {
        return Ok(Probed::NotTcp);
    }
    let mut raw = [0u8; 256];
    let n = sockopt_bytes(&dup, libc::IPPROTO_TCP, libc::TCP_INFO, &mut raw)?;
    let info =
        parse_tcp_info(&raw[..n]).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    // Non-listeners only: SIOCINQ is EINVAL on a listener, and its queues come from tcp_info.
    // The state may have moved on since TCP_INFO (CLOSE_WAIT → LAST_ACK...): an error here is
    // not fatal, the numbers are then 0.
    let (inq, outq) = if info.state == TCP_LISTEN {
        (0, 0)
    } else {
        (
            ioctl_int(&dup, libc::FIONREAD as libc::c_ulong).unwrap_or(0),
            ioctl_int(&dup, libc::TIOCOUTQ as libc::c_ulong).unwrap_or(0),
        )
    };
    Ok(Probed::Tcp(Probe {
        inode,
        uid: st.st_uid,
        family: family as u8,
        ifindex: sockopt_u32(&dup, libc::SOL_SOCKET, libc::SO_BINDTOIFINDEX).unwrap_or(0),
        cookie: sockopt_u64(&dup, libc::SOL_SOCKET, libc::SO_COOKIE)?,
        info,
        local: Some(local),
        peer: name_of(&dup, libc::getpeername)?,
        inq,
        outq,
        mem: meminfo(&dup),
    }))
}

/// The host's TCP sockets as /proc/net/sockstat counts them: `inuse` (hashed sockets of our
/// namespace) + `tw` (TIME-WAIT). `alloc` is taken when larger: it counts every namespace's,
/// and sock_diag walks the shared hash tables of all namespaces.
pub fn parse_sockstat_tcp(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let get = |k: &str| -> Option<u64> {
        let i = words.iter().position(|w| *w == k)?;
        words.get(i + 1)?.parse().ok()
    };
    let inuse = get("inuse")?;
    let tw = get("tw").unwrap_or(0);
    let alloc = get("alloc").unwrap_or(0);
    Some(inuse.max(alloc) + tw)
}

/// Host TCP sockets from /proc/net/sockstat; `None` when unreadable.
pub fn host_tcp_sockets() -> Option<u64> {
    parse_sockstat_tcp(&std::fs::read_to_string("/proc/net/sockstat").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener's tcp_info as Linux 6.x fills it: state 10, 2 connections waiting in the accept
    /// queue (unacked), backlog 16 (sacked), last data received 1234 ms ago.
    fn listener_info() -> Vec<u8> {
        let mut b = vec![0u8; 104];
        b[0] = 10; // tcpi_state
        b[8..12].copy_from_slice(&200_000u32.to_ne_bytes()); // tcpi_rto
        b[24..28].copy_from_slice(&2u32.to_ne_bytes()); // tcpi_unacked
        b[28..32].copy_from_slice(&16u32.to_ne_bytes()); // tcpi_sacked
        b[52..56].copy_from_slice(&1234u32.to_ne_bytes()); // tcpi_last_data_recv
        b
    }

    #[test]
    fn tcp_info_fields_at_their_offsets() {
        let i = parse_tcp_info(&listener_info()).unwrap();
        assert_eq!(
            i,
            TcpInfo {
                state: 10,
                unacked: 2,
                sacked: 16,
                last_data_recv: 1234
            }
        );
        assert_eq!(parse_tcp_info(&listener_info()[..55]), None);
    }

    fn probe(state: u8, inq: u32, outq: u32) -> Probe {
        let mut b = listener_info();
        b[0] = state;
        Probe {
            inode: 77,
            uid: 1000,
            family: libc::AF_INET as u8,
            ifindex: 0,
            cookie: 0x5709,
            info: parse_tcp_info(&b).unwrap(),
            local: Some("127.0.0.1:8080".parse().unwrap()),
            peer: None,
            inq,
            outq,
            mem: None,
        }
    }

    #[test]
    fn listener_queues_come_from_tcp_info_and_peer_is_unspecified() {
        let e = entry_of(&probe(10, 0, 0));
        assert_eq!(e.state, SockState::Listening);
        assert_eq!((e.recv_q, e.send_q), (2, 16));
        assert_eq!(e.peer, Some("0.0.0.0:0".parse().unwrap()));
        assert_eq!(e.uid, Some(1000));
        assert_eq!(e.idle_ms, Some(1234));
        let d = e.diag.unwrap();
        assert_eq!((d.family, d.protocol, d.cookie), (2, 6, 0x5709));
    }

    #[test]
    fn close_wait_counts_the_unread_fin_with_queued_data() {
        let mut p = probe(8, 3, 5);
        p.peer = Some("127.0.0.1:40000".parse().unwrap());
        let e = entry_of(&p);
        assert_eq!(e.state, SockState::CloseWait);
        assert_eq!((e.recv_q, e.send_q), (4, 5));
        // Established: no FIN to count.
        let e = entry_of(&probe(1, 3, 5));
        assert_eq!((e.state, e.recv_q), (SockState::Established, 3));
        // No data: the FIN was read (a read returned 0 and freed its skb)...
        assert_eq!(entry_of(&probe(8, 0, 0)).recv_q, 0);
        // ...unless the receive queue still holds memory: the FIN's skb, unread.
        let mut p = probe(8, 0, 0);
        p.mem = crate::resolve::diag::parse_meminfo(
            &[768u32, 131072, 0, 16384, 0, 0, 0]
                .iter()
                .flat_map(|v| v.to_ne_bytes())
                .collect::<Vec<u8>>(),
        );
        assert_eq!(p.mem.unwrap().rmem_alloc, 768);
        assert_eq!(entry_of(&p).recv_q, 1);
    }

    #[test]
    fn tcp_close_and_unknown_states_are_closed_fds() {
        assert_eq!(
            entry_of(&probe(7, 0, 0)),
            SocketEntry::closed_fd(77, Proto::Tcp)
        );
        assert_eq!(
            entry_of(&probe(99, 0, 0)),
            SocketEntry::closed_fd(77, Proto::Tcp)
        );
    }

    #[test]
    fn sockaddrs_v4_and_v6() {
        let mut v4 = vec![0u8; 16];
        v4[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&[0x1f, 0x90]); // port 8080, network order
        v4[4..8].copy_from_slice(&[127, 0, 0, 21]);
        assert_eq!(
            parse_sockaddr(&v4),
            Some("127.0.0.21:8080".parse().unwrap())
        );
        let mut v6 = vec![0u8; 28];
        v6[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&[0xd9, 0x56]); // 55638
        v6[18..20].copy_from_slice(&[0xff, 0xff]);
        v6[20..24].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(
            parse_sockaddr(&v6),
            Some("[::ffff:127.0.0.1]:55638".parse().unwrap())
        );
        assert_eq!(parse_sockaddr(&v6[..20]), None);
        let mut unix = vec![0u8; 16];
        unix[0..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(parse_sockaddr(&unix), None);
    }

    #[test]
    fn sockstat_tcp_line() {
        let text = "sockets: used 412\n\
                    TCP: inuse 7 orphan 0 tw 35012 alloc 2011 mem 3\n\
                    UDP: inuse 2 mem 0\n";
        assert_eq!(parse_sockstat_tcp(text), Some(2011 + 35012));
        assert_eq!(
            parse_sockstat_tcp("TCP: inuse 9 orphan 0 tw 1 alloc 3 mem 0\n"),
            Some(10)
        );
        assert_eq!(parse_sockstat_tcp("UDP: inuse 2 mem 0\n"), None);
    }
}
