//! /proc/PID/net/{tcp,tcp6,udp,udp6,unix}: the fallback when netlink sock_diag is unavailable.
//!
//! The parsers are pure (text in, entries out); [`read_table`] is the only function that reads a
//! file. Those files show the sockets of PID's network namespace, which is exactly what we need.
//!
//! Format (net/ipv4/tcp_ipv4.c `get_tcp4_sock`, net/ipv6/tcp_ipv6.c `get_tcp6_sock`):
//! `sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...`. Addresses are
//! the hex of each network-order 32-bit word printed as a host integer (`%08X`), so on a
//! little-endian host 127.0.0.1 reads `0100007F`; ports are printed after ntohs (`%04X`).

use crate::model::{Proto, SockState, SocketEntry};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Directory the tables are read from: /proc/PID/net, or /proc/self/net (ours).
pub fn table_dir(pid: Option<i32>) -> String {
    match pid {
        Some(p) => format!("/proc/{p}/net"),
        None => "/proc/self/net".to_string(),
    }
}

/// Every socket of `proto` in PID's network namespace (ours when `pid` is None).
pub fn read_table(pid: Option<i32>, proto: Proto) -> io::Result<Vec<SocketEntry>> {
    let dir = table_dir(pid);
    let files: &[(&str, bool)] = match proto {
        Proto::Tcp => &[("tcp", false), ("tcp6", true)],
        Proto::Udp => &[("udp", false), ("udp6", true)],
        Proto::Unix => &[("unix", false)],
        Proto::Other => &[],
    };
    let mut out = Vec::new();
    for (name, _v6) in files {
        let path = format!("{dir}/{name}");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            // tcp6/udp6 are absent when IPv6 is disabled: no such sockets, not an error.
            Err(e) if e.kind() == io::ErrorKind::NotFound && name.ends_with('6') => continue,
            Err(e) => return Err(e),
        };
        let text = String::from_utf8_lossy(&text);
        match proto {
            Proto::Unix => out.extend(parse_unix(&text)),
            p => out.extend(parse_inet(&text, p)),
        }
    }
    Ok(out)
}

/// Parse /proc/net/{tcp,tcp6,udp,udp6} text (header line included). Malformed lines are skipped.
pub fn parse_inet(text: &str, proto: Proto) -> Vec<SocketEntry> {
    text.lines()
        .skip(1)
        .filter_map(|l| parse_inet_line(l, proto))
        .collect()
}

/// One data line of /proc/net/tcp-like text.
pub fn parse_inet_line(line: &str, proto: Proto) -> Option<SocketEntry> {
    let mut f = line.split_ascii_whitespace();
    let _sl = f.next()?;
    let local = parse_hex_addr(f.next()?)?;
    let peer = parse_hex_addr(f.next()?)?;
    let st = u8::from_str_radix(f.next()?, 16).ok()?;
    let (tx, rx) = f.next()?.split_once(':')?;
    let send_q = u64::from_str_radix(tx, 16).ok()?;
    let recv_q = u64::from_str_radix(rx, 16).ok()?;
    let _tr_when = f.next()?;
    let _retrnsmt = f.next()?;
    let uid: u32 = f.next()?.parse().ok()?;
    let _timeout = f.next()?;
    let inode: u64 = f.next()?.parse().ok()?;
    let state = inet_state(proto, st)?;
    Some(SocketEntry {
        inode,
        proto,
        state,
        local: Some(local),
        peer: Some(peer),
        unix_path: None,
        recv_q,
        send_q,
        idle_ms: None,
        mem: None,
        uid: Some(uid),
        diag: None,
    })
}

/// Kernel state number → state, per protocol. UDP uses TCP_ESTABLISHED for connected sockets and
/// TCP_CLOSE for the rest, which `ss` calls UNCONN.
pub fn inet_state(proto: Proto, st: u8) -> Option<SockState> {
    match (proto, st) {
        (Proto::Udp, 7) => Some(SockState::Unconnected),
        (Proto::Udp, 1) => Some(SockState::Established),
        (Proto::Udp, _) => Some(SockState::Unconnected),
        // TCP_BOUND_INACTIVE (6.8+, sock_diag only): bound, never connected: a closed socket.
        (_, super::TCP_BOUND_INACTIVE) => Some(SockState::Closed),
        (_, n) => SockState::from_tcp(n),
    }
}

/// `0100007F:0CEA` or `00000000000000000000000001000000:1F90` → socket address.
pub fn parse_hex_addr(s: &str) -> Option<SocketAddr> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let ip = match a.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word_bytes(a)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word_bytes(&a[i * 8..i * 8 + 8])?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The kernel printed the u32 as it sits in memory, read as a host integer: its native-endian
/// bytes are the network-order address bytes.
fn word_bytes(hex: &str) -> Option<[u8; 4]> {
    Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
}

/// `__SO_ACCEPTCON` in the Flags column: a listening socket.
const SO_ACCEPTCON: u32 = 1 << 16;
/// `SS_CONNECTED` in the St column (enum socket_state).
const SS_CONNECTED: u8 = 3;

/// Parse /proc/net/unix (net/unix/af_unix.c `unix_seq_show`):
/// `Num RefCount Protocol Flags Type St Inode Path`; abstract names start with `@`.
pub fn parse_unix(text: &str) -> Vec<SocketEntry> {
    text.lines().skip(1).filter_map(parse_unix_line).collect()
}

pub fn parse_unix_line(line: &str) -> Option<SocketEntry> {
    let mut f = line.split_ascii_whitespace();
    let _num = f.next()?;
    let _refs = f.next()?;
    let _protocol = f.next()?;
    let flags = u32::from_str_radix(f.next()?, 16).ok()?;
    let _type = f.next()?;
    let st = u8::from_str_radix(f.next()?, 16).ok()?;
    let inode: u64 = f.next()?.parse().ok()?;
    // The path is the rest of the line (it may contain spaces).
    let path = line
        .split_ascii_whitespace()
        .nth(7)
        .map(|_| {
            let mut rest = line.trim_start();
            for _ in 0..7 {
                rest = rest.trim_start();
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                rest = &rest[end..];
            }
            rest.trim().to_string()
        })
        .filter(|p| !p.is_empty());
    let state = if flags & SO_ACCEPTCON != 0 {
        SockState::Listening
    } else if st == SS_CONNECTED {
        SockState::Established
    } else {
        SockState::Unconnected
    };
    Some(SocketEntry {
        inode,
        proto: Proto::Unix,
        state,
        local: None,
        peer: None,
        unix_path: path,
        recv_q: 0,
        send_q: 0,
        idle_ms: None,
        mem: None,
        uid: None,
        diag: None,
    })
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;

    // Captured on an x86_64 host (little-endian), trailing columns as the kernel prints them.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 41234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0200007F:D431 08 00000000:00000010 00:00000000 00000000  1000        0 41240 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:D431 0100007F:1F90 05 00000000:00000000 00:00000000 00000000  1000        0 0 2 0000000000000000 20 4 30 10 -1
   3: 0500000A:0016 0100000A:C350 01 00000020:00000000 01:00000014 00000000     0        0 55 4 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn tcp_lines_parse_addresses_queues_states_and_inodes() {
        let v = parse_inet(TCP, Proto::Tcp);
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].state, SockState::Listening);
        assert_eq!(v[0].local, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(v[0].peer, Some("0.0.0.0:0".parse().unwrap()));
        assert_eq!(v[0].recv_q, 3);
        assert_eq!(v[0].inode, 41234);
        assert_eq!(v[1].state, SockState::CloseWait);
        assert_eq!(v[1].peer, Some("127.0.0.2:54321".parse().unwrap()));
        assert_eq!(v[1].recv_q, 16);
        assert_eq!(v[1].uid, Some(1000));
        // An orphan: inode 0.
        assert_eq!(v[2].state, SockState::FinWait2);
        assert_eq!(v[2].inode, 0);
        assert_eq!(v[3].local, Some("10.0.0.5:22".parse().unwrap()));
        assert_eq!(v[3].peer, Some("10.0.0.1:50000".parse().unwrap()));
        assert_eq!(v[3].send_q, 0x20);
        assert_eq!(v[3].state, SockState::Established);
    }

    #[test]
    fn every_tcp_state_number_maps() {
        let names = [
            (1, SockState::Established),
            (2, SockState::SynSent),
            (3, SockState::SynRecv),
            (4, SockState::FinWait1),
            (5, SockState::FinWait2),
            (6, SockState::TimeWait),
            (7, SockState::Closed),
            (8, SockState::CloseWait),
            (9, SockState::LastAck),
            (10, SockState::Listening),
            (11, SockState::Closing),
            (12, SockState::NewSynRecv),
            (13, SockState::Closed),
        ];
        for (n, s) in names {
            let line = format!(
                "   0: 0100007F:1F90 0100007F:1F91 {n:02X} 00000000:00000000 00:00000000 00000000     0        0 7 1 0 20 4 30 10 -1"
            );
            assert_eq!(parse_inet_line(&line, Proto::Tcp).unwrap().state, s, "{n}");
        }
        let bad = "   0: 0100007F:1F90 0100007F:1F91 0E 00000000:00000000 00:00000000 00000000     0        0 7";
        assert!(parse_inet_line(bad, Proto::Tcp).is_none());
    }

    // tcp6: ::1 listener, an IPv4-mapped CLOSE_WAIT peer (::ffff:10.0.0.5), a global address.
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9001 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000500000A:C001 08 00000000:00000005 00:00000000 00000000     0        0 9002 1 0000000000000000 20 4 1 10 -1
   2: B80D0120000000000000000001000000:01BB B80D0120000000000000000002000000:E000 01 00000000:00000000 00:00000000 00000000     0        0 9003 1 0000000000000000 20 4 1 10 -1
";

    #[test]
    fn tcp6_lines_including_ipv4_mapped_peers() {
        let v = parse_inet(TCP6, Proto::Tcp);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].local, Some("[::1]:8080".parse().unwrap()));
        assert_eq!(v[0].peer, Some("[::]:0".parse().unwrap()));
        assert_eq!(v[1].local, Some("[::ffff:127.0.0.1]:8080".parse().unwrap()));
        assert_eq!(v[1].peer, Some("[::ffff:10.0.0.5]:49153".parse().unwrap()));
        assert_eq!(v[1].peer_display(), Some("10.0.0.5:49153".parse().unwrap()));
        assert_eq!(v[1].state, SockState::CloseWait);
        assert_eq!(v[1].recv_q, 5);
        assert_eq!(v[2].local, Some("[2001:db8::1]:443".parse().unwrap()));
        assert_eq!(v[2].peer, Some("[2001:db8::2]:57344".parse().unwrap()));
    }

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 20001 2 0000000000000000 0
  200: 0100007F:9C40 0100007F:0035 01 00000000:00000200 00:00000000 00000000   100        0 20002 2 0000000000000000 3
";

    #[test]
    fn udp_states_are_unconnected_or_established() {
        let v = parse_inet(UDP, Proto::Udp);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].state, SockState::Unconnected);
        assert_eq!(v[0].local, Some("0.0.0.0:68".parse().unwrap()));
        assert_eq!(v[0].proto, Proto::Udp);
        assert_eq!(v[1].state, SockState::Established);
        assert_eq!(v[1].peer, Some("127.0.0.1:53".parse().unwrap()));
        assert_eq!(v[1].recv_q, 0x200);
        assert_eq!(v[1].uid, Some(100));
    }

    const UNIX: &str = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 16453 /run/systemd/private
0000000000000000: 00000003 00000000 00000000 0001 03 16500 /run/dbus/system bus socket
0000000000000000: 00000003 00000000 00000000 0001 03 16501
0000000000000000: 00000002 00000000 00000000 0002 01 16502 @abstract/name
";

    #[test]
    fn unix_lines_listening_connected_unconnected_paths() {
        let v = parse_unix(UNIX);
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].state, SockState::Listening);
        assert_eq!(v[0].unix_path.as_deref(), Some("/run/systemd/private"));
        assert_eq!(v[0].inode, 16453);
        assert_eq!(v[1].state, SockState::Established);
        assert_eq!(
            v[1].unix_path.as_deref(),
            Some("/run/dbus/system bus socket")
        );
        assert_eq!(v[2].unix_path, None);
        assert_eq!(v[2].state, SockState::Established);
        assert_eq!(v[3].state, SockState::Unconnected);
        assert_eq!(v[3].unix_path.as_deref(), Some("@abstract/name"));
        assert!(v.iter().all(|e| e.proto == Proto::Unix));
    }
}
