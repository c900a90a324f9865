//! Checking an fd right before we act on it and its effect right after, from /proc while the
//! process is frozen.

use nix::fcntl::AtFlags;
use nix::sys::stat::{fstatat, SFlag};
use std::os::fd::AsRawFd;

/// What fd `fd` holds now in the fd table of thread `tid` of `pid` (the one our calls act on;
/// /proc/PID/fd is empty once the leader has exited): (st_ino of the object, link text), `None`
/// when not open. The plain way (stat and readlink by full path), kept to check [`FdTable`]
/// against.
#[cfg(test)]
pub fn fd_object(pid: i32, tid: i32, fd: i32) -> Option<(u64, String)> {
    use std::os::unix::fs::MetadataExt;
    let p = format!("/proc/{pid}/task/{tid}/fd/{fd}");
    let ino = std::fs::metadata(&p).ok()?.ino();
    let link = std::fs::read_link(&p)
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".into());
    Some((ino, link))
}

/// The fd table of thread `tid` of `pid`, opened once: each look-up is one `fstatat` relative to
/// it rather than a walk of /proc/PID/task/TID/fd/N from the root (thousands of fds are checked
/// twice each while the process is frozen). Falls back to full paths if the directory cannot be
/// opened.
pub struct FdTable {
    pid: i32,
    tid: i32,
    dir: Option<std::fs::File>,
}

/// What an fd holds, as `stat` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub ino: u64,
    pub socket: bool,
}

impl FdTable {
    pub fn open(pid: i32, tid: i32) -> FdTable {
        // The leader's table is also /proc/PID/fd, whose entries the resolver has just looked
        // up: their dentries are cached there, which makes each look-up cheaper.
        let path = if pid == tid {
            format!("/proc/{pid}/fd")
        } else {
            format!("/proc/{pid}/task/{tid}/fd")
        };
        let dir = std::fs::File::open(path).ok();
        FdTable { pid, tid, dir }
    }

    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// The object fd `fd` holds now (one `stat`, no `readlink`); `None` when not open.
    pub fn held(&self, fd: i32) -> Option<Held> {
        let st = match &self.dir {
            Some(d) => fstatat(
                Some(d.as_raw_fd()),
                fd.to_string().as_str(),
                AtFlags::empty(),
            ),
            None => nix::sys::stat::stat(
                format!("/proc/{}/task/{}/fd/{fd}", self.pid, self.tid).as_str(),
            ),
        }
        .ok()?;
        Some(Held {
            ino: st.st_ino,
            socket: SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK,
        })
    }

    /// The text /proc shows for the fd's link. A socket's is always `socket:[INODE]` (sockfs
    /// names its inodes so), which saves a `readlink`; anything else is read.
    pub fn link(&self, fd: i32, held: Held) -> String {
        if held.socket {
            return socket_link(held.ino);
        }
        let l = match &self.dir {
            Some(d) => nix::fcntl::readlinkat(Some(d.as_raw_fd()), fd.to_string().as_str()),
            None => nix::fcntl::readlink(
                format!("/proc/{}/task/{}/fd/{fd}", self.pid, self.tid).as_str(),
            ),
        };
        l.map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "?".into())
    }
}

/// The link text of a socket fd (net/socket.c sockfs_dname).
pub fn socket_link(ino: u64) -> String {
    format!("socket:[{ino}]")
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

    #[test]
    fn fd_table_stats_without_readlink_for_sockets() {
        use std::os::fd::AsRawFd;
        let me = std::process::id() as i32;
        let t = FdTable::open(me, me);
        assert!(t.dir.is_some());
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        let h = t.held(f.as_raw_fd()).unwrap();
        assert!(!h.socket);
        assert_eq!(
            Some((h.ino, t.link(f.as_raw_fd(), h))),
            fd_object(me, me, f.as_raw_fd())
        );
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let h = t.held(s.as_raw_fd()).unwrap();
        assert!(h.socket);
        // The shortcut gives exactly what readlink would.
        assert_eq!(
            Some((h.ino, t.link(s.as_raw_fd(), h))),
            fd_object(me, me, s.as_raw_fd())
        );
        assert_eq!(t.held(1_000_000), None);
        let by_path = FdTable {
            pid: me,
            tid: me,
            dir: None,
        };
        assert_eq!(by_path.held(s.as_raw_fd()), Some(h));
    }
}
