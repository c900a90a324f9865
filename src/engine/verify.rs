//! Checking an fd right before we act on it and its effect right after, from /proc while the
//! process is frozen.

use nix::fcntl::AtFlags;
use nix::sys::stat::{fstatat, SFlag};
use std::collections::HashMap;
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
    path: String,
    dir: Option<std::fs::File>,
    /// FDSize from the thread's status: the table's capacity, a bound on how many fds a listing
    /// goes through.
    capacity: Option<usize>,
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
        let dir = std::fs::File::open(&path).ok();
        let capacity = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
            .ok()
            .and_then(|s| fd_size(&s));
        FdTable {
            pid,
            tid,
            path,
            dir,
            capacity,
        }
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

    /// Whether one listing of the table costs less than a `stat` of each of `n` fds. A listing
    /// of /proc/PID/fd sets up an entry for every open fd (about 1 us each here, a `stat` about
    /// 5 us), so it pays once `n` is a quarter of the table's capacity.
    pub fn listing_pays(&self, n: usize) -> bool {
        self.capacity.is_some_and(|c| n * 4 >= c)
    }

    /// The fds within `range` that are open now, from one listing of the table (one getdents
    /// pass instead of a `stat` per fd: cheaper once a closed run is long). `None` if the
    /// directory cannot be read.
    pub fn open_within(&self, range: std::ops::RangeInclusive<i32>) -> Option<Vec<i32>> {
        let mut open = Vec::new();
        for e in std::fs::read_dir(&self.path).ok()? {
            let fd = e
                .ok()?
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok());
            if let Some(fd) = fd.filter(|fd| range.contains(fd)) {
                open.push(fd);
            }
        }
        Some(open)
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

/// `FDSize:` of a /proc status text.
fn fd_size(status: &str) -> Option<usize> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .and_then(|v| v.trim().parse().ok())
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

/// TCP state of every socket listed in the network namespace of thread `tid` of `pid`, by inode:
/// one read of /proc/.../net/tcp and tcp6 for a whole batch (they list every socket of the
/// namespace, tens of thousands on a busy server: reading them per fd was O(fds x sockets)).
pub fn tcp_states(pid: i32, tid: i32) -> HashMap<u64, u8> {
    let mut m = HashMap::new();
    for t in ["tcp", "tcp6"] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/net/{t}")) {
            tcp_states_in(&text, &mut m);
        }
    }
    m
}

/// Add inode → TCP state for every row of a /proc/net/tcp{,6} table.
pub fn tcp_states_in(table: &str, into: &mut HashMap<u64, u8>) {
    for l in table.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let (Some(st), Some(ino)) = (f.get(3), f.get(9)) {
            if let (Ok(st), Ok(ino)) = (u8::from_str_radix(st, 16), ino.parse::<u64>()) {
                into.insert(ino, st);
            }
        }
    }
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
    fn fd_size_from_status() {
        let st = "Name:\tjava\nUmask:\t0022\nFDSize:\t2048\nGroups:\t\n";
        assert_eq!(fd_size(st), Some(2048));
        assert_eq!(fd_size("Name:\tx\n"), None);
    }

    #[test]
    fn state_by_inode() {
        assert_eq!(tcp_state_in(TCP, 31337), Some(0x0a));
        assert_eq!(tcp_state_in(TCP, 424242), Some(0x08));
        assert_eq!(tcp_state_in(TCP, 1), None);
    }

    #[test]
    fn states_of_a_whole_table() {
        let mut m = HashMap::new();
        tcp_states_in(TCP, &mut m);
        assert_eq!(m.len(), 2);
        assert_eq!(m[&31337], 0x0a);
        assert_eq!(m[&424242], 0x08);
        for ino in [31337, 424242, 1] {
            assert_eq!(m.get(&ino).copied(), tcp_state_in(TCP, ino));
        }
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
        let listed = t.open_within(s.as_raw_fd()..=s.as_raw_fd() + 1).unwrap();
        assert!(listed.contains(&s.as_raw_fd()));
        assert!(t.open_within(1_000_000..=1_000_001).unwrap().is_empty());
        let by_path = FdTable {
            pid: me,
            tid: me,
            path: String::new(),
            dir: None,
            capacity: None,
        };
        assert!(
            !by_path.listing_pays(1_000_000),
            "capacity unknown: stat each"
        );
        assert!(t.capacity.is_some_and(|c| c >= 64));
        assert_eq!(by_path.held(s.as_raw_fd()), Some(h));
    }
}
