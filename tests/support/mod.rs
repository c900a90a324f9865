//! Shared helpers for the live tests: fixture builds, child processes that are always reaped, and
//! waiting on conditions with deadlines (never fixed sleeps).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the fdclose binary cargo built for these tests.
pub fn fdclose_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fdclose"))
}

/// A `Command` for fdclose with a journal under the test temp dir (never the operator's default).
pub fn fdclose() -> Command {
    let mut c = Command::new(fdclose_bin());
    c.env_remove("CI_FDCLOSE_UNUSED");
    c
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compile integration/fixtures/NAME.c (with `extra` gcc flags, e.g. ["-m32"]) once per flag set
/// into the cargo test temp dir and return the executable's path.
pub fn build_c_fixture(name: &str, extra: &[&str]) -> PathBuf {
    let src = repo_root()
        .join("integration/fixtures")
        .join(format!("{name}.c"));
    let tag = extra.join("").replace(['-', '='], "");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}{tag}"));
    let fresh = match (std::fs::metadata(&src), std::fs::metadata(&out)) {
        (Ok(s), Ok(o)) => o.modified().unwrap() >= s.modified().unwrap(),
        _ => false,
    };
    if !fresh {
        // Build to a unique name and rename, so parallel tests never run a half-written file.
        // Unique per thread too: the tests of one binary build the same fixture in parallel.
        let tmp = out.with_extension(format!(
            "tmp{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut gcc = Command::new("gcc");
        gcc.args(["-O1", "-g", "-Wall", "-pthread", "-o"])
            .arg(&tmp)
            .arg(&src)
            .args(extra);
        // Installing Debian's cross compilers removes gcc-multilib and with it the
        // /usr/include/asm link that -m32 builds rely on: name the biarch headers explicitly.
        if extra.contains(&"-m32") && !Path::new("/usr/include/asm").exists() {
            gcc.args(["-isystem", "/usr/include/x86_64-linux-gnu"]);
        }
        let st = gcc.status().expect("run gcc");
        assert!(st.success(), "gcc failed for {}", src.display());
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

/// A child process killed and reaped when dropped, whatever the test's outcome.
pub struct Fixture {
    pub child: Child,
    lines: Option<BufReader<ChildStdout>>,
}

impl Fixture {
    /// Spawn with stdout piped so the test can read the fixture's "READY ..." lines.
    pub fn spawn(cmd: &mut Command) -> Fixture {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn fixture");
        let lines = child.stdout.take().map(BufReader::new);
        Fixture { child, lines }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Next line the fixture prints (blocking; fixtures print promptly or the test's timeout
    /// fires). Panics at EOF.
    pub fn read_line(&mut self) -> String {
        let mut s = String::new();
        let n = self.lines.as_mut().unwrap().read_line(&mut s).unwrap();
        assert!(n > 0, "fixture {} closed its stdout", self.pid());
        s.trim_end().to_string()
    }

    /// Read lines until one starts with `prefix`; returns the rest of that line.
    pub fn expect_line(&mut self, prefix: &str) -> String {
        loop {
            let l = self.read_line();
            if let Some(rest) = l.strip_prefix(prefix) {
                return rest.trim().to_string();
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `cond` until it holds or `limit` passes; panics with `what` on timeout.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The target's fd table: fd number → link text.
pub fn fd_table(pid: i32) -> BTreeMap<i32, String> {
    let mut t = BTreeMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let e = e.unwrap();
        if let (Ok(fd), Ok(l)) = (
            e.file_name().to_string_lossy().parse::<i32>(),
            std::fs::read_link(e.path()),
        ) {
            t.insert(fd, l.to_string_lossy().into_owned());
        }
    }
    t
}

/// Field of /proc/PID/status (e.g. "TracerPid", "State").
pub fn status_field(pid: i32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        l.strip_prefix(&format!("{key}:"))
            .map(|v| v.trim().to_string())
    })
}

// ---- Engine live-test helpers (fixtures helper) ----

/// Spawn with stdin and stdout piped, for fixtures that take commands on stdin
/// (integration/fixtures/rt_leaker.c). Killed and reaped on drop like `spawn`.
pub fn spawn_interactive(cmd: &mut Command) -> Fixture {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn fixture");
    let lines = child.stdout.take().map(BufReader::new);
    Fixture { child, lines }
}

impl Fixture {
    /// Send one command line to an interactive fixture.
    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self
            .child
            .stdin
            .as_mut()
            .expect("fixture spawned with spawn_interactive");
        writeln!(stdin, "{line}").expect("write to fixture stdin");
        stdin.flush().unwrap();
    }

    /// Send a command and return the rest of the first reply line that starts with `prefix`.
    pub fn ask(&mut self, line: &str, prefix: &str) -> String {
        self.send(line);
        self.expect_line_within(prefix, LINE_LIMIT)
    }
}

/// Build integration/fixtures/NAME.c natively or as an i386 program (`-m32`).
pub fn build_fixture(name: &str, m32: bool) -> PathBuf {
    // One build at a time per test binary: a dozen parallel tests compiling the same fixture at
    // once starve the live tests already running (their timing windows are a few seconds).
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    build_c_fixture(name, if m32 { &["-m32"] } else { &[] })
}

/// Inode of the object behind /proc/PID/fd/FD (the socket inode for sockets), if the fd is open.
pub fn fd_inode(pid: i32, fd: i32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
        .ok()
        .map(|m| m.ino())
}

/// TCP socket inodes in `state` (kernel hex code, e.g. "08" CLOSE_WAIT, "01" ESTABLISHED) as seen
/// in PID's network namespace (/proc/PID/net/tcp and tcp6).
pub fn tcp_inodes_in_state(pid: i32, state: &str) -> std::collections::BTreeSet<u64> {
    let mut set = std::collections::BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == state {
                if let Ok(ino) = f[9].parse::<u64>() {
                    if ino != 0 {
                        set.insert(ino);
                    }
                }
            }
        }
    }
    set
}

/// PID's fds holding a TCP socket in `state` (hex code as in /proc/net/tcp), as (fd, inode).
pub fn fds_in_state(pid: i32, state: &str) -> Vec<(i32, u64)> {
    let inodes = tcp_inodes_in_state(pid, state);
    fd_table(pid)
        .into_iter()
        .filter_map(|(fd, link)| {
            let ino: u64 = link
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()?;
            inodes.contains(&ino).then_some((fd, ino))
        })
        .collect()
}

/// The syscall number a thread is blocked in (first field of /proc/PID/task/TID/syscall), or None
/// while it runs in user space ("running") or is gone.
pub fn blocked_syscall(pid: i32, tid: i32) -> Option<i64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Single-letter process state from /proc/PID/stat (R, S, T, t, Z...).
pub fn proc_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

impl Fixture {
    /// Like `expect_line`, but panics when no such line arrives within `limit` (a fixture whose
    /// call never returns fails the test instead of hanging it).
    pub fn expect_line_within(&mut self, prefix: &str, limit: Duration) -> String {
        use std::os::fd::AsRawFd;
        let end = Instant::now() + limit;
        let reader = self.lines.as_mut().unwrap();
        let mut line = Vec::new();
        loop {
            // Take what is buffered up to a newline; block (in poll, with the deadline) only
            // when the buffer is empty.
            if reader.buffer().is_empty() {
                let left = end.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "timed out after {limit:?} waiting for a {prefix:?} line from fixture {}",
                    self.child.id()
                );
                let mut pfd = libc::pollfd {
                    fd: reader.get_ref().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, count 1; the fd is the child's stdout pipe we own.
                let n = unsafe {
                    libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32)
                };
                if n <= 0 {
                    continue;
                }
            }
            let buf = reader.fill_buf().unwrap();
            assert!(
                !buf.is_empty(),
                "fixture {} closed its stdout",
                self.child.id()
            );
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&buf[..i]);
                    reader.consume(i + 1);
                    let l = String::from_utf8_lossy(&line).trim_end().to_string();
                    line.clear();
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                }
                None => {
                    let n = buf.len();
                    line.extend_from_slice(buf);
                    reader.consume(n);
                }
            }
        }
    }
}

/// How long the live tests wait for any one line from a fixture.
pub const LINE_LIMIT: Duration = Duration::from_secs(60);

/// Start integration/fixtures/rt_leaker.c (i386 build with `m32`) with `args`; returns it with its
/// leaked fds and their inodes, read once it says READY.
pub fn rt_leaker(m32: bool, args: &[&str]) -> (Fixture, Vec<(i32, u64)>) {
    let mut fx = spawn_interactive(Command::new(build_fixture("rt_leaker", m32)).args(args));
    let leaked = fx.expect_line_within("LEAKED", LINE_LIMIT);
    fx.expect_line_within("READY", LINE_LIMIT);
    let pid = fx.pid();
    let fds = leaked
        .split_whitespace()
        .map(|w| {
            let fd: i32 = w.parse().unwrap();
            (fd, fd_inode(pid, fd).expect("leaked fd open"))
        })
        .collect();
    (fx, fds)
}

/// Run fdclose with `args` and extra environment `env`; returns its exit code, its stdout's JSON
/// lines and its stderr.
pub fn fdclose_json(args: &[&str], env: &[(&str, &str)]) -> (i32, Vec<serde_json::Value>, String) {
    let mut c = fdclose();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run fdclose");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8(out.stderr).unwrap(),
    )
}
