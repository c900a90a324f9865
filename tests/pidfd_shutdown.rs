//! `--action shutdown` through pidfd_getfd: connections of a live server end while the server is
//! never stopped, keeps its fds and keeps serving.

mod support;

use fdclose::model::{Match, Proto, SockState, SocketEntry};
use fdclose::plan::{How, Outcome};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use support::*;

const LIMIT: Duration = Duration::from_secs(20);

/// The CLOSE-WAIT server fixture, with its port.
fn server() -> (Fixture, u16) {
    // Built once per test binary: parallel tests share a pid and so build_c_fixture's temp name.
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let bin = BIN.get_or_init(|| build_c_fixture("pidfd_closewait", &[]));
    let mut fx = Fixture::spawn(&mut Command::new(bin));
    let ready = fx.expect_line("READY");
    let port = field(&ready, "port").parse().unwrap();
    (fx, port)
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// One request/answer round trip: the server is serving.
fn ping(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s.write_all(b"ping\n").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    line
}

/// Make `n` leaked CLOSE-WAIT sockets in the server; returns their fd numbers there.
fn leak(fx: &mut Fixture, port: u16, n: usize) -> Vec<i32> {
    for _ in 0..n {
        assert!(ping(port).starts_with("pong"));
    }
    (0..n)
        .map(|_| field(&fx.expect_line("CLOSEWAIT"), "fd").parse().unwrap())
        .collect()
}

/// Socket inode → TCP state number, from the target's own view of its namespace.
fn tcp_states(pid: i32) -> BTreeMap<u64, u8> {
    let mut m = BTreeMap::new();
    for f in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).unwrap();
        for l in text.lines().skip(1) {
            let w: Vec<&str> = l.split_whitespace().collect();
            let st = u8::from_str_radix(w[3], 16).unwrap();
            let ino: u64 = w[9].parse().unwrap();
            if ino != 0 {
                m.insert(ino, st);
            }
        }
    }
    m
}

fn fd_inode(pid: i32, fd: i32) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
        .unwrap()
        .ino()
}

fn step(pid: i32, fd: i32, ino: u64) -> Match {
    let mut s = SocketEntry::closed_fd(ino, Proto::Tcp);
    s.state = SockState::CloseWait;
    Match {
        pid,
        comm: "pidfd_closewait".into(),
        fd: Some(fd),
        ino,
        target: format!("socket:[{ino}]"),
        socket: Some(s),
        epoll: vec![],
    }
}

/// Samples /proc/PID/status TracerPid and State in a tight loop from its own thread, from before
/// the run until after it; collects every sample showing a tracer or a stopped state.
struct StopWatch {
    stop: Arc<AtomicBool>,
    samples: Arc<AtomicU64>,
    handle: JoinHandle<Vec<String>>,
}

impl StopWatch {
    fn start(pid: i32) -> StopWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicU64::new(0));
        let (flag, count) = (stop.clone(), samples.clone());
        let handle = std::thread::spawn(move || {
            let mut bad = Vec::new();
            // Sample once more after the stop flag is raised, so the whole run is covered.
            loop {
                let last = flag.load(Ordering::SeqCst);
                let tracer = status_field(pid, "TracerPid").unwrap();
                let state = status_field(pid, "State").unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                if tracer != "0" || state.starts_with('t') || state.starts_with('T') {
                    bad.push(format!("TracerPid {tracer} State {state}"));
                }
                if last {
                    break;
                }
            }
            bad
        });
        let w = StopWatch {
            stop,
            samples,
            handle,
        };
        wait_for("the first status sample", LIMIT, || {
            w.samples.load(Ordering::SeqCst) > 0
        });
        w
    }

    /// Every bad sample, and how many samples were taken.
    fn finish(self) -> (Vec<String>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        let bad = self.handle.join().unwrap();
        (bad, self.samples.load(Ordering::SeqCst))
    }
}

#[test]
fn library_shutdown_ends_close_wait_without_stopping_the_server() {
    let (mut fx, port) = server();
    let pid = fx.pid();
    let fds = leak(&mut fx, port, 3);
    let inodes: Vec<u64> = fds.iter().map(|&fd| fd_inode(pid, fd)).collect();
    let states = tcp_states(pid);
    for ino in &inodes {
        assert_eq!(states.get(ino), Some(&(SockState::CloseWait as u8)));
    }

    let watch = StopWatch::start(pid);
    for (&fd, &ino) in fds.iter().zip(&inodes) {
        let (outcome, rec) =
            fdclose::pidfd::shutdown_step(&step(pid, fd, ino), How::Rdwr, |_| Ok(())).unwrap();
        match outcome {
            Outcome::Done { verified, note } => {
                assert!(verified, "fd {fd}: not verified: {note:?}");
            }
            o => panic!("fd {fd}: {o:?}"),
        }
        assert_eq!(rec.ino_seen, Some(ino));
        assert_eq!(rec.local, Some(format!("127.0.0.1:{port}")));
        assert!(rec.peer.as_deref().unwrap().starts_with("127.0.0.1:"));
        assert_eq!(rec.state_before.as_deref(), Some("close-wait"));
        assert!(
            matches!(rec.state_after.as_deref(), Some("last-ack" | "closed")),
            "{rec:?}"
        );
    }
    let (bad, samples) = watch.finish();
    assert!(samples > 0);
    assert!(bad.is_empty(), "server was stopped or traced: {bad:?}");

    // The fds stay open in the server, on the same sockets; the connections left CLOSE-WAIT.
    let table = fd_table(pid);
    for (&fd, &ino) in fds.iter().zip(&inodes) {
        assert_eq!(table.get(&fd), Some(&format!("socket:[{ino}]")));
    }
    wait_for("connections to leave close-wait", LIMIT, || {
        let now = tcp_states(pid);
        inodes
            .iter()
            .all(|i| now.get(i) != Some(&(SockState::CloseWait as u8)))
    });
    // And it keeps serving.
    assert!(ping(port).starts_with("pong"));
}

#[test]
fn library_shutdown_leaves_a_reused_fd_alone() {
    let (mut fx, port) = server();
    let pid = fx.pid();
    let fds = leak(&mut fx, port, 1);
    let ino = fd_inode(pid, fds[0]);
    // Plan names an inode the fd does not hold any more: nothing may happen to the socket.
    let (outcome, rec) =
        fdclose::pidfd::shutdown_step(&step(pid, fds[0], ino + 1_000_000), How::Rdwr, |_| {
            panic!("announced a change to the wrong socket")
        })
        .unwrap();
    assert_eq!(
        outcome,
        Outcome::Changed {
            now: format!("socket:[{ino}]")
        }
    );
    assert_eq!(rec.ino_seen, Some(ino));
    assert_eq!(
        tcp_states(pid).get(&ino),
        Some(&(SockState::CloseWait as u8))
    );
    // A fd the process does not have: gone, not an error.
    let (outcome, _) =
        fdclose::pidfd::shutdown_step(&step(pid, 999, ino), How::Rdwr, |_| Ok(())).unwrap();
    assert!(matches!(outcome, Outcome::Gone { .. }), "{outcome:?}");
}

// ---- through the fdclose binary ----------------------------------------------------------------

fn journal_entries(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `fdclose --pid P --state close-wait --action shutdown --yes --json` (+ extra args), with the
/// server's CLOSE-WAIT sockets checked before and after. Returns the journal.
fn shutdown_via_cli(env: &[(&str, &str)], pidfd_expected: bool) -> Vec<serde_json::Value> {
    let (mut fx, port) = server();
    let pid = fx.pid();
    let fds = leak(&mut fx, port, 3);
    let inodes: Vec<u64> = fds.iter().map(|&fd| fd_inode(pid, fd)).collect();
    let dir = tempfile::tempdir().unwrap();
    let jpath = dir.path().join("journal.jsonl");
    let pid_s = pid.to_string();

    let watch = StopWatch::start(pid);
    let (code, lines, err) = fdclose_json(
        &[
            "--pid",
            &pid_s,
            "--state",
            "close-wait",
            "--action",
            "shutdown",
            "--yes",
            "--json",
            "--journal",
            jpath.to_str().unwrap(),
        ],
        env,
    );
    let (bad, samples) = watch.finish();
    assert_eq!(code, 0, "{err}");
    assert!(samples > 0);
    if pidfd_expected {
        assert!(
            bad.is_empty(),
            "the server was ptrace-stopped or traced: {bad:?}"
        );
    } else {
        // The engine stops the server: the same watch must see it (so it can see a stop at all).
        assert!(
            !bad.is_empty(),
            "no stop seen in {samples} samples of the ptrace fallback"
        );
    }

    let results: Vec<_> = lines.iter().filter(|v| v["type"] == "result").collect();
    assert_eq!(results.len(), 3, "{lines:?}");
    for r in &results {
        assert_eq!(r["outcome"], "done", "{r}");
        assert_eq!(r["verified"], true, "{r}");
    }
    // Fds kept, on the same sockets; the connections ended; the server still serves.
    let table = fd_table(pid);
    for (&fd, &ino) in fds.iter().zip(&inodes) {
        assert_eq!(table.get(&fd), Some(&format!("socket:[{ino}]")));
    }
    wait_for("connections to leave close-wait", LIMIT, || {
        let now = tcp_states(pid);
        inodes
            .iter()
            .all(|i| now.get(i) != Some(&(SockState::CloseWait as u8)))
    });
    assert!(ping(port).starts_with("pong"));
    journal_entries(&jpath)
}

#[test]
fn cli_shutdown_uses_pidfd_and_never_stops_the_server() {
    let j = shutdown_via_cli(&[], true);
    // pidfd records only: before + after per fd, no engine attach.
    assert_eq!(j.len(), 6, "{j:?}");
    assert!(j.iter().all(|e| e["via"] == "pidfd"), "{j:?}");
    for pair in j.chunks(2) {
        assert_eq!(pair[0]["type"], "before");
        assert_eq!(pair[0]["state"], "close-wait");
        assert_eq!(pair[1]["type"], "after");
        assert_eq!(pair[1]["verified"], true);
        assert_eq!(pair[0]["fd"], pair[1]["fd"]);
        assert_eq!(pair[0]["inode"], pair[1]["inode"]);
    }
}

#[test]
fn cli_shutdown_falls_back_to_the_engine_without_pidfd() {
    let j = shutdown_via_cli(&[("FDCLOSE_FORCE_NO_PIDFD", "1")], false);
    // The engine did it: it attached, and no pidfd record exists.
    assert!(j.iter().any(|e| e["type"] == "attach"), "{j:?}");
    assert!(j.iter().all(|e| e["via"] != "pidfd"), "{j:?}");
}

#[test]
fn cli_shutdown_without_pidfd_and_without_ptrace_refuses() {
    let (mut fx, port) = server();
    let pid = fx.pid();
    let fds = leak(&mut fx, port, 1);
    let ino = fd_inode(pid, fds[0]);
    let dir = tempfile::tempdir().unwrap();
    let jpath = dir.path().join("journal.jsonl");
    let pid_s = pid.to_string();
    let watch = StopWatch::start(pid);
    let (code, _, err) = fdclose_json(
        &[
            "--pid",
            &pid_s,
            "--state",
            "close-wait",
            "--action",
            "shutdown",
            "--no-ptrace",
            "--yes",
            "--journal",
            jpath.to_str().unwrap(),
        ],
        &[("FDCLOSE_FORCE_NO_PIDFD", "1")],
    );
    let (bad, _) = watch.finish();
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--no-ptrace") && err.contains("pidfd"),
        "{err}"
    );
    assert!(err.contains("nothing was touched"), "{err}");
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(
        tcp_states(pid).get(&ino),
        Some(&(SockState::CloseWait as u8)),
        "the socket was touched"
    );
    assert!(journal_entries(&jpath).is_empty());
}

#[test]
fn library_read_then_write_shutdown_of_an_established_connection_reaches_the_peer() {
    use std::io::Read;
    let (_fx, port) = server();
    let pid = _fx.pid();
    let before = fd_table(pid);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.write_all(b"ping\n").unwrap();
    let mut line = String::new();
    BufReader::new(&client).read_line(&mut line).unwrap();
    assert!(line.starts_with("pong"));
    // The server's fd for this connection: the one socket fd that appeared.
    let after = fd_table(pid);
    let new: Vec<(&i32, &String)> = after
        .iter()
        .filter(|(fd, l)| !before.contains_key(fd) && l.starts_with("socket:"))
        .collect();
    assert_eq!(new.len(), 1, "{after:?}");
    let fd = *new[0].0;
    let ino = fd_inode(pid, fd);
    let mut m = step(pid, fd, ino);
    m.socket.as_mut().unwrap().state = SockState::Established;

    // A read shutdown leaves the state alone; it is verified by reads now ending at once.
    let (outcome, rec) = fdclose::pidfd::shutdown_step(&m, How::Rd, |_| Ok(())).unwrap();
    assert!(
        matches!(outcome, Outcome::Done { verified: true, .. }),
        "{outcome:?}"
    );
    assert_eq!(rec.state_after.as_deref(), Some("established"));

    let (outcome, rec) = fdclose::pidfd::shutdown_step(&m, How::Wr, |_| Ok(())).unwrap();
    assert!(
        matches!(outcome, Outcome::Done { verified: true, .. }),
        "{outcome:?}"
    );
    assert_eq!(rec.state_before.as_deref(), Some("established"));
    assert!(
        matches!(
            rec.state_after.as_deref(),
            Some("fin-wait-1" | "fin-wait-2")
        ),
        "{rec:?}"
    );
    // The real connection ended its sending side: the client reads end-of-file.
    let mut buf = [0u8; 16];
    assert_eq!(client.read(&mut buf).unwrap(), 0);
    // Our duplicate is closed; the server still holds its fd on the same socket.
    assert_eq!(fd_table(pid).get(&fd), Some(&format!("socket:[{ino}]")));
}
