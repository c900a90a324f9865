//! Live tests of `resolve()` against integration/fixtures/res_sockets.c: real sockets on loopback,
//! and in a network namespace the test creates. Needs root (setns, reading other processes' fds).

mod support;

use fdclose::model::Match;
use fdclose::model::{Proto, SockState};
use fdclose::resolve::{proc_net, resolve, resolve_with, Backend, Query, ResolveError, Targets};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use support::{build_c_fixture, Fixture};

/// The fixture, built once per test binary (parallel tests must not race on the build).
fn fixture_exe() -> std::path::PathBuf {
    static EXE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| build_c_fixture("res_sockets", &[]))
        .clone()
}

/// A running res_sockets fixture and the numbers it printed.
struct Sockets {
    fx: Fixture,
    v: HashMap<String, i32>,
}

impl Sockets {
    fn start(cmd: &mut Command) -> Sockets {
        let mut fx = Fixture::spawn(cmd);
        let line = fx.expect_line("READY");
        let v = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect();
        Sockets { fx, v }
    }

    /// On loopback address `addr` of our namespace.
    fn here(addr: &str) -> Sockets {
        Sockets::start(Command::new(fixture_exe()).arg(addr))
    }

    /// In a fresh network namespace (`unshare -n`), loopback up; `extra` = "v6" or "".
    fn in_new_netns_with(extra: &str) -> Sockets {
        let exe = fixture_exe();
        Sockets::start(
            Command::new("unshare")
                .args(["-n", "sh", "-c"])
                .arg(format!(
                    "ip link set lo up && exec {} 127.0.0.1 {extra}",
                    exe.display()
                )),
        )
    }

    fn in_new_netns() -> Sockets {
        Sockets::in_new_netns_with("")
    }

    fn pid(&self) -> i32 {
        // `unshare ... exec` keeps the pid: the fixture prints its own.
        self.v["pid"]
    }

    fn fd(&self, name: &str) -> i32 {
        self.v[name]
    }

    fn ino(&self, name: &str) -> u64 {
        std::fs::metadata(format!("/proc/{}/fd/{}", self.pid(), self.fd(name)))
            .unwrap()
            .ino()
    }
}

fn query(pid: i32, protos: &[Proto], states: &[SockState]) -> Query {
    Query {
        targets: Targets::Listed {
            pids: vec![pid],
            comms: vec![],
        },
        protos: protos.to_vec(),
        state_mask: states.iter().fold(0, |m, s| m | s.kernel_bit()),
        include_fds: vec![],
        orphans: false,
        netns: None,
    }
}

#[test]
fn close_wait_socket_found_with_fd_inode_queue_and_epoll_watcher() {
    let s = Sockets::here("127.0.0.21");
    assert_eq!(s.fx.pid(), s.pid());
    let r = resolve(&query(s.pid(), &[Proto::Tcp], &[SockState::CloseWait])).unwrap();
    // A TCP-only query of a listed pid: Auto asks the target's fds (pidfd) unless the host has
    // fewer TCP sockets than the target has socket fds. Both report the same (see below).
    assert!(matches!(r.source, "sock_diag" | "pidfd"), "{}", r.source);
    assert_eq!(r.processes.len(), 1);
    assert_eq!(r.processes[0].comm, "res_sockets");
    assert_eq!(r.matches.len(), 1, "{:#?}", r.matches);
    let m = &r.matches[0];
    assert_eq!(m.pid, s.pid());
    assert_eq!(m.fd, Some(s.fd("cw")));
    assert_eq!(m.ino, s.ino("cw"));
    assert_eq!(m.target, format!("socket:[{}]", s.ino("cw")));
    assert_eq!(m.epoll, vec![s.fd("epoll")]);
    let e = m.socket.as_ref().unwrap();
    assert_eq!(e.state, SockState::CloseWait);
    assert_eq!(e.proto, Proto::Tcp);
    assert_eq!(e.inode, s.ino("cw"));
    let local = e.local.unwrap();
    assert_eq!(local.to_string(), format!("127.0.0.21:{}", s.fd("port")));
    assert!(e.peer.unwrap().ip().is_loopback());
    assert!(
        (3..=4).contains(&e.recv_q),
        "3 unread bytes (+FIN): {}",
        e.recv_q
    );
    assert!(e.mem.is_some(), "SKMEMINFO requested");
    assert!(e.idle_ms.is_some(), "tcp_info requested");
    assert!(e.diag.is_some());
    assert!(r.orphans.is_empty());
}

#[test]
fn fds_in_no_table_are_closed_tcp() {
    let s = Sockets::here("127.0.0.22");
    let r = resolve(&query(s.pid(), &[Proto::Tcp], &[SockState::Closed])).unwrap();
    let got: Vec<(i32, SockState, Proto)> = r
        .matches
        .iter()
        .map(|m| {
            let e = m.socket.as_ref().unwrap();
            (m.fd.unwrap(), e.state, e.proto)
        })
        .collect();
    // The fully closed connection and the never-connected socket(); not CLOSE_WAIT, not the
    // listener, not the UDP or unix sockets.
    let mut want = vec![
        (s.fd("closed"), SockState::Closed, Proto::Tcp),
        (s.fd("never"), SockState::Closed, Proto::Tcp),
    ];
    want.sort();
    assert_eq!(got, want);
    let closed = r
        .matches
        .iter()
        .find(|m| m.fd == Some(s.fd("closed")))
        .unwrap();
    assert_eq!(closed.ino, s.ino("closed"));
    assert_eq!(closed.socket.as_ref().unwrap().local, None);
}

#[test]
fn every_state_of_every_proto() {
    let s = Sockets::here("127.0.0.23");
    let mut q = query(s.pid(), &[Proto::Tcp, Proto::Udp, Proto::Unix], &[]);
    q.state_mask = u32::MAX;
    let r = resolve(&q).unwrap();
    let state_of = |fd: &str| {
        let m = r
            .matches
            .iter()
            .find(|m| m.fd == Some(s.fd(fd)))
            .unwrap_or_else(|| panic!("{fd} not matched: {:#?}", r.matches));
        let e = m.socket.clone().unwrap();
        (e.proto, e.state)
    };
    assert_eq!(state_of("listen"), (Proto::Tcp, SockState::Listening));
    assert_eq!(state_of("cw"), (Proto::Tcp, SockState::CloseWait));
    assert_eq!(state_of("closed"), (Proto::Tcp, SockState::Closed));
    assert_eq!(state_of("udp"), (Proto::Udp, SockState::Unconnected));
    assert_eq!(state_of("unix"), (Proto::Unix, SockState::Established));
    // The epoll fd is no socket and was not asked for.
    assert!(!r.matches.iter().any(|m| m.fd == Some(s.fd("epoll"))));
}

#[test]
fn include_fds_reports_non_sockets_and_sockets_of_other_states() {
    let s = Sockets::here("127.0.0.24");
    let mut q = query(s.pid(), &[Proto::Tcp], &[SockState::Established]);
    q.include_fds = vec![s.fd("epoll"), s.fd("udp"), 9999];
    let r = resolve(&q).unwrap();
    let ep = r
        .matches
        .iter()
        .find(|m| m.fd == Some(s.fd("epoll")))
        .unwrap();
    assert_eq!(ep.socket, None);
    assert_eq!(ep.target, "anon_inode:[eventpoll]");
    assert_eq!(ep.ino, s.ino("epoll"));
    let udp = r
        .matches
        .iter()
        .find(|m| m.fd == Some(s.fd("udp")))
        .unwrap();
    let e = udp.socket.as_ref().unwrap();
    assert_eq!((e.proto, e.state), (Proto::Udp, SockState::Unconnected));
    assert!(e.local.is_some(), "found in the UDP dump, not guessed");
    assert!(!r.matches.iter().any(|m| m.fd == Some(9999)));
    // Nothing in the fixture is ESTABLISHED over TCP.
    assert_eq!(r.matches.len(), 2, "{:#?}", r.matches);
}

#[test]
fn target_in_another_network_namespace() {
    let s = Sockets::in_new_netns();
    let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    let theirs = std::fs::metadata(format!("/proc/{}/ns/net", s.pid()))
        .unwrap()
        .ino();
    assert_ne!(own, theirs, "fixture must run in its own namespace");
    let ino = s.ino("cw");
    // Its sockets are not in our namespace's tables...
    let ours = proc_net::read_table(None, Proto::Tcp).unwrap();
    assert!(!ours.iter().any(|e| e.inode == ino));
    // ...but /proc/PID/net shows them (the fallback path).
    let via_proc = proc_net::read_table(Some(s.pid()), Proto::Tcp).unwrap();
    let e = via_proc.iter().find(|e| e.inode == ino).unwrap();
    assert_eq!(e.state, SockState::CloseWait);

    let mut q = query(
        s.pid(),
        &[Proto::Tcp],
        &[SockState::CloseWait, SockState::FinWait2],
    );
    q.orphans = true;
    let r = resolve(&q).unwrap();
    assert_eq!(r.source, "sock_diag");
    assert_eq!(r.processes[0].netns, theirs);
    assert_eq!(r.matches.len(), 1, "{:#?}", r.matches);
    assert_eq!(r.matches[0].fd, Some(s.fd("cw")));
    assert_eq!(r.matches[0].ino, ino);
    assert_eq!(r.matches[0].epoll, vec![s.fd("epoll")]);
    let e = r.matches[0].socket.as_ref().unwrap();
    assert_eq!(
        e.local.unwrap().to_string(),
        format!("127.0.0.1:{}", s.fd("port"))
    );
    // The client end of cw, closed by the fixture: an orphan in FIN_WAIT2 of *that* namespace,
    // the only one there.
    assert_eq!(r.orphans.len(), 1, "{:#?}", r.orphans);
    let o = &r.orphans[0];
    assert_eq!((o.pid, o.comm.as_str(), o.fd, o.ino), (0, "-", None, 0));
    let oe = o.socket.as_ref().unwrap();
    assert_eq!(oe.state, SockState::FinWait2);
    assert_eq!(oe.peer.unwrap().port(), s.fd("port") as u16);
    assert_eq!(oe.local.unwrap().port(), e.peer.unwrap().port());
    assert_eq!(
        r.orphans_netns,
        Some(format!("/proc/{}/ns/net", s.pid()).into())
    );
}

#[test]
fn orphans_from_a_netns_named_by_pid_without_targets() {
    let s = Sockets::in_new_netns();
    let q = Query {
        targets: Targets::Listed {
            pids: vec![],
            comms: vec![],
        },
        protos: vec![Proto::Tcp],
        state_mask: SockState::FinWait2.kernel_bit(),
        include_fds: vec![],
        orphans: true,
        netns: Some(s.pid().to_string()),
    };
    let r = resolve(&q).unwrap();
    assert!(r.matches.is_empty());
    assert_eq!(r.orphans.len(), 1, "{:#?}", r.orphans);
    assert_eq!(
        r.orphans[0].socket.as_ref().unwrap().peer.unwrap().port(),
        s.fd("port") as u16
    );
}

#[test]
fn searching_every_process_finds_the_fixture() {
    let s = Sockets::here("127.0.0.25");
    let mut q = query(0, &[Proto::Tcp], &[SockState::CloseWait]);
    q.targets = Targets::All;
    let r = resolve(&q).unwrap();
    let me = std::process::id() as i32;
    assert!(r.processes.iter().any(|p| p.pid == s.pid()));
    assert!(
        !r.processes.iter().any(|p| p.pid == me),
        "we skip ourselves"
    );
    assert!(
        !r.processes.iter().any(|p| p.pid == 2),
        "kernel threads are skipped"
    );
    let mine: Vec<_> = r.matches.iter().filter(|m| m.pid == s.pid()).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].fd, Some(s.fd("cw")));
    assert!(r
        .matches
        .iter()
        .all(|m| m.socket.as_ref().unwrap().state == SockState::CloseWait));
}

#[test]
fn comm_targets_and_errors() {
    let s = Sockets::here("127.0.0.26");
    let mut q = query(0, &[Proto::Tcp], &[SockState::CloseWait]);
    q.targets = Targets::Listed {
        pids: vec![],
        comms: vec!["res_sockets".into()],
    };
    let r = resolve(&q).unwrap();
    assert!(r.processes.iter().any(|p| p.pid == s.pid()));
    assert!(r.processes.iter().all(|p| p.comm == "res_sockets"));

    q.targets = Targets::Listed {
        pids: vec![],
        comms: vec!["no-such-comm-x".into()],
    };
    let e = resolve(&q).unwrap_err();
    assert!(matches!(e, ResolveError::NoSuchComm { .. }));
    assert_eq!(
        e.to_string(),
        "no process is named 'no-such-comm-x' (names are matched exactly against /proc/PID/comm)"
    );

    // A pid that does not exist: beyond pid_max.
    let e = resolve(&query(i32::MAX, &[Proto::Tcp], &[SockState::CloseWait])).unwrap_err();
    assert_eq!(e.to_string(), format!("no process with pid {}", i32::MAX));

    let mut q = query(s.pid(), &[Proto::Tcp], &[SockState::CloseWait]);
    q.orphans = true;
    q.netns = Some("no-such-netns-fdclose".into());
    let e = resolve(&q).unwrap_err();
    assert!(matches!(e, ResolveError::BadNetns { .. }), "{e}");
}

#[test]
fn dual_stack_listener_peers_appear_ipv4_mapped() {
    let s = Sockets::in_new_netns_with("v6");
    let r = resolve(&query(s.pid(), &[Proto::Tcp], &[SockState::CloseWait])).unwrap();
    let m = r
        .matches
        .iter()
        .find(|m| m.fd == Some(s.fd("cw6")))
        .expect("cw6 found");
    let e = m.socket.as_ref().unwrap();
    assert_eq!(e.diag.unwrap().family, libc::AF_INET6 as u8);
    assert_eq!(
        e.local.unwrap().to_string(),
        format!("[::ffff:127.0.0.1]:{}", s.fd("port6"))
    );
    assert_eq!(e.peer.unwrap().ip().to_string(), "::ffff:127.0.0.1");
    assert_eq!(e.peer_display().unwrap().ip().to_string(), "127.0.0.1");
    assert_eq!(m.ino, s.ino("cw6"));
}

/// Everything both backends can know, per fd.
fn comparable(m: &Match) -> String {
    let e = m.socket.as_ref().unwrap();
    format!(
        "fd={:?} ino={} {} {} local={:?} peer={:?} path={:?}",
        m.fd, m.ino, e.proto, e.state, e.local, e.peer, e.unix_path
    )
}

#[test]
fn proc_net_backend_agrees_with_sock_diag() {
    let s = Sockets::in_new_netns_with("v6");
    let mut q = query(s.pid(), &[Proto::Tcp, Proto::Udp, Proto::Unix], &[]);
    q.state_mask = u32::MAX;
    let diag = resolve_with(&q, Backend::Auto).unwrap();
    let proc = resolve_with(&q, Backend::ProcNet).unwrap();
    assert_eq!(diag.source, "sock_diag");
    assert_eq!(proc.source, "/proc/net");
    let a: Vec<String> = diag.matches.iter().map(comparable).collect();
    let b: Vec<String> = proc.matches.iter().map(comparable).collect();
    assert_eq!(a, b);
    // listen, cw, closed, never, udp, both unix ends, the v6 listener and cw6.
    assert_eq!(a.len(), 9, "{a:#?}");
    // Only sock_diag knows socket memory and idle times.
    let cw = |r: &fdclose::resolve::Resolution| {
        r.matches
            .iter()
            .find(|m| m.fd == Some(s.fd("cw")))
            .unwrap()
            .socket
            .clone()
            .unwrap()
    };
    assert!(cw(&diag).mem.is_some() && cw(&proc).mem.is_none());
    assert_eq!(cw(&diag).recv_q, cw(&proc).recv_q);

    let mut q = query(s.pid(), &[Proto::Tcp], &[SockState::FinWait2]);
    q.orphans = true;
    let o = resolve_with(&q, Backend::ProcNet).unwrap();
    assert_eq!(
        o.orphans.len(),
        2,
        "cw's and cw6's clients: {:#?}",
        o.orphans
    );
}

/// Run `f` on a thread whose credentials alone are dropped to nobody (the raw setresuid syscall
/// changes only the calling thread, unlike glibc's, and threads it spawns inherit them).
fn as_nobody<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: raw syscalls with constant arguments; they change only this thread's
            // credentials, and the thread ends with this closure.
            let r = unsafe {
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>());
                libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534);
                libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534)
            };
            assert_eq!(r, 0, "setresuid: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    })
}

#[test]
fn processes_we_may_not_read() {
    let s = Sockets::here("127.0.0.27");
    let pid = s.pid();
    let q = query(pid, &[Proto::Tcp], &[SockState::CloseWait]);
    let err = as_nobody(|| resolve(&q).unwrap_err().to_string());
    assert!(
        err.starts_with(&format!("cannot read /proc/{pid}/"))
            && err.contains(": permission denied (run as root or as the process owner"),
        "{err}"
    );

    // Searching every process: not fatal, the fixture is listed as unreadable.
    let mut q = q;
    q.targets = Targets::All;
    let r = as_nobody(|| resolve(&q).unwrap());
    let u = r
        .unreadable
        .iter()
        .find(|u| u.pid == pid)
        .expect("fixture unreadable");
    assert!(u.reason.contains("permission denied"), "{}", u.reason);
    assert!(!r.matches.iter().any(|m| m.pid == pid));
}

/// Everything of a TCP match the pidfd backend must report as sock_diag does; idle times are
/// compared by presence (they are milliseconds apart), socket memory by presence.
fn full(m: &Match) -> String {
    let e = m.socket.as_ref().unwrap();
    format!(
        "fd={:?} ino={} target={} epoll={:?} {} {} local={:?} peer={:?} q={}/{} idle={} mem={} uid={:?} diag={:?}",
        m.fd,
        m.ino,
        m.target,
        m.epoll,
        e.proto,
        e.state,
        e.local,
        e.peer,
        e.recv_q,
        e.send_q,
        e.idle_ms.is_some(),
        e.mem.is_some(),
        e.uid,
        e.diag
    )
}

/// The same TCP query through sock_diag (a TCP+UDP query, which pidfd does not take, filtered
/// to TCP) and through pidfd.
fn diag_and_pidfd(pid: i32, mask: u32) -> (Vec<String>, Vec<String>) {
    let mut q = query(pid, &[Proto::Tcp, Proto::Udp], &[]);
    q.state_mask = mask;
    let diag = resolve_with(&q, Backend::Auto).unwrap();
    assert_eq!(diag.source, "sock_diag");
    let mut q = query(pid, &[Proto::Tcp], &[]);
    q.state_mask = mask;
    let pidfd = resolve_with(&q, Backend::Pidfd).unwrap();
    assert_eq!(pidfd.source, "pidfd");
    assert!(pidfd.orphans.is_empty());
    let a = diag
        .matches
        .iter()
        .filter(|m| m.socket.as_ref().unwrap().proto == Proto::Tcp)
        .map(full)
        .collect();
    let b = pidfd.matches.iter().map(full).collect();
    (a, b)
}

#[test]
fn pidfd_backend_agrees_with_sock_diag_here() {
    let s = Sockets::here("127.0.0.26");
    let (a, b) = diag_and_pidfd(s.pid(), u32::MAX);
    assert_eq!(a, b);
    // listen, cw, closed, never.
    assert_eq!(b.len(), 4, "{b:#?}");
    let cw = b
        .iter()
        .find(|l| l.starts_with(&format!("fd=Some({}) ", s.fd("cw"))))
        .unwrap();
    assert!(cw.contains(" close-wait "), "{cw}");
    // 3 unread bytes and the unread FIN, as sock_diag counts them.
    assert!(cw.contains(" q=4/0 "), "{cw}");
    assert!(cw.contains(&format!("local=Some(127.0.0.26:{})", s.fd("port"))));
    assert!(cw.contains(&format!("epoll=[{}]", s.fd("epoll"))));
    let listen = b
        .iter()
        .find(|l| l.starts_with(&format!("fd=Some({}) ", s.fd("listen"))))
        .unwrap();
    assert!(listen.contains(" listening ") && listen.contains("peer=Some(0.0.0.0:0)"));

    // The state mask is applied: CLOSE_WAIT and closed only.
    let mask = SockState::CloseWait.kernel_bit() | SockState::Closed.kernel_bit();
    let (a, b) = diag_and_pidfd(s.pid(), mask);
    assert_eq!(a, b);
    assert_eq!(b.len(), 3, "{b:#?}");
    let (a, b) = diag_and_pidfd(s.pid(), SockState::Established.kernel_bit());
    assert_eq!((a.len(), b.len()), (0, 0));
}

#[test]
fn pidfd_backend_agrees_with_sock_diag_in_another_netns_with_v6() {
    let s = Sockets::in_new_netns_with("v6");
    let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    let theirs = std::fs::metadata(format!("/proc/{}/ns/net", s.pid()))
        .unwrap()
        .ino();
    assert_ne!(own, theirs);
    let (a, b) = diag_and_pidfd(s.pid(), u32::MAX);
    assert_eq!(a, b);
    // listen, cw, closed, never, the v6 listener and cw6.
    assert_eq!(b.len(), 6, "{b:#?}");
    let cw6 = b
        .iter()
        .find(|l| l.starts_with(&format!("fd=Some({}) ", s.fd("cw6"))))
        .unwrap();
    assert!(
        cw6.contains(&format!("local=Some([::ffff:127.0.0.1]:{})", s.fd("port6"))),
        "{cw6}"
    );
    assert!(cw6.contains("peer=Some([::ffff:127.0.0.1]:"), "{cw6}");
}

#[test]
fn pidfd_backend_refuses_queries_it_cannot_answer() {
    let s = Sockets::here("127.0.0.27");
    let mut q = query(s.pid(), &[Proto::Tcp], &[SockState::FinWait2]);
    q.orphans = true;
    assert!(resolve_with(&q, Backend::Pidfd).is_err());
    // Auto takes sock_diag for it, and finds cw's client, orphaned.
    let r = resolve_with(&q, Backend::Auto).unwrap();
    assert_eq!(r.source, "sock_diag");
    let q = query(
        s.pid(),
        &[Proto::Tcp, Proto::Unix],
        &[SockState::Established],
    );
    assert!(resolve_with(&q, Backend::Pidfd).is_err());
    // Every proto but a TCP-only state (`--state close-wait`): pidfd answers, as sock_diag does.
    let q = query(
        s.pid(),
        &[Proto::Tcp, Proto::Udp, Proto::Unix, Proto::Other],
        &[SockState::CloseWait],
    );
    let p = resolve_with(&q, Backend::Pidfd).unwrap();
    let d = resolve_with(&q, Backend::ProcNet).unwrap();
    assert_eq!(p.matches.len(), 1, "{:#?}", p.matches);
    assert_eq!(
        p.matches.iter().map(comparable).collect::<Vec<_>>(),
        d.matches.iter().map(comparable).collect::<Vec<_>>()
    );
    // A pid that does not exist is the usual error.
    let q = query(i32::MAX - 7, &[Proto::Tcp], &[SockState::CloseWait]);
    assert!(matches!(
        resolve_with(&q, Backend::Pidfd),
        Err(ResolveError::NoSuchPid { .. })
    ));
}

#[test]
fn pidfd_probe_skips_changed_fds_and_other_kinds() {
    use fdclose::resolve::pidfd::{self, Probed};
    use std::os::fd::AsRawFd;
    let me = pidfd::open(std::process::id() as i32).unwrap();
    let l = std::net::TcpListener::bind("127.0.0.28:0").unwrap();
    let u = std::net::UdpSocket::bind("127.0.0.28:0").unwrap();
    let ino = |fd: i32| {
        std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino()
    };
    let (lfd, ufd) = (l.as_raw_fd(), u.as_raw_fd());
    match pidfd::probe(&me, lfd, ino(lfd)).unwrap() {
        Probed::Tcp(p) => {
            let e = pidfd::entry_of(&p);
            assert_eq!(e.state, SockState::Listening);
            assert_eq!(e.local, Some(l.local_addr().unwrap()));
        }
        other => panic!("{other:?}"),
    }
    // The fd now holds another socket than the one listed: skipped, not misreported.
    assert!(matches!(
        pidfd::probe(&me, lfd, ino(ufd)).unwrap(),
        Probed::Changed
    ));
    assert!(matches!(
        pidfd::probe(&me, ufd, ino(ufd)).unwrap(),
        Probed::NotTcp
    ));
    // An fd number that is not open (any more).
    let gone = {
        let s = std::net::TcpListener::bind("127.0.0.28:0").unwrap();
        (s.as_raw_fd(), ino(s.as_raw_fd()))
    };
    assert!(matches!(
        pidfd::probe(&me, gone.0, gone.1).unwrap(),
        Probed::Changed
    ));
}
