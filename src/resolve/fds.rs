//! A process's fd table from /proc/PID/fd: socket inodes, epoll instances and what they watch.
//!
//! Speed matters (a leaking server holds tens of thousands of fds): the directory is read once
//! through one open dir fd and every link is read with `readlinkat` relative to it, into one reused
//! buffer, with no per-fd path allocation. Only epoll fds get their /proc/PID/fdinfo read.

use crate::model::Proto;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// A socket fd: the N of `socket:[N]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketFd {
    pub fd: i32,
    pub inode: u64,
}

/// One `tfd:` line of an epoll fdinfo: the watched fd number and, when printed, its inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpollWatch {
    pub tfd: i32,
    pub ino: Option<u64>,
}

/// The parts of an fd table the resolver needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FdTable {
    pub sockets: Vec<SocketFd>,
    /// epoll fd → what it watches.
    pub epolls: Vec<(i32, Vec<EpollWatch>)>,
}

impl FdTable {
    /// (watched fd, its inode) → epoll fds watching it. A watch whose recorded inode differs from
    /// what the fd holds now was registered on an fd number since reused, and is not counted.
    pub fn epoll_watchers(&self) -> HashMap<(i32, u64), Vec<i32>> {
        let mut out: HashMap<(i32, u64), Vec<i32>> = HashMap::new();
        if self.epolls.is_empty() {
            return out;
        }
        let inode_of: HashMap<i32, u64> = self.sockets.iter().map(|s| (s.fd, s.inode)).collect();
        for (ep, watches) in &self.epolls {
            for w in watches {
                let Some(&ino) = inode_of.get(&w.tfd) else {
                    continue;
                };
                if w.ino.is_some_and(|i| i != ino) {
                    continue;
                }
                out.entry((w.tfd, ino)).or_default().push(*ep);
            }
        }
        out
    }
}

/// Error reading one process's fd table, with the path that failed.
#[derive(Debug)]
pub struct FdError {
    pub path: String,
    pub source: io::Error,
}

/// `socket:[12345]` → 12345.
pub fn socket_inode(link: &[u8]) -> Option<u64> {
    let rest = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(rest).ok()?.parse().ok()
}

const EVENTPOLL: &[u8] = b"anon_inode:[eventpoll]";

/// Read /proc/PID/fd (and fdinfo of its epoll fds) on the calling thread.
pub fn read_fd_table(pid: i32) -> Result<FdTable, FdError> {
    read_fd_table_with(pid, 1)
}

/// Below this many fds, extra threads cost more than they save.
const FDS_PER_THREAD: usize = 2048;

/// Read /proc/PID/fd with up to `threads` threads sharing the one directory fd: each link is a
/// syscall of a few microseconds, and a leaking server has tens of thousands of them.
pub fn read_fd_table_with(pid: i32, threads: usize) -> Result<FdTable, FdError> {
    let path = format!("/proc/{pid}/fd");
    let err = |source| FdError {
        path: path.clone(),
        source,
    };
    let dir = Dir::open(&path).map_err(err)?;
    let mut numbers = Vec::new();
    dir.for_each_entry(|name| {
        if let Some(fd) = parse_fd_name(name.to_bytes()) {
            numbers.push(fd);
        }
    })
    .map_err(err)?;
    let threads = threads.clamp(1, numbers.len() / FDS_PER_THREAD + 1);
    let dirfd = dir.fd();
    let (mut sockets, epoll_fds) = if threads == 1 {
        classify(dirfd, &numbers)
    } else {
        let chunk = numbers.len().div_ceil(threads);
        std::thread::scope(|s| {
            let parts: Vec<_> = numbers
                .chunks(chunk)
                .map(|c| s.spawn(move || classify(dirfd, c)))
                .collect();
            let mut all = (Vec::with_capacity(numbers.len()), Vec::new());
            for p in parts {
                let (so, ep) = p.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
                all.0.extend(so);
                all.1.extend(ep);
            }
            all
        })
    };
    drop(dir);
    let mut table = FdTable::default();
    for ep in epoll_fds {
        let p = format!("/proc/{pid}/fdinfo/{ep}");
        if let Ok(text) = std::fs::read_to_string(&p) {
            table.epolls.push((ep, parse_epoll_fdinfo(&text)));
        }
    }
    sockets.sort_unstable_by_key(|s| s.fd);
    table.sockets = sockets;
    Ok(table)
}

/// Read the links of `fds` relative to `dirfd` (an open /proc/PID/fd): sockets and epoll fds.
fn classify(dirfd: libc::c_int, fds: &[i32]) -> (Vec<SocketFd>, Vec<i32>) {
    let mut sockets = Vec::with_capacity(fds.len());
    let mut epolls = Vec::new();
    let mut buf = [0u8; 256];
    let mut name = [0u8; 16];
    for &fd in fds {
        let name = fd_name(fd, &mut name);
        // SAFETY: `dirfd` is an open directory fd that the caller keeps open for this call,
        // `name` is NUL-terminated, and `buf` is writable for `buf.len()` bytes.
        let n =
            unsafe { libc::readlinkat(dirfd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            // The fd was closed between readdir and readlink: it is simply not there any more.
            continue;
        }
        let link = &buf[..n as usize];
        if let Some(inode) = socket_inode(link) {
            sockets.push(SocketFd { fd, inode });
        } else if link == EVENTPOLL {
            epolls.push(fd);
        }
    }
    (sockets, epolls)
}

/// Decimal text of a non-negative fd number, NUL-terminated, in `buf` (no allocation).
fn fd_name(fd: i32, buf: &mut [u8; 16]) -> &CStr {
    let mut i = buf.len() - 1;
    buf[i] = 0;
    let mut n = fd.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    CStr::from_bytes_with_nul(&buf[i..]).expect("one NUL at the end")
}

fn parse_fd_name(b: &[u8]) -> Option<i32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// /proc/PID/fdinfo of an epoll fd (fs/eventpoll.c `ep_show_fdinfo`):
/// `tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x` per watched fd.
pub fn parse_epoll_fdinfo(text: &str) -> Vec<EpollWatch> {
    let mut out = Vec::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("tfd:") else {
            continue;
        };
        let mut it = rest.split_ascii_whitespace();
        let Some(Ok(tfd)) = it.next().map(str::parse::<i32>) else {
            continue;
        };
        let ino = rest
            .split_ascii_whitespace()
            .find_map(|w| w.strip_prefix("ino:"))
            .and_then(|h| u64::from_str_radix(h, 16).ok());
        out.push(EpollWatch { tfd, ino });
    }
    out
}

/// What `--fd N` points at when it is not a socket: link text and `st_ino`.
pub fn describe_fd(pid: i32, fd: i32) -> io::Result<(String, u64)> {
    let p = format!("/proc/{pid}/fd/{fd}");
    let link = std::fs::read_link(&p)?;
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&p)?);
    Ok((link.to_string_lossy().into_owned(), ino))
}

/// Protocol of a socket fd from sockfs's `system.sockprotoname` xattr (what lsof does for sockets
/// found in no table). `Other` when unreadable or not an IP/unix socket.
pub fn socket_proto(pid: i32, fd: i32) -> Proto {
    let Ok(path) = CString::new(format!("/proc/{pid}/fd/{fd}")) else {
        return Proto::Other;
    };
    let mut buf = [0u8; 64];
    // SAFETY: both strings are NUL-terminated and `buf` is writable for `buf.len()` bytes.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"system.sockprotoname".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n <= 0 {
        return Proto::Other;
    }
    proto_from_name(&buf[..n as usize])
}

/// `TCP`, `TCPv6`, `UDP`, `UDPv6`, `UNIX` (the `struct proto` names; NUL-terminated or not).
pub fn proto_from_name(name: &[u8]) -> Proto {
    let name = name.split(|&b| b == 0).next().unwrap_or_default();
    match name {
        b"TCP" | b"TCPv6" | b"MPTCP" | b"MPTCPv6" => Proto::Tcp,
        b"UDP" | b"UDPv6" | b"UDP-Lite" | b"UDPLITEv6" => Proto::Udp,
        b"UNIX" | b"UNIX-STREAM" => Proto::Unix,
        _ => Proto::Other,
    }
}

/// The fields of /proc/PID/stat we need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatInfo {
    pub comm: String,
    pub kernel_thread: bool,
}

/// PF_KTHREAD (include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;

pub fn read_stat(pid: i32) -> io::Result<StatInfo> {
    let text = std::fs::read(format!("/proc/{pid}/stat"))?;
    parse_stat(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed stat"))
}

/// `pid (comm) S ppid ... flags(9th field) ...`; comm may itself contain spaces and parentheses,
/// so it runs to the last `)`.
pub fn parse_stat(text: &[u8]) -> Option<StatInfo> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let comm = String::from_utf8_lossy(text.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    // After comm: state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9).
    let flags: u64 = rest.split_ascii_whitespace().nth(6)?.parse().ok()?;
    Some(StatInfo {
        comm,
        kernel_thread: flags & PF_KTHREAD != 0,
    })
}

/// Every numeric entry of /proc.
pub fn all_pids() -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut v: Vec<i32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// A directory stream over an owned fd (libc `DIR`), yielding borrowed entry names.
struct Dir {
    dir: *mut libc::DIR,
}

impl Dir {
    fn open(path: &str) -> io::Result<Dir> {
        let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `c` is NUL-terminated; the returned fd is owned by us until fdopendir takes it.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a valid open directory fd; on success DIR owns it, on failure we close
        // it through OwnedFd.
        let dir = unsafe { libc::fdopendir(fd) };
        if dir.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so `fd` is still ours alone.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            return Err(e);
        }
        Ok(Dir { dir })
    }

    fn fd(&self) -> libc::c_int {
        // SAFETY: `self.dir` is a valid DIR until drop.
        unsafe { libc::dirfd(self.dir) }
    }

    /// Call `f` with each entry name. The name borrows readdir's buffer, valid only until the
    /// next readdir, hence a callback rather than an iterator.
    fn for_each_entry(&self, mut f: impl FnMut(&CStr)) -> io::Result<()> {
        loop {
            // readdir signals errors only through errno, so clear it first.
            // SAFETY: errno is thread-local; writing it is always allowed.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: `self.dir` is a valid DIR stream owned by `self`.
            let ent = unsafe { libc::readdir(self.dir) };
            if ent.is_null() {
                // SAFETY: reading thread-local errno.
                let errno = unsafe { *libc::__errno_location() };
                return match errno {
                    0 => Ok(()),
                    e => Err(io::Error::from_raw_os_error(e)),
                };
            }
            // SAFETY: `d_name` is a NUL-terminated array inside the entry readdir returned, valid
            // until the next readdir call, which happens only after `f` returns.
            f(unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) });
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // SAFETY: `self.dir` came from fdopendir and is closed exactly once.
        unsafe { libc::closedir(self.dir) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn fd_names_are_decimal() {
        let mut b = [0u8; 16];
        assert_eq!(fd_name(0, &mut b).to_bytes(), b"0");
        assert_eq!(fd_name(7, &mut b).to_bytes(), b"7");
        assert_eq!(fd_name(19999, &mut b).to_bytes(), b"19999");
        assert_eq!(fd_name(i32::MAX, &mut b).to_bytes(), b"2147483647");
    }

    #[test]
    fn threaded_read_equals_single_threaded_read() {
        let socks: Vec<_> = (0..FDS_PER_THREAD + 100)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let me = std::process::id() as i32;
        let one = read_fd_table_with(me, 1).unwrap();
        let two = read_fd_table_with(me, 4).unwrap();
        for s in &socks {
            assert!(two.sockets.iter().any(|f| f.fd == s.as_raw_fd()));
        }
        // Other tests open and close fds meanwhile: compare only the fds held here.
        let mine = |t: &FdTable| -> Vec<SocketFd> {
            t.sockets
                .iter()
                .filter(|f| socks.iter().any(|s| s.as_raw_fd() == f.fd))
                .copied()
                .collect()
        };
        assert_eq!(mine(&one), mine(&two));
    }

    #[test]
    fn socket_links_give_inodes() {
        assert_eq!(socket_inode(b"socket:[123456]"), Some(123456));
        assert_eq!(socket_inode(b"socket:[]"), None);
        assert_eq!(socket_inode(b"pipe:[99]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
    }

    // fdinfo of an epoll fd watching fds 5 and 7 (Linux 6.x format).
    const EPOLL_FDINFO: &str = "pos:\t0
flags:\t02000002
mnt_id:\t16
ino:\t1057
tfd:        5 events:       19 data:                5  pos:0 ino:61d sdev:9
tfd:        7 events: 80000019 data:       0000000700000000  pos:0 ino:a3f2 sdev:9
";

    #[test]
    fn epoll_fdinfo_lists_watched_fds_and_inodes() {
        let w = parse_epoll_fdinfo(EPOLL_FDINFO);
        assert_eq!(
            w,
            vec![
                EpollWatch {
                    tfd: 5,
                    ino: Some(0x61d)
                },
                EpollWatch {
                    tfd: 7,
                    ino: Some(0xa3f2)
                }
            ]
        );
        // Older kernels print no ino.
        let old = parse_epoll_fdinfo("tfd:        9 events:       19 data:                5\n");
        assert_eq!(old, vec![EpollWatch { tfd: 9, ino: None }]);
        assert!(parse_epoll_fdinfo("pos:\t0\nflags:\t02\n").is_empty());
    }

    #[test]
    fn epoll_watchers_skip_reused_fd_numbers() {
        let t = FdTable {
            sockets: vec![
                SocketFd {
                    fd: 5,
                    inode: 0x61d,
                },
                SocketFd { fd: 7, inode: 1 },
            ],
            epolls: vec![
                (
                    3,
                    vec![
                        EpollWatch {
                            tfd: 5,
                            ino: Some(0x61d),
                        },
                        EpollWatch {
                            tfd: 7,
                            ino: Some(0xa3f2),
                        },
                    ],
                ),
                (4, vec![EpollWatch { tfd: 5, ino: None }]),
            ],
        };
        let w = t.epoll_watchers();
        assert_eq!(w.get(&(5, 0x61d)), Some(&vec![3, 4]));
        assert_eq!(w.get(&(7, 1)), None);
    }

    #[test]
    fn sockprotoname_values() {
        assert_eq!(proto_from_name(b"TCP\0"), Proto::Tcp);
        assert_eq!(proto_from_name(b"TCPv6"), Proto::Tcp);
        assert_eq!(proto_from_name(b"UDPv6\0"), Proto::Udp);
        assert_eq!(proto_from_name(b"UNIX\0"), Proto::Unix);
        assert_eq!(proto_from_name(b"NETLINK\0"), Proto::Other);
    }

    #[test]
    fn stat_comm_with_spaces_and_parens_and_kthread_flag() {
        let s = parse_stat(b"812 (my (odd) java) S 1 812 812 0 -1 4194560 100 0 0 0").unwrap();
        assert_eq!(s.comm, "my (odd) java");
        assert!(!s.kernel_thread);
        let k = parse_stat(b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0").unwrap();
        assert_eq!(k.comm, "kthreadd");
        assert!(k.kernel_thread);
    }

    #[test]
    fn our_own_fd_table_lists_a_socket_we_open() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = l.as_raw_fd();
        let t = read_fd_table(std::process::id() as i32).unwrap();
        let s = t
            .sockets
            .iter()
            .find(|s| s.fd == fd)
            .expect("listener fd listed");
        let ino = std::os::unix::fs::MetadataExt::ino(
            &std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap(),
        );
        assert_eq!(s.inode, ino);
        assert_eq!(socket_proto(std::process::id() as i32, fd), Proto::Tcp);
    }
}
