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
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        let st = Command::new("gcc")
            .args(["-O1", "-g", "-Wall", "-pthread", "-o"])
            .arg(&tmp)
            .arg(&src)
            .args(extra)
            .status()
            .expect("run gcc");
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
