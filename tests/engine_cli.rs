//! End to end through the `fdclose` binary: the operator's command on a live leaking process.

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

fn journal_path(tag: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("engine-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{tag}-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// `fdclose --pid P --state close-wait --yes` closes exactly the CLOSE_WAIT fds; a second run finds
/// nothing (exit 1); the process keeps answering.
#[test]
fn cli_closes_close_wait_fds_of_live_process() {
    let mut fx = spawn_interactive(
        Command::new(build_fixture("rt_leaker", false)).args(["-n", "40", "-t", "8"]),
    );
    let leaked: Vec<i32> = fx
        .expect_line_within("LEAKED", LINE_LIMIT)
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    fx.expect_line_within("READY", LINE_LIMIT);
    let pid = fx.pid();
    let before = fd_table(pid);
    let journal = journal_path("close");

    let dry = fdclose()
        .args([
            "--pid",
            &pid.to_string(),
            "--state",
            "close-wait",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert_eq!(
        dry.status.code(),
        Some(0),
        "dry run: {}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert_eq!(fd_table(pid), before, "--dry-run touched nothing");

    let out = fdclose()
        .args([
            "--pid",
            &pid.to_string(),
            "--state",
            "close-wait",
            "--yes",
            "--journal",
        ])
        .arg(&journal)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "fdclose: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let after = fd_table(pid);
    for fd in &leaked {
        assert!(!after.contains_key(fd), "CLOSE_WAIT fd {fd} closed");
    }
    for (fd, link) in &before {
        if !leaked.contains(fd) {
            assert_eq!(after.get(fd), Some(link), "fd {fd} untouched");
        }
    }
    assert_eq!(fx.ask("ping", "PONG"), "");
    let c = fx.ask("counts", "COUNTS");
    assert!(
        c.starts_with("bad=0 "),
        "worker threads saw untouched calls: {c}"
    );
    assert!(
        std::fs::metadata(&journal)
            .map(|m| m.len() > 0)
            .unwrap_or(false),
        "journal written"
    );

    let again = fdclose()
        .args([
            "--pid",
            &pid.to_string(),
            "--state",
            "close-wait",
            "--yes",
            "--journal",
        ])
        .arg(&journal)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "nothing left to match");
}

/// Against the Python server: the CLOSE_WAIT pile-up goes, the server keeps serving.
#[test]
fn cli_relieves_python_server() {
    let script = repo_root().join("integration/fixtures/leaky_server.py");
    let mut fx = Fixture::spawn(Command::new("python3").arg("-u").arg(script));
    let pid = fx.pid();
    let port: u16 = fx.expect_line_within("PORT", LINE_LIMIT).parse().unwrap();
    let ping = |tag: &str| {
        use std::io::{BufRead, BufReader, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        writeln!(s, "PING {tag}").unwrap();
        let mut l = String::new();
        BufReader::new(&s).read_line(&mut l).unwrap();
        assert_eq!(l.trim_end(), format!("PONG {tag}"));
    };
    for i in 0..15 {
        ping(&format!("x{i}"));
    }
    wait_for("15 CLOSE_WAIT fds", Duration::from_secs(20), || {
        fds_in_state(pid, "08").len() >= 15
    });
    let out = fdclose()
        .args([
            "--pid",
            &pid.to_string(),
            "--state",
            "close-wait",
            "--yes",
            "--journal",
        ])
        .arg(journal_path("python"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "fdclose: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fds_in_state(pid, "08").is_empty(), "no CLOSE_WAIT fd left");
    ping("after");
}
