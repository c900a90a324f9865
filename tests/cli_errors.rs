//! Bad input and refusals: exit 2, exactly one sentence on stderr, and the target untouched.

mod support;

use std::process::{Command, Output};
use support::{fd_table, fdclose, repo_root, Fixture};

/// The selector fixture (8 CLOSE-WAIT sockets, 2 listeners, ...), once it printed READY.
fn target() -> Fixture {
    let script = repo_root().join("integration/fixtures/cli_server.py");
    let mut fx = Fixture::spawn(Command::new("python3").arg(script));
    fx.expect_line("READY ");
    fx
}

fn run(args: &[&str]) -> Output {
    fdclose().args(args).output().expect("run fdclose")
}

/// Exit 2 and one line on stderr that starts `fdclose: error:` and contains every `needles`.
fn assert_one_sentence_error(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "want one line on stderr, got: {err}");
    assert!(lines[0].starts_with("fdclose: error: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "'{n}' missing from: {err}");
    }
}

fn count_state(pid: i32, state: &str) -> usize {
    let out = run(&[
        "--pid",
        &pid.to_string(),
        "--state",
        state,
        "--dry-run",
        "--json",
    ]);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"type\":\"socket\""))
        .count()
}

#[test]
fn unknown_pid_is_an_error() {
    // pid_max is at most 2^22, so this pid cannot exist.
    let out = run(&["--pid", "2000000000", "--state", "close-wait", "--dry-run"]);
    assert_one_sentence_error(&out, &["no process with pid 2000000000", "ps -p"]);
    assert!(out.stdout.is_empty());
    let out = run(&["--comm", "no-such-comm-xyz", "--dry-run"]);
    assert_one_sentence_error(&out, &["no process is named 'no-such-comm-xyz'"]);
}

#[test]
fn bad_state_lists_the_valid_names() {
    let fx = target();
    let out = run(&[
        "--pid",
        &fx.pid().to_string(),
        "--state",
        "CLOSE_WAIT",
        "--dry-run",
    ]);
    assert_one_sentence_error(
        &out,
        &[
            "unknown state 'CLOSE_WAIT'",
            "established",
            "close-wait",
            "fin-wait-2",
            "listening",
            "closed",
            "connected",
            "synchronized",
            "all",
        ],
    );
}

#[test]
fn malformed_selectors_say_what_to_type() {
    let fx = target();
    let pid = fx.pid().to_string();
    for (args, needle) in [
        (
            vec!["--peer", "10.0.0.300"],
            "--peer '10.0.0.300' is not an address",
        ),
        (vec!["--peer", "[::1]8080"], "type e.g."),
        (
            vec!["--local", "db.example.com"],
            "host names are not resolved",
        ),
        (
            vec!["--peer-port", "90-80"],
            "--peer-port '90-80' is not a port",
        ),
        (vec!["--local-port", "http"], "range like 8000-8080"),
        (vec!["--proto", "sctp"], "use tcp, udp or unix"),
        (vec!["--idle", "soon"], "type e.g. 90s"),
        (
            vec!["--proto", "unix", "--peer", "127.0.0.1"],
            "unix sockets have no IP",
        ),
        (vec!["--json", "--summary"], "drop --summary"),
    ] {
        let mut a = vec!["--pid", pid.as_str(), "--dry-run"];
        a.extend(args.iter().copied());
        assert_one_sentence_error(&run(&a), &[needle]);
    }
}

#[test]
fn acting_without_a_terminal_or_yes_is_refused_and_touches_nothing() {
    let fx = target();
    let pid = fx.pid();
    let before = fd_table(pid);
    let cw = count_state(pid, "close-wait");
    assert_eq!(cw, 8);

    // Command::output() gives the child no terminal on stdin.
    let out = run(&["--pid", &pid.to_string(), "--state", "close-wait"]);
    assert_one_sentence_error(&out, &["not a terminal", "--yes"]);
    // The plan is still shown, so the operator sees what --yes would do.
    let plan = String::from_utf8(out.stdout).unwrap();
    assert!(
        plan.starts_with("Plan: close 8 sockets in 1 process"),
        "{plan}"
    );

    assert_eq!(fd_table(pid), before);
    assert_eq!(count_state(pid, "close-wait"), 8);
}

#[test]
fn acting_on_everything_or_on_listeners_is_refused() {
    let fx = target();
    let pid = fx.pid();
    let before = fd_table(pid);
    let p = pid.to_string();

    let out = run(&["--pid", &p, "--yes"]);
    assert_one_sentence_error(&out, &["will not act on every socket", "--state"]);
    assert!(
        out.stdout.is_empty(),
        "no plan is shown for a refused selection"
    );
    let out = run(&["--pid", &p, "--state", "all", "--yes"]);
    assert_one_sentence_error(&out, &["will not act on every socket"]);

    // Port selectors that happen to catch a listener: an outage unless listening is named.
    let out = run(&["--pid", &p, "--local-port", "1-65535", "--yes"]);
    assert_one_sentence_error(
        &out,
        &["2 selected sockets are listening", "--state listening"],
    );
    assert_eq!(fd_table(pid), before);
    assert_eq!(count_state(pid, "listening"), 2);
}

#[test]
fn nothing_matched_exits_1() {
    let fx = target();
    let p = fx.pid().to_string();
    let out = run(&["--pid", &p, "--peer", "127.0.0.99", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing matched in 1 process"));
    // Acting on nothing is not an error either, and needs no confirmation.
    let out = run(&["--pid", &p, "--state", "fin-wait-1"]);
    assert_eq!(out.status.code(), Some(1));
}

/// fdclose with a pseudo-terminal as stdin, `answer` typed in; returns (exit code, stderr).
fn run_on_tty(args: &[&str], answer: &str) -> (i32, String) {
    use std::io::Write;
    use std::process::Stdio;
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut child = fdclose()
        .args(args)
        .stdin(Stdio::from(pty.slave))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fdclose");
    // The line discipline buffers the answer until fdclose reads it after its question.
    let mut master = std::fs::File::from(pty.master);
    master.write_all(answer.as_bytes()).unwrap();
    let mut status = None;
    support::wait_for(
        "fdclose to exit",
        std::time::Duration::from_secs(30),
        || {
            status = child.try_wait().unwrap();
            status.is_some()
        },
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.unwrap().code().unwrap(), err)
}

#[test]
fn declining_on_a_terminal_touches_nothing() {
    let fx = target();
    let pid = fx.pid();
    let before = fd_table(pid);
    let p = pid.to_string();
    let (code, err) = run_on_tty(
        &["--pid", &p, "--state", "close-wait", "--peer", "127.0.0.2"],
        "n\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Close 2 fds in 1 process? [y/N] "), "{err}");
    assert!(err.contains("nothing was touched"), "{err}");
    // Anything but y/yes is a no.
    let (code, _) = run_on_tty(&["--pid", &p, "--state", "close-wait"], "\n");
    assert_eq!(code, 1);
    assert_eq!(fd_table(pid), before);
    assert_eq!(count_state(pid, "close-wait"), 8);
}

/// Searching every process as an unprivileged user: the processes it may not read are counted and
/// reported once at the end, and do not stop it from reporting the ones it can.
#[test]
fn unreadable_processes_are_reported_once_and_are_not_fatal() {
    use std::os::unix::fs::PermissionsExt;
    // Copies nobody can reach whatever the permissions on the way to the checkout.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("fdclose");
    std::fs::copy(support::fdclose_bin(), &bin).unwrap();
    let script = dir.path().join("cli_server.py");
    std::fs::copy(
        repo_root().join("integration/fixtures/cli_server.py"),
        &script,
    )
    .unwrap();
    for f in [&bin, &script] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let as_nobody = || {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        c
    };
    // /usr/bin/python3: the root user's python3 may be a shim nobody cannot run.
    let mut fx = Fixture::spawn(as_nobody().arg("/usr/bin/python3").arg(&script));
    fx.expect_line("READY ");

    let out = as_nobody()
        .arg(&bin)
        .args(["--state", "close-wait", "--dry-run", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let objs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mine = objs
        .iter()
        .filter(|o| o["type"] == "socket" && o["pid"].as_i64() == Some(fx.pid() as i64))
        .count();
    assert_eq!(mine, 8, "{objs:?}");
    let summary = objs.last().unwrap();
    assert_eq!(summary["type"], "summary");
    let unreadable = summary["unreadable"].as_u64().unwrap();
    // At least init (pid 1, root) is out of nobody's reach.
    assert!(unreadable >= 1, "{summary}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "fdclose: {unreadable} processes could not be read and were skipped (pid "
        )),
        "{err}"
    );
}

/// The other answer to the same question (here next to its pty helper): `y` acts.
#[test]
fn answering_yes_on_a_terminal_acts() {
    let fx = target();
    let pid = fx.pid();
    let before = fd_table(pid);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j.jsonl");
    let (code, err) = run_on_tty(
        &[
            "--pid",
            &pid.to_string(),
            "--state",
            "close-wait",
            "--peer",
            "127.0.0.2",
            "--journal",
            journal.to_str().unwrap(),
        ],
        "y\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Close 2 fds in 1 process? [y/N] "), "{err}");
    assert_eq!(fd_table(pid).len(), before.len() - 2);
    assert_eq!(count_state(pid, "close-wait"), 6);
}
