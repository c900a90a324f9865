//! Network namespaces: which one a process is in, and running code inside another one.
//!
//! A socket belongs to the namespace it was created in, for life. So to talk sock_diag to a
//! target's namespace we only need to *create* the netlink socket there: a short-lived thread
//! `setns()`s into /proc/PID/ns/net, opens the socket and hands it back; the rest of the work runs
//! on our own threads in our own namespace. (setns of a network namespace is per thread and needs
//! CAP_SYS_ADMIN over that namespace.)

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Path of a network namespace file: /proc/PID/ns/net, /run/netns/NAME, ...
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsPath(pub PathBuf);

impl NsPath {
    pub fn of_pid(pid: i32) -> NsPath {
        NsPath(PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    /// Our own namespace (through /proc/thread-self, since setns is per thread).
    pub fn own() -> NsPath {
        NsPath(PathBuf::from("/proc/thread-self/ns/net"))
    }

    /// `--netns` argument: a PID (digits), a path, or a name under /run/netns (`ip netns add`).
    pub fn parse(arg: &str) -> Result<NsPath, String> {
        if arg.is_empty() {
            return Err("empty namespace: give a PID, a path or an `ip netns` name".into());
        }
        if arg.bytes().all(|b| b.is_ascii_digit()) {
            let pid: i32 = arg
                .parse()
                .map_err(|_| format!("pid {arg} is out of range"))?;
            let p = NsPath::of_pid(pid);
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return Err(format!("no process with pid {pid}"));
            }
            return Ok(p);
        }
        if arg.contains('/') {
            return Ok(NsPath(PathBuf::from(arg)));
        }
        let named = Path::new("/run/netns").join(arg);
        if named.exists() {
            return Ok(NsPath(named));
        }
        Err(format!(
            "no such namespace: not a pid, not a path, and /run/netns/{arg} does not exist"
        ))
    }

    /// Inode of the namespace (what `ip netns identify`/`lsns` compare).
    pub fn inode(&self) -> io::Result<u64> {
        Ok(std::fs::metadata(&self.0)?.ino())
    }
}

/// Inode of PID's network namespace.
pub fn netns_inode(pid: i32) -> io::Result<u64> {
    NsPath::of_pid(pid).inode()
}

/// Inode of the namespace this thread is in.
pub fn own_netns_inode() -> u64 {
    NsPath::own().inode().unwrap_or(0)
}

/// Run `f` on a fresh thread that first entered the namespace at `ns`. Our own threads never
/// change namespace; the helper thread ends with `f`.
pub fn run_in<T: Send>(ns: &NsPath, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let file = std::fs::File::open(&ns.0)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: `file` is an open namespace fd for the duration of the call; setns only
            // changes this helper thread's namespace.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_arguments() {
        let me = std::process::id().to_string();
        assert_eq!(
            NsPath::parse(&me).unwrap().0,
            PathBuf::from(format!("/proc/{me}/ns/net"))
        );
        assert_eq!(
            NsPath::parse("/run/netns/x").unwrap().0,
            PathBuf::from("/run/netns/x")
        );
        assert!(NsPath::parse("").is_err());
        assert!(NsPath::parse("no-such-ns-fdclose-test")
            .unwrap_err()
            .contains("/run/netns/no-such-ns-fdclose-test"));
        assert!(NsPath::parse("99999999").is_err());
    }

    #[test]
    fn running_in_our_own_namespace_sees_the_same_inode() {
        let own = own_netns_inode();
        assert_ne!(own, 0);
        let seen = run_in(&NsPath::of_pid(std::process::id() as i32), own_netns_inode);
        match seen {
            Ok(ino) => assert_eq!(ino, own),
            // Entering a namespace needs CAP_SYS_ADMIN.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
        }
    }
}
