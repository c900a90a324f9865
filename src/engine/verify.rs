//! Checking an fd right before we act on it and its effect right after, from /proc while the
//! process is frozen.

use std::os::unix::fs::MetadataExt;

/// What fd `fd` holds now in the fd table of thread `tid` of `pid` (the one our calls act on;
/// /proc/PID/fd is empty once the leader has exited): (st_ino of the object, link text), `None`
/// when not open.
pub fn fd_object(pid: i32, tid: i32, fd: i32) -> Option<(u64, String)> {
    let p = format!("/proc/{pid}/task/{tid}/fd/{fd}");
    let ino = std::fs::metadata(&p).ok()?.ino();
    let link = std::fs::read_link(&p)
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".into());
    Some((ino, link))
}

/// The TCP state number (include/net/tcp_states.h) of socket `inode` in a /proc/net/tcp{,6}
/// table, if listed there.
pub fn tcp_state_in(table: &str, inode: u64) -> Option<u8> {
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // sl local rem st tx:rx tr:tm retrnsmt uid timeout inode ...
        if f.get(9)?.parse::<u64>().ok()? == inode {
            u8::from_str_radix(f.get(3)?, 16).ok()
        } else {
            None
        }
    })
}

/// TCP state of socket `inode` in the network namespace of thread `tid` of `pid`; `None` when no
/// table lists it (not TCP, or closed and unhashed).
pub fn tcp_state(pid: i32, tid: i32, inode: u64) -> Option<u8> {
    ["tcp", "tcp6"].iter().find_map(|t| {
        let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/net/{t}")).ok()?;
        tcp_state_in(&text, inode)
    })
}

/// Whether a shutdown visibly took effect: the TCP state moved (ESTABLISHED → FIN-WAIT-1,
/// CLOSE-WAIT → LAST-ACK, LISTEN → gone...).
pub fn shutdown_took_effect(before: Option<u8>, after: Option<u8>) -> bool {
    before.is_some() && before != after
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:A2C4 08 00000000:00000001 00:00000000 00000000     0        0 424242 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn state_by_inode() {
        assert_eq!(tcp_state_in(TCP, 31337), Some(0x0a));
        assert_eq!(tcp_state_in(TCP, 424242), Some(0x08));
        assert_eq!(tcp_state_in(TCP, 1), None);
    }

    #[test]
    fn shutdown_effect() {
        assert!(
            shutdown_took_effect(Some(8), Some(9)),
            "close-wait to last-ack"
        );
        assert!(shutdown_took_effect(Some(10), None), "listener unhashed");
        assert!(
            !shutdown_took_effect(Some(1), Some(1)),
            "SHUT_RD leaves established"
        );
        assert!(
            !shutdown_took_effect(None, None),
            "not TCP: not observable here"
        );
    }

    #[test]
    fn own_fds_are_seen() {
        let me = std::process::id() as i32;
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        use std::os::fd::AsRawFd;
        let (ino, link) = fd_object(me, me, f.as_raw_fd()).unwrap();
        assert!(ino > 0 && link.ends_with("/stat"), "{link}");
        assert_eq!(fd_object(me, me, 1_000_000), None);
    }
}
