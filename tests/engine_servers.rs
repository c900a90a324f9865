//! The ptrace engine against real servers: a Python and a Java server that leak CLOSE_WAIT sockets
//! (they never close a connection whose peer went away). After the engine closes those fds the
//! servers keep serving new connections and their ESTABLISHED connections still exchange data.
//! close, shutdown and replace are each verified by their effect on a live server.

mod engine_common;
mod support;

use engine_common::*;
use fdclose::engine::Op;
use fdclose::plan::How;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use support::*;

const IO_LIMIT: Duration = Duration::from_secs(15);

fn python_server() -> Fixture {
    let script = repo_root().join("integration/fixtures/leaky_server.py");
    Fixture::spawn(Command::new("python3").arg("-u").arg(script))
}

/// javac LeakyServer.java once into the cargo test temp dir (again only when the source is newer).
fn java_classes() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let src = repo_root().join("integration/fixtures/LeakyServer.java");
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = tmp.join("leaky-java");
        let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        if modified(&dir.join("LeakyServer.class")) >= modified(&src) {
            return dir;
        }
        // Compile aside and rename into place, so parallel test binaries never see half a build.
        let mine = tmp.join(format!("leaky-java-{}", std::process::id()));
        std::fs::create_dir_all(&mine).unwrap();
        let st = Command::new("javac")
            .arg("-d")
            .arg(&mine)
            .arg(&src)
            .status()
            .expect("run javac");
        assert!(st.success(), "javac LeakyServer.java failed");
        let _ = std::fs::remove_dir_all(&dir);
        match std::fs::rename(&mine, &dir) {
            Ok(()) => dir,
            Err(_) => mine, // another test binary won the race: use our own copy
        }
    })
}

fn java_server() -> Fixture {
    Fixture::spawn(
        Command::new("java")
            .args(["-Xmx64m", "-XX:+UseSerialGC", "-cp"])
            .arg(java_classes())
            .arg("LeakyServer"),
    )
}

/// A client connection speaking the servers' line protocol.
struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(IO_LIMIT)).unwrap();
        Client {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    fn request(&mut self, line: &str) -> String {
        writeln!(self.w, "{line}").unwrap();
        let mut reply = String::new();
        self.r.read_line(&mut reply).unwrap();
        reply.trim_end().to_string()
    }

    fn ping(&mut self, tag: &str) {
        assert_eq!(self.request(&format!("PING {tag}")), format!("PONG {tag}"));
    }

    /// Local port of our end: identifies the server's fd for this connection in /proc/net/tcp.
    fn local_port(&self) -> u16 {
        self.w.local_addr().unwrap().port()
    }
}

/// The server's fd (and inode) of the ESTABLISHED connection whose remote port is `peer_port`.
fn server_fd_for_peer(pid: i32, peer_port: u16) -> (i32, u64) {
    let needle = format!(":{peer_port:04X} ");
    let mut inos = std::collections::BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // f[2] is the remote address: ours when the server is the local side.
            if f.len() > 9 && format!("{} ", f[2]).ends_with(&needle) && f[3] == "01" {
                inos.insert(f[9].parse::<u64>().unwrap());
            }
        }
    }
    fd_table(pid)
        .into_iter()
        .find_map(|(fd, link)| {
            let ino: u64 = link
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()?;
            inos.contains(&ino).then_some((fd, ino))
        })
        .unwrap_or_else(|| panic!("no server fd for peer port {peer_port} in pid {pid}"))
}

/// Open `n` connections, use each once, then hang up: the server is left holding them in
/// CLOSE_WAIT. Returns the server's (fd, inode) for them.
fn leak(pid: i32, port: u16, n: usize) -> Vec<(i32, u64)> {
    let before: std::collections::BTreeSet<u64> = fds_in_state(pid, "08")
        .into_iter()
        .map(|(_, i)| i)
        .collect();
    for i in 0..n {
        let mut c = Client::connect(port);
        c.ping(&format!("leak{i}"));
    }
    let mut leaked = vec![];
    wait_for(
        &format!("{n} CLOSE_WAIT fds in pid {pid}"),
        Duration::from_secs(20),
        || {
            leaked = fds_in_state(pid, "08")
                .into_iter()
                .filter(|(_, i)| !before.contains(i))
                .collect();
            leaked.len() >= n
        },
    );
    leaked
}

fn server_survives_close_wait_cleanup(mut fx: Fixture) {
    let pid = fx.pid();
    let port: u16 = fx.expect_line_within("PORT", LINE_LIMIT).parse().unwrap();
    let mut live: Vec<Client> = (0..3).map(|_| Client::connect(port)).collect();
    for (i, c) in live.iter_mut().enumerate() {
        c.ping(&format!("live{i}"));
    }
    let live_fds: Vec<(i32, u64)> = live
        .iter()
        .map(|c| server_fd_for_peer(pid, c.local_port()))
        .collect();

    let leaked = leak(pid, port, 20);
    let outcomes = operate_ok(pid, surgeries(&leaked, || Op::Close));
    assert_all_done(&outcomes);
    let table = fd_table(pid);
    for &(fd, ino) in &leaked {
        assert!(
            !table.contains_key(&fd),
            "CLOSE_WAIT fd {fd} (inode {ino}) closed"
        );
    }
    let still: Vec<_> = fds_in_state(pid, "08");
    assert!(
        leaked.iter().all(|l| !still.contains(l)),
        "no leaked socket left in CLOSE_WAIT: {still:?}"
    );
    assert_eq!(status_field(pid, "TracerPid").as_deref(), Some("0"));

    // ESTABLISHED connections untouched: same fds, same sockets, still talking.
    for (c, &(fd, ino)) in live.iter_mut().zip(&live_fds) {
        assert_eq!(
            fd_inode(pid, fd),
            Some(ino),
            "live connection fd {fd} untouched"
        );
        c.ping("after");
    }
    // New connections are served.
    for i in 0..5 {
        let mut c = Client::connect(port);
        c.ping(&format!("new{i}"));
        assert!(c.request("STATS").starts_with("STATS held="));
    }
}

#[test]
fn python_server_survives_close_wait_cleanup() {
    server_survives_close_wait_cleanup(python_server());
}

#[test]
fn java_server_survives_close_wait_cleanup() {
    server_survives_close_wait_cleanup(java_server());
}

/// shutdown: the peer sees EOF while the server's fd stays open on the same socket; the server's
/// thread blocked reading that connection wakes up and the server goes on serving.
#[test]
fn shutdown_ends_connection_keeps_fd() {
    for fx in [python_server(), java_server()] {
        shutdown_case(fx);
    }
}

fn shutdown_case(mut fx: Fixture) {
    let pid = fx.pid();
    let port: u16 = fx.expect_line_within("PORT", LINE_LIMIT).parse().unwrap();
    let mut victim = Client::connect(port);
    let mut bystander = Client::connect(port);
    victim.ping("v");
    bystander.ping("b");
    let (fd, ino) = server_fd_for_peer(pid, victim.local_port());

    let outcomes = operate_ok(
        pid,
        vec![fdclose::engine::Surgery {
            fd,
            expect_ino: ino,
            op: Op::Shutdown(How::Rdwr),
        }],
    );
    assert!(outcomes[0].is_done(), "{:?}", outcomes[0]);
    let mut buf = [0u8; 16];
    assert_eq!(
        victim.r.read(&mut buf).unwrap(),
        0,
        "peer sees EOF after shutdown"
    );
    assert_eq!(
        fd_inode(pid, fd),
        Some(ino),
        "fd {fd} still open on the same socket"
    );
    bystander.ping("b2");
    Client::connect(port).ping("new");
}

/// close: the fd is gone and the kernel releases the connection.
#[test]
fn close_removes_fd() {
    let mut fx = python_server();
    let pid = fx.pid();
    let port: u16 = fx.expect_line_within("PORT", LINE_LIMIT).parse().unwrap();
    let leaked = leak(pid, port, 3);
    let outcomes = operate_ok(pid, surgeries(&leaked, || Op::Close));
    assert_all_done(&outcomes);
    for &(fd, _) in &leaked {
        assert_eq!(fd_inode(pid, fd), None, "fd {fd} gone");
    }
    // The kernel released the sockets: none of the inodes is in any TCP table any more (LAST_ACK
    // ends when our side's FIN is acknowledged, on loopback at once).
    wait_for(
        "closed sockets leave the TCP tables",
        Duration::from_secs(10),
        || {
            let all: std::collections::BTreeSet<u64> = ["01", "08", "09", "0B"]
                .iter()
                .flat_map(|s| tcp_inodes_in_state(pid, s))
                .collect();
            leaked.iter().all(|(_, i)| !all.contains(i))
        },
    );
    Client::connect(port).ping("new");
}

/// replace: the fd number stays open, now on a different (dead) socket; the leaked connection is
/// released.
#[test]
fn replace_keeps_number_on_dead_socket() {
    for fx in [python_server(), java_server()] {
        replace_case(fx);
    }
}

fn replace_case(mut fx: Fixture) {
    let pid = fx.pid();
    let port: u16 = fx.expect_line_within("PORT", LINE_LIMIT).parse().unwrap();
    let mut live = Client::connect(port);
    live.ping("live");
    let leaked = leak(pid, port, 5);
    let outcomes = operate_ok(pid, surgeries(&leaked, || Op::Replace));
    assert_all_done(&outcomes);
    for &(fd, ino) in &leaked {
        let now = fd_inode(pid, fd).unwrap_or_else(|| panic!("fd {fd} still open after replace"));
        assert_ne!(now, ino, "fd {fd} now holds a different object");
        let link = fd_table(pid).get(&fd).cloned().unwrap();
        assert!(
            link.starts_with("socket:["),
            "fd {fd} holds a socket: {link}"
        );
    }
    wait_for("replaced sockets released", Duration::from_secs(10), || {
        let cw = tcp_inodes_in_state(pid, "08");
        leaked.iter().all(|(_, i)| !cw.contains(i))
    });
    live.ping("live2");
    Client::connect(port).ping("new");
}
