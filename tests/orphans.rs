//! Orphans: FIN-WAIT-1 sockets behind a zero window that no fd owns, listed and destroyed with
//! SOCK_DESTROY, in our namespace and in one the test creates. `ss` is the independent witness.

mod support;

use fdclose::model::{DiagId, Match, MemInfo, Proto, SockState, SocketEntry};
use fdclose::plan::Outcome;
use std::net::SocketAddr;
use std::process::Command;
use support::*;

/// What the fixture promised: the orphans' local port and the Send-Q `ss` must show in total.
struct Orphans {
    fx: Fixture,
    port: u16,
    count: usize,
    /// SIOCOUTQ sum at close() plus one sequence number per FIN.
    send_q: u64,
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// Built once per test binary: parallel tests of one binary share a pid, so they must not race
/// on build_c_fixture's temporary file.
fn fixture_bin() -> std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| build_c_fixture("orphan_finwait", &[]))
        .clone()
}

/// Start the fixture (inside `netns` when given: `ip netns exec` execs it, same pid).
fn orphans(netns: Option<&str>) -> Orphans {
    orphans_n(netns, 20)
}

fn orphans_n(netns: Option<&str>, n: usize) -> Orphans {
    let bin = fixture_bin();
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.arg(n.to_string());
    let mut fx = Fixture::spawn(&mut cmd);
    let ready = fx.expect_line("READY");
    let sendq: u64 = field(&ready, "sendq").parse().unwrap();
    let fin: u64 = field(&ready, "fin").parse().unwrap();
    Orphans {
        port: field(&ready, "port").parse().unwrap(),
        count: field(&ready, "orphans").parse().unwrap(),
        send_q: sendq + fin,
        fx,
    }
}

/// One orphan as `ss -tanOem` shows it.
#[derive(Debug, Clone)]
struct SsLine {
    local: SocketAddr,
    peer: SocketAddr,
    send_q: u64,
    recv_q: u64,
    cookie: u64,
    ino: u64,
    /// skmem r + w + f + o
    mem: u64,
}

/// `ss` (in `netns` when given) for FIN-WAIT-1 sockets with local port `port`.
fn ss_finwait(netns: Option<&str>, port: u16) -> Vec<SsLine> {
    let filter = format!("sport = :{port}");
    let args = ["-tanOem", "state", "fin-wait-1", filter.as_str()];
    let out = match netns {
        Some(ns) => Command::new("ip")
            .args(["netns", "exec", ns, "ss"])
            .args(args)
            .output(),
        None => Command::new("ss").args(args).output(),
    }
    .expect("run ss");
    assert!(out.status.success(), "ss failed");
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let tag = |p: &str| w.iter().find_map(|x| x.strip_prefix(p)).unwrap();
            let skmem = tag("skmem:(").trim_end_matches(')');
            let mem: u64 = skmem
                .split(',')
                .filter(|kv| {
                    ["r", "w", "f", "o"]
                        .iter()
                        .any(|k| kv.starts_with(k) && kv[1..].parse::<u64>().is_ok())
                })
                .map(|kv| kv[1..].parse::<u64>().unwrap())
                .sum();
            SsLine {
                recv_q: w[0].parse().unwrap(),
                send_q: w[1].parse().unwrap(),
                local: w[2].parse().unwrap(),
                peer: w[3].parse().unwrap(),
                ino: tag("ino:").parse().unwrap(),
                cookie: u64::from_str_radix(tag("sk:"), 16).unwrap(),
                mem,
            }
        })
        .collect()
}

/// An orphan step as the resolver hands it over (pid 0, no fd, exact sock_diag id).
fn orphan_step(s: &SsLine) -> Match {
    Match {
        pid: 0,
        comm: "-".into(),
        fd: None,
        ino: 0,
        target: "orphan".into(),
        socket: Some(SocketEntry {
            inode: s.ino,
            proto: Proto::Tcp,
            state: SockState::FinWait1,
            local: Some(s.local),
            peer: Some(s.peer),
            unix_path: None,
            recv_q: s.recv_q,
            send_q: s.send_q,
            idle_ms: None,
            mem: Some(MemInfo {
                wmem_queued: s.mem as u32,
                ..MemInfo::default()
            }),
            uid: Some(0),
            diag: Some(DiagId {
                family: libc::AF_INET as u8,
                protocol: libc::IPPROTO_TCP as u8,
                ifindex: 0,
                cookie: s.cookie,
            }),
        }),
        epoll: vec![],
    }
}

/// Destroy every listed orphan through the library; returns (done+verified count, mem freed).
fn destroy_all(netns: Option<&str>, lines: &[SsLine]) -> (usize, u64) {
    let mut d = fdclose::destroy::Destroyer::new(netns.map(|n| format!("/run/netns/{n}").into()));
    let mut ok = 0;
    let mut freed = 0;
    for s in lines {
        let (o, rec) = d.destroy(&orphan_step(s));
        assert_eq!(rec.send_q, s.send_q);
        assert_eq!(rec.cookie, Some(s.cookie));
        match o {
            Outcome::Done { verified: true, .. } => {
                ok += 1;
                freed += rec.mem.unwrap_or(0);
            }
            o => panic!("{} -> {}: {o:?}", s.local, s.peer),
        }
    }
    (ok, freed)
}

#[test]
fn library_destroys_twenty_finwait1_orphans() {
    let o = orphans(None);
    let before = ss_finwait(None, o.port);
    assert_eq!(before.len(), o.count);
    assert_eq!(o.count, 20);
    assert!(before.iter().all(|s| s.ino == 0 && s.send_q > 0));
    let total: u64 = before.iter().map(|s| s.send_q).sum();
    assert_eq!(total, o.send_q, "ss Send-Q total vs the fixture's count");
    let mem: u64 = before.iter().map(|s| s.mem).sum();
    eprintln!(
        "orphans {} send_q {} bytes skmem {} bytes before destroy",
        before.len(),
        total,
        mem
    );

    // Destroying one twice: the second time it is already gone, which is not an error.
    let (ok, freed) = destroy_all(None, &before[..1]);
    assert_eq!((ok, freed), (1, before[0].mem));
    let mut d = fdclose::destroy::Destroyer::new(None);
    let (again, rec) = d.destroy(&orphan_step(&before[0]));
    assert!(matches!(again, Outcome::Gone { .. }), "{again:?}");
    assert_eq!(rec.errno, Some(libc::ENOENT));

    // A wrong cookie names a different socket: the kernel refuses (ENOENT on current kernels,
    // ESTALE on older ones) and the socket on that tuple is left alone.
    let mut wrong = orphan_step(&before[1]);
    wrong.socket.as_mut().unwrap().diag.as_mut().unwrap().cookie ^= 0xffff_0000;
    let (o2, _) = d.destroy(&wrong);
    assert!(
        matches!(o2, Outcome::Gone { .. } | Outcome::Changed { .. }),
        "{o2:?}"
    );
    assert_eq!(ss_finwait(None, o.port).len(), o.count - 1);

    let (ok, freed) = destroy_all(None, &before[1..]);
    assert_eq!(ok, o.count - 1);
    eprintln!("freed {} bytes of skmem", freed + before[0].mem);
    assert!(
        ss_finwait(None, o.port).is_empty(),
        "orphans left after destroy"
    );
    drop(o.fx);
}

/// A network namespace for one test, deleted (after its processes are gone) on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("fdclose-orph-{tag}-{}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name} (needs root)");
        let ns = Netns(name);
        let st = Command::new("ip")
            .args(["-n", &ns.0, "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(st.success());
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn library_destroys_orphans_inside_a_test_netns() {
    let ns = Netns::new("lib");
    let o = orphans(Some(&ns.0));
    let before = ss_finwait(Some(&ns.0), o.port);
    assert_eq!(before.len(), 20);
    // Our own namespace does not see them.
    assert!(ss_finwait(None, o.port).is_empty());
    let (ok, _) = destroy_all(Some(&ns.0), &before);
    assert_eq!(ok, 20);
    assert!(ss_finwait(Some(&ns.0), o.port).is_empty());
    drop(o);
    drop(ns);
}

// ---- through the fdclose binary ----------------------------------------------------------------

fn of_type<'a>(lines: &'a [serde_json::Value], ty: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|v| v["type"] == ty).collect()
}

/// Bytes a listed socket holds in the kernel (MemInfo::total of its `mem` object).
fn mem_of(v: &serde_json::Value) -> u64 {
    let m = &v["mem"];
    ["rmem_alloc", "wmem_queued", "fwd_alloc", "optmem"]
        .iter()
        .map(|k| m[k].as_u64().unwrap_or_else(|| panic!("no mem.{k} in {v}")))
        .sum()
}

/// `ip netns` name or our own namespace, as fdclose's --netns takes it.
fn ns_args(netns: Option<&str>) -> Vec<String> {
    match netns {
        Some(ns) => vec!["--netns".into(), format!("/run/netns/{ns}")],
        None => vec![],
    }
}

/// List the fixture's orphans with fdclose and check them against ss and the fixture; then
/// destroy them, check they are gone, and check the journal. Returns (send-q, memory) freed.
fn list_and_destroy(o: &Orphans, netns: Option<&str>) -> (u64, u64) {
    let port = o.port.to_string();
    let journal = tempfile::tempdir().unwrap();
    let jpath = journal.path().join("journal.jsonl");
    let mut select: Vec<String> = vec![
        "--orphans".into(),
        "--state".into(),
        "fin-wait-1".into(),
        "--local-port".into(),
        port.clone(),
        "--json".into(),
    ];
    select.extend(ns_args(netns));
    let sel: Vec<&str> = select.iter().map(String::as_str).collect();

    let ss = ss_finwait(netns, o.port);
    assert_eq!(ss.len(), o.count);
    let (code, lines, err) = fdclose_json(&[&sel[..], &["--dry-run"]].concat(), &[]);
    assert_eq!(code, 0, "{err}");
    let socks = of_type(&lines, "socket");
    assert_eq!(socks.len(), o.count, "{lines:?}");
    for s in &socks {
        assert_eq!(s["pid"], 0);
        assert!(s["fd"].is_null());
        assert_eq!(s["inode"], 0);
        assert_eq!(s["local"], format!("127.0.0.1:{port}"));
        // Each one exactly as ss sees it: same peer, same queue, same memory.
        let peer: SocketAddr = s["peer"].as_str().unwrap().parse().unwrap();
        let twin = ss
            .iter()
            .find(|x| x.peer == peer)
            .expect("ss lists the same peer");
        assert_eq!(s["send_q"].as_u64(), Some(twin.send_q));
        assert_eq!(s["recv_q"].as_u64(), Some(twin.recv_q));
        assert_eq!(mem_of(s), twin.mem, "memory of {peer}");
    }
    let send_q: u64 = socks.iter().map(|s| s["send_q"].as_u64().unwrap()).sum();
    let mem: u64 = socks.iter().map(|s| mem_of(s)).sum();
    assert_eq!(send_q, o.send_q, "fdclose's Send-Q total vs the fixture's");
    assert_eq!(send_q, ss.iter().map(|s| s.send_q).sum::<u64>());
    let summary = of_type(&lines, "summary");
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0]["send_q"].as_u64(), Some(send_q));
    assert_eq!(summary[0]["sockets"].as_u64(), Some(o.count as u64));
    // What the orphans hold, as the audit reports it: count, queues and memory.
    let orph = &summary[0]["orphans"];
    assert_eq!(orph["sockets"].as_u64(), Some(o.count as u64));
    assert_eq!(orph["send_q"].as_u64(), Some(send_q));
    assert_eq!(orph["mem"].as_u64(), Some(mem));
    assert_eq!(
        orph["by_state"]["fin-wait-1"]["send_q"].as_u64(),
        Some(send_q)
    );
    assert_eq!(orph["by_peer"]["127.0.0.1"]["mem"].as_u64(), Some(mem));

    // Destroy them all.
    let jarg = jpath.to_str().unwrap();
    let (code, lines, err) = fdclose_json(
        &[
            &sel[..],
            &["--action", "destroy", "--yes", "--journal", jarg],
        ]
        .concat(),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let results = of_type(&lines, "result");
    assert_eq!(results.len(), o.count, "{lines:?}");
    for r in &results {
        assert_eq!(r["outcome"], "done", "{r}");
        assert_eq!(r["verified"], true, "{r}");
        assert!(
            r["note"].as_str().unwrap().contains("released send-q"),
            "{r}"
        );
    }
    assert!(
        ss_finwait(netns, o.port).is_empty(),
        "orphans left after destroy"
    );
    // Listing again finds nothing: exit 1, and nothing is held any more.
    let (code, lines, _) = fdclose_json(&[&sel[..], &["--dry-run"]].concat(), &[]);
    assert_eq!(code, 1);
    assert!(of_type(&lines, "socket").is_empty());

    // The journal: a before and an after per socket, fsynced lines with the exact identity.
    let text = std::fs::read_to_string(&jpath).unwrap();
    let entries: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 2 * o.count, "{text}");
    let ns_ino = match netns {
        Some(ns) => std::fs::metadata(format!("/run/netns/{ns}")).unwrap(),
        None => std::fs::metadata("/proc/self/ns/net").unwrap(),
    };
    use std::os::unix::fs::MetadataExt;
    for pair in entries.chunks(2) {
        let (b, a) = (&pair[0], &pair[1]);
        assert_eq!(b["type"], "before");
        assert_eq!(a["type"], "after");
        for e in [b, a] {
            assert_eq!(e["action"], "destroy");
            assert_eq!(e["via"], "sock_diag");
            assert_eq!(e["pid"], 0);
            assert_eq!(e["netns"].as_u64(), Some(ns_ino.ino()));
            assert!(e["cookie"].as_u64().is_some());
            assert_eq!(e["local"], format!("127.0.0.1:{port}"));
        }
        assert_eq!(a["verified"], true);
        assert_eq!(a["cookie"], b["cookie"]);
        assert_eq!(a["outcome"]["outcome"], "done");
    }
    (send_q, mem)
}

#[test]
fn cli_lists_and_destroys_twenty_finwait1_orphans() {
    let o = orphans(None);
    let (send_q, mem) = list_and_destroy(&o, None);
    eprintln!(
        "MEASURED: {} orphans, send-q {send_q} bytes, socket memory {mem} bytes before; 0 after",
        o.count
    );
}

#[test]
fn cli_destroys_orphans_inside_a_test_netns() {
    let ns = Netns::new("cli");
    let o = orphans(Some(&ns.0));
    // Not visible from our namespace without --netns.
    let port = o.port.to_string();
    let (code, _, _) = fdclose_json(
        &[
            "--orphans",
            "--state",
            "fin-wait-1",
            "--local-port",
            &port,
            "--dry-run",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 1, "orphans of another namespace listed from ours");
    // --netns by PID (the fixture lives in the namespace) sees them.
    let pid = o.fx.pid().to_string();
    let (code, lines, err) = fdclose_json(
        &[
            "--orphans",
            "--netns",
            &pid,
            "--state",
            "fin-wait-1",
            "--local-port",
            &port,
            "--dry-run",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(of_type(&lines, "socket").len(), 20);
    list_and_destroy(&o, Some(&ns.0));
    drop(o);
    drop(ns);
}

#[test]
fn cli_destroy_without_cap_net_admin_fails_per_socket_and_touches_nothing() {
    let o = orphans_n(None, 3);
    let port = o.port.to_string();
    // Root without CAP_NET_ADMIN: setpriv drops it from the bounding set before exec.
    let out = Command::new("setpriv")
        .args(["--bounding-set", "-net_admin"])
        .arg(fdclose_bin())
        .args([
            "--orphans",
            "--state",
            "fin-wait-1",
            "--local-port",
            &port,
            "--action",
            "destroy",
            "--yes",
            "--json",
            "--journal",
        ])
        .arg(tempfile::tempdir().unwrap().path().join("j.jsonl"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "result")
        .collect();
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    // Every socket was tried and failed on its own, with the capability sentence.
    assert_eq!(results.len(), 3, "{stdout}");
    for r in &results {
        assert_eq!(r["outcome"], "failed", "{r}");
        assert_eq!(r["errno"], libc::EPERM, "{r}");
        assert!(
            r["reason"].as_str().unwrap().contains("CAP_NET_ADMIN"),
            "{r}"
        );
    }
    assert_eq!(ss_finwait(None, o.port).len(), 3, "an orphan went away");
}

/// The CLOSE-WAIT line server of the pidfd tests: (fixture, port).
fn closewait_server() -> (Fixture, u16) {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let bin = BIN.get_or_init(|| build_c_fixture("pidfd_closewait", &[]));
    let mut fx = Fixture::spawn(&mut Command::new(bin));
    let ready = fx.expect_line("READY");
    let port = field(&ready, "port").parse().unwrap();
    (fx, port)
}

fn ping(port: u16) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    s.write_all(b"ping\n").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    line
}

#[test]
fn cli_destroy_of_owned_sockets_says_the_fd_stays_open() {
    let (mut fx, port) = closewait_server();
    let pid = fx.pid();
    for _ in 0..2 {
        assert!(ping(port).starts_with("pong"));
    }
    let fds: Vec<i32> = (0..2)
        .map(|_| field(&fx.expect_line("CLOSEWAIT"), "fd").parse().unwrap())
        .collect();
    let before = fd_table(pid);
    let pid_s = pid.to_string();
    let (code, lines, err) = fdclose_json(
        &[
            "--pid",
            &pid_s,
            "--state",
            "close-wait",
            "--action",
            "destroy",
            "--yes",
            "--json",
            "--journal",
            tempfile::tempdir()
                .unwrap()
                .path()
                .join("j")
                .to_str()
                .unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let results = of_type(&lines, "result");
    assert_eq!(results.len(), 2, "{lines:?}");
    for r in &results {
        assert_eq!(r["outcome"], "done", "{r}");
        assert_eq!(r["verified"], true, "{r}");
        let note = r["note"].as_str().unwrap();
        assert!(
            note.contains("stays open") && note.contains("--action close"),
            "{note}"
        );
    }
    // The fds are still there, on the same (now dead) sockets; no table lists those any more.
    let after = fd_table(pid);
    for fd in &fds {
        assert_eq!(after.get(fd), before.get(fd));
    }
    let (code, lines, _) = fdclose_json(
        &[
            "--pid",
            &pid_s,
            "--state",
            "close-wait",
            "--dry-run",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 1, "{lines:?}");
    // And the server lives on.
    assert!(ping(port).starts_with("pong"));
}

#[test]
fn act_destroy_batch_goes_on_past_a_failing_step_and_journals_each() {
    let o = orphans_n(None, 2);
    let ss = ss_finwait(None, o.port);
    let mut no_id = orphan_step(&ss[0]);
    no_id.socket.as_mut().unwrap().diag = None;
    no_id.socket.as_mut().unwrap().peer = Some("127.0.0.1:1".parse().unwrap());
    // Plan order is (pid, fd, inode): all equal here, so the given order stays.
    let plan = fdclose::plan::Plan::new(
        fdclose::plan::Action::Destroy,
        vec![orphan_step(&ss[0]), no_id, orphan_step(&ss[1])],
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let mut j = fdclose::journal::Journal::open(Some(&dir.path().join("j.jsonl"))).unwrap();
    let r = fdclose::act::execute(&plan, &fdclose::act::ActOptions::default(), &mut j);
    let outcomes: Vec<&Outcome> = r.iter().map(|x| &x.outcome).collect();
    assert!(
        matches!(outcomes[0], Outcome::Done { verified: true, .. }),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], Outcome::Failed { .. }),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[2], Outcome::Done { verified: true, .. }),
        "{outcomes:?}"
    );
    assert!(ss_finwait(None, o.port).is_empty());
    // Two journaled steps (before + after each); the refused one never reached the kernel.
    let text = std::fs::read_to_string(dir.path().join("j.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
}
