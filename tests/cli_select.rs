//! Live end-to-end tests of the selectors: the real fdclose binary against a real Python process
//! (integration/fixtures/cli_server.py) holding sockets in known states on loopback. Every
//! selector is checked for exactly the fd set the fixture says it set up, and the target's fd table
//! must be unchanged afterwards.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;
use support::{fd_table, fdclose, repo_root, wait_for, Fixture};

/// The fixture process and what it reported about its fds.
struct Server {
    fx: Fixture,
    info: Value,
}

impl Server {
    fn start() -> Server {
        Server::start_with(&mut Command::new("python3"))
    }

    /// `cmd` runs the fixture script (appended as the last argument).
    fn start_with(cmd: &mut Command) -> Server {
        let script = repo_root().join("integration/fixtures/cli_server.py");
        let mut fx = Fixture::spawn(cmd.arg(script));
        let line = fx.expect_line("READY ");
        let info: Value = serde_json::from_str(&line).expect("fixture READY line is JSON");
        assert_eq!(info["pid"].as_i64().unwrap() as i32, fx.pid());
        Server { fx, info }
    }

    fn pid(&self) -> i32 {
        self.fx.pid()
    }

    fn port(&self, key: &str) -> u16 {
        self.info[key].as_u64().unwrap() as u16
    }

    fn entries(&self) -> &Vec<Value> {
        self.info["fds"].as_array().unwrap()
    }

    /// Fds with any of these roles.
    fn role(&self, roles: &[&str]) -> BTreeSet<i32> {
        self.entries()
            .iter()
            .filter(|e| roles.contains(&e["role"].as_str().unwrap()))
            .map(|e| e["fd"].as_i64().unwrap() as i32)
            .collect()
    }

    /// Fds with one of `roles` whose reported `key` ("local"/"peer") satisfies `f`.
    fn role_where(&self, roles: &[&str], key: &str, f: impl Fn(&str) -> bool) -> BTreeSet<i32> {
        self.entries()
            .iter()
            .filter(|e| roles.contains(&e["role"].as_str().unwrap()))
            .filter(|e| e[key].as_str().is_some_and(&f))
            .map(|e| e["fd"].as_i64().unwrap() as i32)
            .collect()
    }

    fn inode_of(&self, fd: i32) -> u64 {
        self.entries()
            .iter()
            .find(|e| e["fd"].as_i64() == Some(fd as i64))
            .unwrap()["inode"]
            .as_u64()
            .unwrap()
    }
}

/// Roles of the TCP sockets in a connected state (neither listening nor closed).
fn connected_roles() -> Vec<&'static str> {
    vec![
        "cw4", "cw6m", "cw6", "est_srv", "est_cli", "est6_srv", "est6_cli", "busy_srv", "busy_cli",
    ]
}

/// What one `fdclose --pid P --dry-run --json ARGS` run printed.
struct Run {
    code: i32,
    fds: BTreeSet<i32>,
    objects: Vec<Value>,
    stderr: String,
}

fn run(args: &[String]) -> Output {
    fdclose().args(args).output().expect("run fdclose")
}

fn select(s: &Server, args: &[&str]) -> Run {
    let mut a: Vec<String> = vec![
        "--pid".into(),
        s.pid().to_string(),
        "--dry-run".into(),
        "--json".into(),
    ];
    a.extend(args.iter().map(|x| x.to_string()));
    let out = run(&a);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let objects: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    let fds = objects
        .iter()
        .filter(|o| o["type"] == "socket" || o["type"] == "fd")
        .map(|o| {
            assert_eq!(o["pid"].as_i64(), Some(s.pid() as i64));
            o["fd"].as_i64().unwrap() as i32
        })
        .collect();
    Run {
        code: out.status.code().unwrap(),
        fds,
        objects,
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Run the selection and check it picked exactly `want` (exit 0, or 1 when `want` is empty).
fn check(s: &Server, args: &[&str], want: &BTreeSet<i32>) -> Run {
    let r = select(s, args);
    assert_eq!(
        &r.fds, want,
        "fdclose {args:?} picked the wrong fds; stderr: {}",
        r.stderr
    );
    let code = if want.is_empty() { 1 } else { 0 };
    assert_eq!(r.code, code, "exit code for {args:?}; stderr: {}", r.stderr);
    let summary = r.objects.last().expect("a summary object");
    assert_eq!(summary["type"], "summary");
    assert_eq!(
        summary["sockets"].as_u64().unwrap() + summary["other_fds"].as_u64().unwrap(),
        want.len() as u64
    );
    r
}

fn set(v: &[BTreeSet<i32>]) -> BTreeSet<i32> {
    v.iter().flatten().copied().collect()
}

#[test]
fn state_selectors_pick_exactly_the_fixture_fds() {
    let s = Server::start();
    let before = fd_table(s.pid());

    let r = check(
        &s,
        &["--state", "close-wait"],
        &s.role(&["cw4", "cw6m", "cw6"]),
    );
    for o in r.objects.iter().filter(|o| o["type"] == "socket") {
        assert_eq!(o["state"], "close-wait");
        assert_eq!(o["proto"], "tcp");
        assert_eq!(o["comm"], "python3");
        assert_eq!(
            o["inode"].as_u64(),
            Some(s.inode_of(o["fd"].as_i64().unwrap() as i32))
        );
    }
    check(
        &s,
        &["--state", "established"],
        &s.role(&[
            "est_srv", "est_cli", "est6_srv", "est6_cli", "busy_srv", "busy_cli",
        ]),
    );
    check(
        &s,
        &["--state", "listening"],
        &s.role(&["listen4", "listen6"]),
    );
    // Sockets whose connection is gone while the fd stays open: in no kernel table.
    let closed = s.role(&["closed"]);
    assert_eq!(closed.len(), 3);
    check(&s, &["--state", "closed"], &closed);
    check(
        &s,
        &["--state", "closed", "--state", "listening"],
        &set(&[closed.clone(), s.role(&["listen4", "listen6"])]),
    );
    check(&s, &["--state", "connected"], &s.role(&connected_roles()));
    check(
        &s,
        &["--state", "synchronized"],
        &s.role(&connected_roles()),
    );
    let mut every = connected_roles();
    every.extend(["listen4", "listen6", "closed"]);
    check(&s, &["--state", "all"], &s.role(&every));
    // No selector at all lists every TCP socket, like --state all.
    check(&s, &[], &s.role(&every));
    check(
        &s,
        &["--state", "fin-wait-1", "--state", "last-ack"],
        &BTreeSet::new(),
    );

    assert_eq!(
        fd_table(s.pid()),
        before,
        "a dry run changed the target's fd table"
    );
}

#[test]
fn address_selectors_match_cidrs_ports_and_mapped_peers() {
    let s = Server::start();
    let before = fd_table(s.pid());
    let v4 = s.port("v4port");
    let v6 = s.port("v6port");

    check(
        &s,
        &["--peer", "127.0.0.2"],
        &s.role_where(&["cw4"], "peer", |p| p.starts_with("127.0.0.2:")),
    );
    // Repeated selectors OR: .2 (2 fds) and .4 (1 fd).
    let r = check(
        &s,
        &["--peer", "127.0.0.2", "--peer", "127.0.0.4"],
        &s.role_where(&["cw4"], "peer", |p| {
            p.starts_with("127.0.0.2:") || p.starts_with("127.0.0.4:")
        }),
    );
    assert_eq!(r.fds.len(), 3);
    // An IPv4 filter matches the dual-stack listener's ::ffff:127.0.0.6 peer, shown unmapped.
    let r = check(&s, &["--peer", "127.0.0.6"], &s.role(&["cw6m"]));
    let o = &r.objects[0];
    assert!(o["peer"].as_str().unwrap().starts_with("127.0.0.6:"), "{o}");
    assert_eq!(o["local"], format!("127.0.0.1:{v6}"));
    check(&s, &["--peer", "[::ffff:127.0.0.6]"], &s.role(&["cw6m"]));
    // CIDR: 127.0.0.0/30 holds .1 (the clients' peer), .2 and .3.
    check(
        &s,
        &["--peer", "127.0.0.0/30", "--state", "close-wait"],
        &s.role_where(&["cw4"], "peer", |p| {
            p.starts_with("127.0.0.2:") || p.starts_with("127.0.0.3:")
        }),
    );
    check(
        &s,
        &["--peer", "127.0.0.0/30"],
        &set(&[
            s.role_where(&["cw4"], "peer", |p| {
                p.starts_with("127.0.0.2:") || p.starts_with("127.0.0.3:")
            }),
            s.role(&["est_cli", "busy_cli"]),
        ]),
    );
    check(
        &s,
        &["--peer", &format!("127.0.0.1:{v4}")],
        &s.role(&["est_cli", "busy_cli"]),
    );
    check(
        &s,
        &["--peer", "::1"],
        &s.role(&["cw6", "est6_srv", "est6_cli"]),
    );
    check(
        &s,
        &["--peer", &format!("[::1]:{v6}")],
        &s.role(&["est6_cli"]),
    );
    check(
        &s,
        &["--peer", "[::1/128]"],
        &s.role(&["cw6", "est6_srv", "est6_cli"]),
    );
    // AND across kinds.
    check(
        &s,
        &["--state", "close-wait", "--peer", "127.0.0.3"],
        &s.role_where(&["cw4"], "peer", |p| p.starts_with("127.0.0.3:")),
    );
    check(&s, &["--peer", "127.0.0.99"], &BTreeSet::new());

    let on_v4 = s.role(&["listen4", "cw4", "est_srv", "busy_srv"]);
    check(&s, &["--local", &format!("127.0.0.1:{v4}")], &on_v4);
    check(&s, &["--local-port", &v4.to_string()], &on_v4);
    check(
        &s,
        &["--local", &format!("*:{v6}")],
        &s.role(&["listen6", "cw6m", "cw6", "est6_srv"]),
    );
    check(
        &s,
        &["--local", &format!("[::1]:{v6}")],
        &s.role(&["cw6", "est6_srv"]),
    );
    check(
        &s,
        &["--peer-port", &v4.to_string()],
        &s.role(&["est_cli", "busy_cli"]),
    );
    // A range: every connected or listening TCP socket whose local port lies in it.
    let (lo, hi) = (v4.min(v6), v4.max(v6));
    let mut roles = connected_roles();
    roles.extend(["listen4", "listen6"]);
    let in_range = s.role_where(&roles, "local", |l| {
        let port: u16 = l.rsplit(':').next().unwrap().parse().unwrap();
        (lo..=hi).contains(&port)
    });
    assert!(in_range.len() >= 10);
    check(
        &s,
        &[
            "--local-port",
            &format!("{lo}-{hi}"),
            "--state",
            "connected",
            "--state",
            "listening",
        ],
        &in_range,
    );
    let one_peer = s.entries().iter().find(|e| e["role"] == "cw6").unwrap()["peer"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    check(
        &s,
        &["--peer-port", &format!("{one_peer}-{one_peer}")],
        &s.role_where(&connected_roles(), "peer", |p| {
            p.ends_with(&format!(":{one_peer}"))
        }),
    );

    assert_eq!(fd_table(s.pid()), before);
}

#[test]
fn fd_inode_and_proto_selectors() {
    let s = Server::start();
    let before = fd_table(s.pid());
    let pipe = *s.role(&["pipe"]).iter().next().unwrap();
    let udp = *s.role(&["udp"]).iter().next().unwrap();
    let unix: Vec<i32> = s.role(&["unix"]).into_iter().collect();

    // --fd alone selects any kind of fd, sockets of any protocol and non-sockets.
    let r = check(
        &s,
        &["--fd", &pipe.to_string(), "--fd", &udp.to_string()],
        &[pipe, udp].into(),
    );
    let p = r.objects.iter().find(|o| o["fd"] == pipe).unwrap();
    assert_eq!(p["type"], "fd");
    assert!(p["target"].as_str().unwrap().starts_with("pipe:["), "{p}");
    let u = r.objects.iter().find(|o| o["fd"] == udp).unwrap();
    assert_eq!(u["proto"], "udp");
    // With a socket selector next to it, --fd narrows TCP sockets only.
    let cw = *s.role(&["cw6"]).iter().next().unwrap();
    check(
        &s,
        &[
            "--fd",
            &cw.to_string(),
            "--fd",
            &udp.to_string(),
            "--state",
            "close-wait",
        ],
        &[cw].into(),
    );
    check(
        &s,
        &["--inode", &s.inode_of(unix[0]).to_string()],
        &[unix[0]].into(),
    );
    check(
        &s,
        &[
            "--inode",
            &s.inode_of(cw).to_string(),
            "--inode",
            &s.inode_of(udp).to_string(),
        ],
        &[cw, udp].into(),
    );
    check(&s, &["--proto", "udp"], &s.role(&["udp", "udp_conn"]));
    check(
        &s,
        &[
            "--proto",
            "udp",
            "--peer",
            s.entries().iter().find(|e| e["role"] == "udp").unwrap()["local"]
                .as_str()
                .unwrap(),
        ],
        &s.role(&["udp_conn"]),
    );
    check(&s, &["--proto", "unix"], &s.role(&["unix"]));
    let mut tcp_and_unix = connected_roles();
    tcp_and_unix.extend(["listen4", "listen6", "closed", "unix"]);
    check(
        &s,
        &["--proto", "unix", "--proto", "tcp"],
        &s.role(&tcp_and_unix),
    );

    // The epoll fd watching est_srv is reported with it.
    let est = *s.role(&["est_srv"]).iter().next().unwrap();
    let ep = *s.role(&["epoll"]).iter().next().unwrap();
    let r = check(&s, &["--fd", &est.to_string()], &[est].into());
    assert_eq!(r.objects[0]["epoll"], serde_json::json!([ep]));

    assert_eq!(fd_table(s.pid()), before);
}

#[test]
fn idle_selects_sockets_that_received_nothing_for_that_long() {
    let s = Server::start();
    let before = fd_table(s.pid());
    let quiet = s.role(&["est_srv", "est_cli", "est6_srv", "est6_cli", "busy_cli"]);
    let all = select(&s, &["--state", "established"]);
    for o in all.objects.iter().filter(|o| o["type"] == "socket") {
        assert!(
            o["idle_ms"].is_u64(),
            "no idle time reported (tcp_info from sock_diag) for {o}"
        );
    }
    // busy_srv receives a byte every 50 ms and must never count as idle; the others become idle
    // for 1s about a second after the fixture started.
    wait_for(
        "the quiet sockets to be idle for 1s",
        Duration::from_secs(20),
        || {
            let r = select(&s, &["--idle", "1s", "--state", "established"]);
            assert!(
                !r.fds
                    .contains(&s.role(&["busy_srv"]).into_iter().next().unwrap()),
                "busy_srv counted as idle: {:?}",
                r.objects
            );
            r.fds == quiet
        },
    );
    let r = check(&s, &["--idle", "1s", "--state", "established"], &quiet);
    for o in r.objects.iter().filter(|o| o["type"] == "socket") {
        assert!(o["idle_ms"].as_u64().unwrap() >= 1000, "{o}");
    }
    check(&s, &["--idle", "1h"], &BTreeSet::new());
    assert_eq!(fd_table(s.pid()), before);
}

/// A target inside a network namespace the test creates: its sockets must be looked up in its
/// namespace, not ours (where the same inodes are in no table and would look "closed").
#[test]
fn target_in_another_network_namespace_is_resolved_there() {
    let s = Server::start_with(Command::new("unshare").args([
        "-n",
        "sh",
        "-c",
        "ip link set lo up && exec python3 \"$0\"",
    ]));
    let before = fd_table(s.pid());
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    let theirs = std::fs::read_link(format!("/proc/{}/ns/net", s.pid())).unwrap();
    assert_ne!(
        ours, theirs,
        "the fixture did not get its own network namespace"
    );

    check(
        &s,
        &["--state", "close-wait"],
        &s.role(&["cw4", "cw6m", "cw6"]),
    );
    check(&s, &["--state", "closed"], &s.role(&["closed"]));
    check(&s, &["--peer", "127.0.0.6"], &s.role(&["cw6m"]));
    check(
        &s,
        &[
            "--state",
            "established",
            "--local-port",
            &s.port("v4port").to_string(),
        ],
        &s.role(&["est_srv", "busy_srv"]),
    );
    // Searching every process finds the namespaced sockets too.
    let out = run(&[
        "--dry-run".into(),
        "--json".into(),
        "--state".into(),
        "close-wait".into(),
        "--peer".into(),
        "127.0.0.6".into(),
    ]);
    let pid = s.pid() as i64;
    let mine: BTreeSet<i32> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|o| o["type"] == "socket" && o["pid"].as_i64() == Some(pid))
        .map(|o| o["fd"].as_i64().unwrap() as i32)
        .collect();
    assert_eq!(mine, s.role(&["cw6m"]));
    assert_eq!(fd_table(s.pid()), before);
}

#[test]
fn summary_and_table_output() {
    let s = Server::start();
    let pid = s.pid().to_string();
    let out = run(&[
        "--pid".into(),
        pid.clone(),
        "--state".into(),
        "close-wait".into(),
        "--summary".into(),
        "--dry-run".into(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("By state:"), "{text}");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' row in:\n{text}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(line("close-wait "), "8");
    assert_eq!(line("127.0.0.3 "), "3");
    assert_eq!(line("127.0.0.2 "), "2");
    assert_eq!(line("127.0.0.6 "), "1");
    assert_eq!(line("::1 "), "1");
    assert!(text.contains("8 sockets in 1 process"), "{text}");

    let out = run(&[
        "--pid".into(),
        pid,
        "--peer".into(),
        "127.0.0.6".into(),
        "--dry-run".into(),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("Plan: close 1 socket in 1 process"),
        "{text}"
    );
    assert!(lines[1].split_whitespace().eq([
        "PID", "COMM", "FD", "PROTO", "STATE", "LOCAL", "PEER", "RECV-Q", "SEND-Q", "IDLE", "EPOLL"
    ]));
    let row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(row[0], s.pid().to_string());
    assert_eq!(row[4], "close-wait");
    assert_eq!(row[5], format!("127.0.0.1:{}", s.port("v6port")));
    assert!(row[6].starts_with("127.0.0.6:"), "{text}");
}
