//! Acting for real: the fdclose binary closes selected fds inside a live Python process, and
//! exactly those: every other fd of the target is unchanged and the process keeps running.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Command, Output};
use support::{fd_table, fdclose, repo_root, Fixture};

fn target() -> (Fixture, Value) {
    let script = repo_root().join("integration/fixtures/cli_server.py");
    let mut fx = Fixture::spawn(Command::new("python3").arg(script));
    let info: Value = serde_json::from_str(&fx.expect_line("READY ")).unwrap();
    (fx, info)
}

fn fds_where(info: &Value, f: impl Fn(&Value) -> bool) -> BTreeSet<i32> {
    info["fds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| f(e))
        .map(|e| e["fd"].as_i64().unwrap() as i32)
        .collect()
}

fn run(args: &[&str]) -> Output {
    fdclose().args(args).output().expect("run fdclose")
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn close_acts_on_exactly_the_selected_fds() {
    let (fx, info) = target();
    let pid = fx.pid();
    let before = fd_table(pid);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let chosen = fds_where(&info, |e| {
        e["role"] == "cw4" && e["peer"].as_str().unwrap().starts_with("127.0.0.3:")
    });
    assert_eq!(chosen.len(), 3);

    let out = run(&[
        "--pid",
        &pid.to_string(),
        "--state",
        "close-wait",
        "--peer",
        "127.0.0.3",
        "--yes",
        "--json",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {err}");
    let lines = json_lines(&out);
    let results: Vec<&Value> = lines.iter().filter(|o| o["type"] == "result").collect();
    let acted: BTreeSet<i32> = results
        .iter()
        .map(|o| {
            assert_eq!(o["outcome"], "done", "{o}");
            assert_eq!(o["action"], "close");
            o["fd"].as_i64().unwrap() as i32
        })
        .collect();
    assert_eq!(acted, chosen);
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "outcomes");
    assert_eq!(last["done"], 3);
    assert_eq!(last["failed"], 0);
    assert!(
        err.contains(&format!("journal: {}", journal.display())),
        "{err}"
    );
    assert!(
        std::fs::metadata(&journal).unwrap().len() > 0,
        "journal is empty"
    );

    // Exactly the chosen fds are gone; every other fd still points where it did.
    let after = fd_table(pid);
    let mut expect = before.clone();
    for fd in &chosen {
        expect.remove(fd);
    }
    assert_eq!(after, expect);
    // The process still runs and the other CLOSE-WAIT sockets are still there.
    let out = run(&[
        "--pid",
        &pid.to_string(),
        "--state",
        "close-wait",
        "--dry-run",
        "--json",
    ]);
    let left: BTreeSet<i32> = json_lines(&out)
        .iter()
        .filter(|o| o["type"] == "socket")
        .map(|o| o["fd"].as_i64().unwrap() as i32)
        .collect();
    let all_cw = fds_where(&info, |e| {
        ["cw4", "cw6m", "cw6"].contains(&e["role"].as_str().unwrap())
    });
    assert_eq!(left, all_cw.difference(&chosen).copied().collect());
}

#[test]
fn max_caps_the_plan_and_listeners_need_their_name() {
    let (fx, info) = target();
    let pid = fx.pid();
    let p = pid.to_string();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j.jsonl");
    let before = fd_table(pid);

    let out = run(&[
        "--pid",
        &p,
        "--state",
        "close-wait",
        "--max",
        "2",
        "--yes",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("6 more matched but are left out by --max."),
        "{text}"
    );
    assert!(
        text.contains("2 done, 0 gone, 0 changed, 0 failed"),
        "{text}"
    );
    assert_eq!(fd_table(pid).len(), before.len() - 2);

    // Naming listening explicitly is what allows acting on a listener.
    let l4 = fds_where(&info, |e| e["role"] == "listen4");
    let out = run(&[
        "--pid",
        &p,
        "--state",
        "listening",
        "--local-port",
        &info["v4port"].to_string(),
        "--yes",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let now = fd_table(pid);
    for fd in &l4 {
        assert!(!now.contains_key(fd), "listener fd {fd} still open");
    }
}

/// The state fdclose reports for one fd of `pid` (any state, TCP).
fn state_of(pid: i32, fd: i32) -> Option<String> {
    let out = run(&[
        "--pid",
        &pid.to_string(),
        "--fd",
        &fd.to_string(),
        "--dry-run",
        "--json",
    ]);
    json_lines(&out)
        .into_iter()
        .find(|o| o["type"] == "socket")
        .map(|o| o["state"].as_str().unwrap().to_string())
}

#[test]
fn shutdown_and_replace_end_the_connection_and_keep_the_fd_number() {
    let (fx, info) = target();
    let pid = fx.pid();
    let p = pid.to_string();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j.jsonl");
    let one = |role: &str| {
        *fds_where(&info, |e| e["role"] == role)
            .iter()
            .next()
            .unwrap()
    };
    let (srv, cli) = (one("est_srv"), one("est_cli"));
    let (srv6, cli6) = (one("est6_srv"), one("est6_cli"));
    assert_eq!(state_of(pid, cli).as_deref(), Some("established"));
    let before = fd_table(pid);

    // shutdown(SHUT_WR) on the server side: FIN to the client, which goes to CLOSE-WAIT; the
    // server's fd stays open and still holds the same socket.
    let out = run(&[
        "--pid",
        &p,
        "--fd",
        &srv.to_string(),
        "--action",
        "shutdown",
        "--how",
        "wr",
        "--yes",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fd_table(pid), before, "shutdown must keep every fd");
    assert_eq!(state_of(pid, cli).as_deref(), Some("close-wait"));
    assert_eq!(state_of(pid, srv).as_deref(), Some("fin-wait-2"));

    // replace: the fd number stays taken by a dead socket, the connection is released.
    let out = run(&[
        "--pid",
        &p,
        "--fd",
        &srv6.to_string(),
        "--action",
        "replace",
        "--yes",
        "--journal",
        journal.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = fd_table(pid);
    assert!(after.contains_key(&srv6), "replace must keep the fd number");
    assert_ne!(
        after[&srv6], before[&srv6],
        "fd {srv6} still holds the old socket"
    );
    assert_eq!(after.len(), before.len());
    assert_eq!(state_of(pid, cli6).as_deref(), Some("close-wait"));
}
