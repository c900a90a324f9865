//! `cargo run --release --example demo`: a leaking server, its audit, and the leak relieved live.
//!
//! 1. Starts a small Python server on 127.0.0.1 (port 0) that accepts connections and never closes
//!    them — the classic CLOSE-WAIT leak.
//! 2. Connects clients from 127.0.0.2, 127.0.0.3 and 127.0.0.4 that hang up (CLOSE-WAIT pile-up
//!    in the server), and a few that stay connected.
//! 3. Runs the real fdclose binary: `--summary --dry-run`, then `--state close-wait --dry-run`.
//! 4. Relieves the leak with `--state close-wait --yes` and shows the counts before and after, and
//!    that the server still accepts new connections.
//!
//! The server is killed when the demo ends (and exits by itself if the demo dies: it watches its
//! stdin). Only loopback addresses are used.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const LEAKS_PER_ADDR: usize = 10;
const SOURCES: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
    Ipv4Addr::new(127, 0, 0, 4),
];
const KEPT: usize = 3;

const SERVER: &str = r#"
import os, socket, sys, threading
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(256)
held = []
def watch_parent():
    sys.stdin.read()      # EOF: the demo is gone
    os._exit(0)
threading.Thread(target=watch_parent, daemon=True).start()
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    held.append(c)        # the bug: never closed, even after the client hangs up
"#;

/// Clients: N per source address connect and hang up at once, K more from 127.0.0.5 stay
/// connected until the demo ends. Prints "done" when all are set up.
const CLIENTS: &str = r#"
import socket, sys
port, n, kept, sources = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
def connect(src):
    c = socket.socket()
    c.bind((src, 0))
    c.connect(("127.0.0.1", port))
    return c
for src in sources:
    for _ in range(n):
        connect(src).close()
held = [connect("127.0.0.5") for _ in range(kept)]
print("done", flush=True)
sys.stdin.read()
"#;

/// A child process, killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("demo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let fdclose = fdclose_binary()?;

    banner("1. A server that leaks: it never closes a connection, even after the client hangs up");
    let mut child = Command::new("python3")
        .args(["-c", SERVER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start python3: {e}"))?;
    let out = child.stdout.take().unwrap();
    let server = Reaped(child);
    let pid = server.0.id() as i32;
    let mut port = String::new();
    BufReader::new(out)
        .read_line(&mut port)
        .map_err(|e| e.to_string())?;
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|_| format!("server printed {port:?}, not a port"))?;
    println!("server pid {pid} listening on 127.0.0.1:{port}");

    let mut clients = Reaped(
        Command::new("python3")
            .args([
                "-c",
                CLIENTS,
                &port.to_string(),
                &LEAKS_PER_ADDR.to_string(),
                &KEPT.to_string(),
            ])
            .args(SOURCES.map(|a| a.to_string()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start python3: {e}"))?,
    );
    let mut done = String::new();
    BufReader::new(clients.0.stdout.take().unwrap())
        .read_line(&mut done)
        .map_err(|e| e.to_string())?;
    if done.trim() != "done" {
        return Err(format!("the client process failed: {done:?}"));
    }
    let leaks = SOURCES.len() * LEAKS_PER_ADDR;
    wait_until(&format!("{leaks} CLOSE-WAIT sockets in the server"), || {
        count(&fdclose, pid, "close-wait") == leaks
    })?;
    println!(
        "{leaks} clients from {} hung up; {KEPT} more from 127.0.0.5 are still connected",
        SOURCES.map(|a| a.to_string()).join(", ")
    );
    let fds_before = fd_count(pid);

    banner("2. Audit: what is the server holding? (changes nothing)");
    show(
        &fdclose,
        &["--pid", &pid.to_string(), "--summary", "--dry-run"],
    )?;
    banner("   ...and exactly which fds a close would touch");
    show(
        &fdclose,
        &[
            "--pid",
            &pid.to_string(),
            "--state",
            "close-wait",
            "--dry-run",
        ],
    )?;

    banner("3. Relieve the leak in the running server: close its CLOSE-WAIT fds");
    let journal = std::env::temp_dir().join(format!("fdclose-demo-{}.jsonl", std::process::id()));
    let st = show(
        &fdclose,
        &[
            "--pid",
            &pid.to_string(),
            "--state",
            "close-wait",
            "--yes",
            "--journal",
            &journal.to_string_lossy(),
        ],
    )?;
    let cw_after = count(&fdclose, pid, "close-wait");
    let est_after = count(&fdclose, pid, "established");
    let fds_after = fd_count(pid);

    banner("4. Before and after");
    println!("                  before  after");
    println!("CLOSE-WAIT        {leaks:>6}  {cw_after:>5}");
    println!("ESTABLISHED       {KEPT:>6}  {est_after:>5}");
    println!("open fds          {fds_before:>6}  {fds_after:>5}");
    if !st.success() {
        println!(
            "\nfdclose could not act (exit {}, reasons above), so the server was left exactly as \
             it was: acting on a live process is not built in this build of fdclose yet. The audit \
             above is what works today.",
            st.code().unwrap_or(-1)
        );
        return Ok(());
    }
    // The server must still work: a new client is accepted and stays connected.
    let _fresh = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    wait_until("the server to accept a new connection", || {
        count(&fdclose, pid, "established") == est_after + 1
    })?;
    println!(
        "\nThe server kept running and still accepts connections ({} established now). \
         Journal of every change: {}",
        est_after + 1,
        journal.display()
    );
    Ok(())
}

fn banner(s: &str) {
    println!("\n\x1b[1m== {s}\x1b[0m");
}

/// Run fdclose with its output going straight to ours, echoing the command first.
fn show(fdclose: &Path, args: &[&str]) -> Result<ExitStatus, String> {
    println!("$ fdclose {}", args.join(" "));
    Command::new(fdclose)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", fdclose.display()))
}

/// Sockets of `pid` in `state`, from fdclose's own JSON summary.
fn count(fdclose: &Path, pid: i32, state: &str) -> usize {
    let out = Command::new(fdclose)
        .args([
            "--pid",
            &pid.to_string(),
            "--state",
            state,
            "--dry-run",
            "--json",
        ])
        .output();
    let Ok(out) = out else { return 0 };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .and_then(|v| v["sockets"].as_u64())
        .unwrap_or(0) as usize
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(20);
    while !cond() {
        if Instant::now() > end {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The fdclose binary next to this example (target/PROFILE/fdclose), built first if missing.
fn fdclose_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/PROFILE/examples/demo → target/PROFILE/fdclose
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find the target directory")?;
    let bin = profile_dir.join("fdclose");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--bin", "fdclose"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        cmd.arg("--release");
    }
    // Always ask cargo: it rebuilds only when the sources changed since the last build.
    let st = cmd
        .status()
        .map_err(|e| format!("cannot run cargo to build fdclose: {e}"))?;
    if !st.success() || !bin.exists() {
        return Err(format!("could not build {}", bin.display()));
    }
    Ok(bin)
}
