//! Live tests of the ptrace engine on a small C fixture (integration/fixtures/engine_basic.c):
//! close, shutdown and replace verified by their effect on the real process, changed-fd
//! detection, a group-stopped process staying stopped, the signal-mask fallback, and the same on
//! a 32-bit (-m32) build. Needs ptrace rights over our own children (root here).

mod support;

use fdclose::engine::{self, EngineOptions, Op, Surgery};
use fdclose::journal::Journal;
use fdclose::plan::{How, Outcome};
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;
use support::*;

struct Target {
    fx: Fixture,
    pid: i32,
    listen: i32,
    client: i32,
    accepted: i32,
    pipe_r: i32,
    pipe_w: i32,
    unix0: i32,
}

fn start(flags: &[&str]) -> Target {
    start_with(flags, &[])
}

fn start_with(flags: &[&str], args: &[&str]) -> Target {
    let exe = build_c_fixture("engine_basic", flags);
    let mut fx = Fixture::spawn(Command::new(exe).args(args));
    let ready = fx.expect_line("READY");
    let n: Vec<i32> = ready
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let pid = n[0];
    assert_eq!(pid, fx.pid());
    // Wait until both threads sleep in the kernel (main in nanosleep, the other in read).
    wait_for("fixture threads to block", Duration::from_secs(10), || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                let t: Vec<_> = d.flatten().collect();
                t.len() == 2
                    && t.iter().all(|e| {
                        std::fs::read_to_string(e.path().join("stat"))
                            .is_ok_and(|s| s.rsplit(')').next().unwrap().trim().starts_with('S'))
                    })
            })
            .unwrap_or(false)
    });
    Target {
        fx,
        pid,
        listen: n[1],
        client: n[2],
        accepted: n[3],
        pipe_r: n[4],
        pipe_w: n[5],
        unix0: n[6],
    }
}

/// st_ino of what `fd` holds, read through a live thread (/proc/PID/fd is empty once the leader
/// thread has exited).
fn ino(pid: i32, fd: i32) -> u64 {
    let live = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|t| std::fs::read_dir(t.join("fd")).is_ok_and(|mut d| d.next().is_some()))
        .unwrap();
    std::fs::metadata(live.join(format!("fd/{fd}")))
        .unwrap()
        .ino()
}

fn journal() -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(Some(&dir.path().join("journal.jsonl"))).unwrap();
    (dir, j)
}

/// Ask the fixture for its CHECK lines: fd → (F_GETFD or -errno, recv or -errno). Also fails
/// the test on any line the engine must never cause (SLEEP_ERR, EARLY, READ).
fn checks(t: &mut Target) -> std::collections::BTreeMap<i32, (i64, i64)> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(t.pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let mut m = std::collections::BTreeMap::new();
    loop {
        let l = t.fx.read_line();
        if l == "END" {
            return m;
        }
        let w: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(w[0], "CHECK", "unexpected fixture line: {l}");
        m.insert(
            w[1].parse().unwrap(),
            (w[2].parse().unwrap(), w[3].parse().unwrap()),
        );
    }
}

fn assert_untraced_and_running(pid: i32) {
    assert_eq!(status_field(pid, "TracerPid").as_deref(), Some("0"));
    let st = status_field(pid, "State").unwrap();
    assert!(
        !st.starts_with('t') && !st.starts_with('T'),
        "left stopped: {st}"
    );
}

fn done_verified(o: &Outcome) -> bool {
    matches!(o, Outcome::Done { verified: true, .. })
}

fn close_shutdown_replace(flags: &[&str]) {
    let mut t = start(flags);
    let (_d, mut j) = journal();
    let client_ino = ino(t.pid, t.client);
    let surg = vec![
        Surgery {
            fd: t.pipe_w,
            expect_ino: ino(t.pid, t.pipe_w),
            op: Op::Close,
        },
        Surgery {
            fd: t.listen,
            expect_ino: ino(t.pid, t.listen),
            op: Op::Shutdown(How::Rdwr),
        },
        Surgery {
            fd: t.client,
            expect_ino: client_ino,
            op: Op::Replace,
        },
        Surgery {
            fd: t.accepted,
            expect_ino: ino(t.pid, t.accepted),
            op: Op::Replace,
        },
    ];
    let out = engine::operate(t.pid, &surg, &EngineOptions::default(), &mut j).unwrap();
    assert_eq!(out.len(), 4);
    for (s, o) in surg.iter().zip(&out) {
        assert!(done_verified(o), "fd {} {:?}: {o:?}", s.fd, s.op);
    }
    assert_untraced_and_running(t.pid);

    let table = fd_table(t.pid);
    assert!(!table.contains_key(&t.pipe_w), "pipe_w closed");
    assert!(table[&t.client].starts_with("socket:["));
    assert_ne!(
        ino(t.pid, t.client),
        client_ino,
        "client now a different socket"
    );

    // Closing the pipe's write end wakes the reader thread with end-of-file: proof the close
    // happened inside the process. The main thread's nanosleep must not have noticed anything.
    assert_eq!(t.fx.read_line(), "READ 0 0", "only the reader may speak");
    let c = checks(&mut t);
    assert_eq!(c[&t.pipe_w].0, -(libc::EBADF as i64));
    assert_eq!(
        c[&t.client],
        (libc::FD_CLOEXEC as i64, 0),
        "cloexec kept, reads see EOF"
    );
    assert_eq!(c[&t.accepted], (0, 0), "no cloexec, reads see EOF");
    assert_eq!(c[&t.listen].1, -(libc::ENOTCONN as i64), "shut listener");
    assert_eq!(
        c[&t.unix0],
        (0, -(libc::EAGAIN as i64)),
        "untouched fd still works"
    );

    let text = std::fs::read_to_string(j.path()).unwrap();
    let kinds: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    // One batch: every `before` is on disk before the first change, then the `after`s.
    let mut expect = vec!["attach".to_string()];
    expect.extend(std::iter::repeat_n("before".to_string(), 4));
    expect.extend(std::iter::repeat_n("after".to_string(), 4));
    expect.push("detach".into());
    assert_eq!(kinds, expect, "{text}");
    assert!(text.contains(r#""restored":true"#), "{text}");
    // The attach record holds what a person needs to put the thread back by hand.
    let attach: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let ip = if flags.contains(&"-m32") {
        "eip"
    } else {
        "rip"
    };
    let regs = attach["regs"].as_array().unwrap();
    assert!(regs.iter().any(|r| r["name"] == ip), "{attach}");
    assert!(
        attach["sigmask"].as_str().unwrap().starts_with("0x"),
        "{attach}"
    );
    assert_eq!(attach["signals_blocked"], true);
    assert_eq!(attach["pid"], t.pid);
}

#[test]
fn close_shutdown_replace_x86_64() {
    close_shutdown_replace(&[]);
}

#[test]
fn close_shutdown_replace_i386() {
    close_shutdown_replace(&["-m32"]);
}

fn changed_fd_is_left_alone(flags: &[&str]) {
    let mut t = start(flags);
    let (_d, mut j) = journal();
    let real = ino(t.pid, t.unix0);
    let surg = [
        Surgery {
            fd: t.unix0,
            expect_ino: real + 1,
            op: Op::Close,
        },
        Surgery {
            fd: 999,
            expect_ino: 5,
            op: Op::Close,
        },
    ];
    let out = engine::operate(t.pid, &surg, &EngineOptions::default(), &mut j).unwrap();
    assert_eq!(
        out[0],
        Outcome::Changed {
            now: format!("socket:[{real}]")
        }
    );
    assert!(
        matches!(&out[1], Outcome::Gone { what } if what.contains("999")),
        "{:?}",
        out[1]
    );
    assert!(fd_table(t.pid).contains_key(&t.unix0));
    assert_untraced_and_running(t.pid);
    let c = checks(&mut t);
    assert_eq!(c[&t.unix0].0, 0);
}

#[test]
fn changed_fd_is_left_alone_x86_64() {
    changed_fd_is_left_alone(&[]);
}

#[test]
fn changed_fd_is_left_alone_i386() {
    changed_fd_is_left_alone(&["-m32"]);
}

#[test]
fn group_stopped_process_stays_stopped() {
    let mut t = start(&[]);
    let (_d, mut j) = journal();
    let pid = nix::unistd::Pid::from_raw(t.pid);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    wait_for("group stop", Duration::from_secs(5), || {
        status_field(t.pid, "State").is_some_and(|s| s.starts_with('T'))
    });
    let surg = [Surgery {
        fd: t.unix0,
        expect_ino: ino(t.pid, t.unix0),
        op: Op::Close,
    }];
    let out = engine::operate(t.pid, &surg, &EngineOptions::default(), &mut j).unwrap();
    assert!(done_verified(&out[0]), "{out:?}");
    assert_eq!(status_field(t.pid, "TracerPid").as_deref(), Some("0"));
    // Detaching wakes each thread just long enough to re-enter the group stop in the kernel.
    wait_for(
        "the process to be stopped again",
        Duration::from_secs(5),
        || status_field(t.pid, "State").is_some_and(|s| s.starts_with('T')),
    );
    // Every thread, not just the leader.
    for task in std::fs::read_dir(format!("/proc/{}/task", t.pid)).unwrap() {
        let path = task.unwrap().path().join("stat");
        wait_for("every thread to be stopped", Duration::from_secs(5), || {
            std::fs::read_to_string(&path)
                .is_ok_and(|s| s.rsplit(')').next().unwrap().trim().starts_with('T'))
        });
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let c = checks(&mut t);
    assert_eq!(c[&t.unix0].0, -(libc::EBADF as i64));
}

#[test]
fn fallback_without_setsigmask_and_no_freeze_x86_64() {
    fallback_without_setsigmask_and_no_freeze(&[]);
}

#[test]
fn fallback_without_setsigmask_and_no_freeze_i386() {
    fallback_without_setsigmask_and_no_freeze(&["-m32"]);
}

fn fallback_without_setsigmask_and_no_freeze(flags: &[&str]) {
    let mut t = start(flags);
    let (_d, mut j) = journal();
    let opts = EngineOptions {
        no_setsigmask: true,
        freeze: false,
        ..Default::default()
    };
    let surg = [
        Surgery {
            fd: t.unix0,
            expect_ino: ino(t.pid, t.unix0),
            op: Op::Replace,
        },
        Surgery {
            fd: t.pipe_r,
            expect_ino: ino(t.pid, t.pipe_r),
            op: Op::Shutdown(How::Rd),
        },
    ];
    let out = engine::operate(t.pid, &surg, &opts, &mut j).unwrap();
    assert!(done_verified(&out[0]), "{out:?}");
    assert!(
        matches!(&out[1], Outcome::Failed { errno: Some(e), .. } if *e == libc::ENOTSOCK),
        "{out:?}"
    );
    assert_untraced_and_running(t.pid);
    let text = std::fs::read_to_string(j.path()).unwrap();
    let attach: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(attach["threads"], 1, "only the injection thread stopped");
    assert_eq!(attach["signals_blocked"], false, "the fallback ran");
    let abi = if flags.is_empty() { "x86_64" } else { "i386" };
    assert_eq!(attach["abi"], abi);
    let c = checks(&mut t);
    assert_eq!(c[&t.unix0], (0, 0));
}

#[test]
fn refusals_are_sentences() {
    let opts = EngineOptions::default();
    let me = std::process::id() as i32;
    let e = engine::check_target(me, &opts).unwrap_err().to_string();
    assert!(e.contains("fdclose itself"), "{e}");
    let e = engine::check_target(1, &opts).unwrap_err().to_string();
    assert!(e.contains("pid 1") && e.contains("--force"), "{e}");
    let e = engine::check_target(2, &opts).unwrap_err().to_string();
    assert!(e.contains("kernel thread"), "{e}");
    let e = engine::check_target(999_999_999, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
}

/// A seccomp filter that refuses shutdown(2): the outcome names the errno and the filter.
#[test]
fn seccomp_refusal_is_reported() {
    let mut t = start_with(&[], &["seccomp"]);
    assert_eq!(status_field(t.pid, "Seccomp").as_deref(), Some("2"));
    let (_d, mut j) = journal();
    let surg = [
        Surgery {
            fd: t.accepted,
            expect_ino: ino(t.pid, t.accepted),
            op: Op::Shutdown(How::Wr),
        },
        Surgery {
            fd: t.unix0,
            expect_ino: ino(t.pid, t.unix0),
            op: Op::Close,
        },
    ];
    let out = engine::operate(t.pid, &surg, &EngineOptions::default(), &mut j).unwrap();
    match &out[0] {
        Outcome::Failed { error, errno } => {
            assert_eq!(*errno, Some(libc::EPERM));
            assert!(error.contains("seccomp"), "{error}");
        }
        o => panic!("expected a failure, got {o:?}"),
    }
    assert!(done_verified(&out[1]), "close still allowed: {:?}", out[1]);
    assert_untraced_and_running(t.pid);
    let c = checks(&mut t);
    assert_eq!(c[&t.unix0].0, -(libc::EBADF as i64));
}

/// A process someone else traces is refused, naming the tracer.
#[test]
fn already_traced_names_the_tracer() {
    let exe = build_c_fixture("engine_basic", &[]);
    let mut fx = Fixture::spawn(Command::new("strace").args(["-o", "/dev/null"]).arg(exe));
    let ready = fx.expect_line("READY");
    let pid: i32 = ready.split_whitespace().next().unwrap().parse().unwrap();
    wait_for("strace to hold the fixture", Duration::from_secs(5), || {
        status_field(pid, "TracerPid").is_some_and(|t| t != "0")
    });
    let e = engine::check_target(pid, &EngineOptions::default()).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("already traced") && s.contains(&format!("({})", "strace")),
        "{s}"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// act::execute turns a plan into one engine run per process and one result per step.
#[test]
fn act_executes_a_plan() {
    use fdclose::act::{execute, ActOptions};
    use fdclose::model::Match;
    use fdclose::plan::{Action, Plan};
    let mut t = start(&[]);
    let (_d, mut j) = journal();
    let step = |fd: i32| Match {
        pid: t.pid,
        comm: "engine_basic".into(),
        fd: Some(fd),
        ino: ino(t.pid, fd),
        target: std::fs::read_link(format!("/proc/{}/fd/{fd}", t.pid))
            .unwrap()
            .to_string_lossy()
            .into_owned(),
        socket: None,
        epoll: vec![],
    };
    let mut sock = step(t.accepted);
    let mut entry = fdclose::model::SocketEntry::closed_fd(sock.ino, fdclose::model::Proto::Tcp);
    entry.state = fdclose::model::SockState::Established;
    entry.peer = Some("[::ffff:127.0.0.1]:4242".parse().unwrap());
    sock.socket = Some(entry);
    let plan = Plan::new(
        Action::Close,
        vec![step(t.unix0), step(t.pipe_w), sock],
        None,
    );
    let res = execute(&plan, &ActOptions::default(), &mut j);
    assert_eq!(res.len(), 3);
    for r in &res {
        assert!(done_verified(&r.outcome), "{r:?}");
    }
    // The journal names the connection as planned, before the engine's records.
    let text = std::fs::read_to_string(j.path()).unwrap();
    let first: Vec<serde_json::Value> = text
        .lines()
        .take(3)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(first.iter().all(|e| e["type"] == "planned"), "{text}");
    let p = first.iter().find(|e| e["fd"] == t.accepted).unwrap();
    assert_eq!(p["peer"], "127.0.0.1:4242");
    assert_eq!(p["state"], "established");
    assert_eq!(t.fx.read_line(), "READ 0 0");
    let table = fd_table(t.pid);
    assert!(!table.contains_key(&t.unix0) && !table.contains_key(&t.pipe_w));
}

/// Thousands of fds in one attach: all closed, each checked before and after, the process
/// frozen once. Prints the time it took (the figure behind "faster than gdb per fd").
#[test]
fn thousands_of_fds_in_one_attach() {
    const N: i32 = 3000;
    let exe = build_c_fixture("engine_basic", &[]);
    let mut fx = Fixture::spawn(Command::new(exe).args(["many", &N.to_string()]));
    let many = fx.expect_line("MANY");
    let r: Vec<i32> = many
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let pid = fx.pid();
    fx.expect_line("READY");
    // The range may also hold fds the fixture inherited: close them too, they are its own.
    let surg: Vec<Surgery> = fd_table(pid)
        .into_keys()
        .filter(|fd| (r[0]..=r[1]).contains(fd))
        .map(|fd| Surgery {
            fd,
            expect_ino: ino(pid, fd),
            op: Op::Close,
        })
        .collect();
    assert!(surg.len() >= N as usize);
    let (_d, mut j) = journal();
    let t0 = std::time::Instant::now();
    let out = engine::operate(pid, &surg, &EngineOptions::default(), &mut j).unwrap();
    let took = t0.elapsed();
    eprintln!(
        "closed {N} fds in one attach in {took:?} ({:?} per fd)",
        took / N as u32
    );
    assert!(
        out.iter().all(done_verified),
        "{:?}",
        out.iter().find(|o| !done_verified(o))
    );
    let table = fd_table(pid);
    assert!((r[0]..=r[1]).all(|fd| !table.contains_key(&fd)));
    assert_untraced_and_running(pid);
}

/// --tid: inject through the thread blocked in read(); its read restarts transparently.
#[test]
fn chosen_thread_is_used_and_its_read_restarts() {
    let mut t = start(&[]);
    let (_d, mut j) = journal();
    let reader = std::fs::read_dir(format!("/proc/{}/task", t.pid))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .parse::<i32>()
                .unwrap()
        })
        .find(|&tid| tid != t.pid)
        .unwrap();
    let opts = EngineOptions {
        tid: Some(reader),
        ..Default::default()
    };
    let surg = [Surgery {
        fd: t.unix0,
        expect_ino: ino(t.pid, t.unix0),
        op: Op::Close,
    }];
    let out = engine::operate(t.pid, &surg, &opts, &mut j).unwrap();
    assert!(done_verified(&out[0]), "{out:?}");
    let text = std::fs::read_to_string(j.path()).unwrap();
    let attach: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(attach["tid"], reader);
    assert!(
        attach["blocked_in"].as_str().unwrap().starts_with("read"),
        "{attach}"
    );
    // The reader prints only if its read() returned: checks() fails on any such line.
    let c = checks(&mut t);
    assert_eq!(c[&t.unix0].0, -(libc::EBADF as i64));
    assert_eq!(c[&t.pipe_r].0, 0, "pipe still open, reader still waiting");
    let e = engine::check_target(
        t.pid,
        &EngineOptions {
            tid: Some(1),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--tid 1 is not a thread"), "{e}");
}

/// A process whose main thread called pthread_exit (its leader is a zombie, another thread runs):
/// not refused as a zombie; the surgery goes through the live thread.
#[test]
fn leaderless_process_is_not_a_zombie() {
    let exe = build_c_fixture("engine_basic", &[]);
    let mut fx = Fixture::spawn(Command::new(exe).arg("leaderless"));
    let n: Vec<i32> = fx
        .expect_line("READY")
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let (pid, pipe_w) = (n[0], n[5]);
    wait_for("the leader to exit", Duration::from_secs(10), || {
        status_field(pid, "State").is_some_and(|s| s.starts_with('Z'))
    });
    let (_d, mut j) = journal();
    let surg = [Surgery {
        fd: pipe_w,
        expect_ino: ino(pid, pipe_w),
        op: Op::Close,
    }];
    let out = engine::operate(pid, &surg, &EngineOptions::default(), &mut j).unwrap();
    assert!(done_verified(&out[0]), "{out:?}");
    // The reader thread sees end-of-file: the close happened inside the process.
    assert_eq!(fx.read_line(), "READ 0 0");
}

/// One thread traced by someone else (strace -p TID): the freeze stops at it, names the tracer,
/// and lets go of the threads it had already stopped.
#[test]
fn a_thread_traced_elsewhere_is_named_and_the_rest_let_go() {
    let mut t = start(&[]);
    let reader = std::fs::read_dir(format!("/proc/{}/task", t.pid))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .parse::<i32>()
                .unwrap()
        })
        .find(|&tid| tid != t.pid)
        .unwrap();
    let _strace =
        Fixture::spawn(Command::new("strace").args(["-o", "/dev/null", "-p", &reader.to_string()]));
    let task_tracer = || {
        std::fs::read_to_string(format!("/proc/{}/task/{reader}/status", t.pid))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:").map(|v| v.trim().to_string()))
            .unwrap()
    };
    wait_for(
        "strace to hold the reader thread",
        Duration::from_secs(10),
        || task_tracer() != "0",
    );
    let (_d, mut j) = journal();
    let surg = [Surgery {
        fd: t.unix0,
        expect_ino: ino(t.pid, t.unix0),
        op: Op::Close,
    }];
    let e = engine::operate(t.pid, &surg, &EngineOptions::default(), &mut j).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("already traced") && s.contains("(strace)"),
        "{s}"
    );
    assert_untraced_and_running(t.pid);
    let c = checks(&mut t);
    assert_eq!(c[&t.unix0].0, 0, "nothing was changed");
}

/// SIGTERM sent to fdclose in the middle of a long surgery waits until every thread of the target
/// has its registers back and is detached; then it takes effect.
#[test]
fn sigterm_to_fdclose_waits_for_the_restore() {
    use std::os::unix::process::ExitStatusExt;
    let exe = build_c_fixture("engine_basic", &[]);
    let mut fx = Fixture::spawn(Command::new(exe).args(["many", "10000"]));
    let r: Vec<i32> = fx
        .expect_line("MANY")
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let n: Vec<i32> = fx
        .expect_line("READY")
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let pid = fx.pid();
    let dir = tempfile::tempdir().unwrap();
    let jpath = dir.path().join("j.jsonl");
    let mut cmd = fdclose();
    cmd.args(["--pid", &pid.to_string(), "--yes", "--journal"])
        .arg(&jpath)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for fd in r[0]..=r[1] {
        cmd.args(["--fd", &fd.to_string()]);
    }
    // Not a Fixture: that pipes stdout, which nobody would read here.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut tool = Reaped(cmd.stdin(std::process::Stdio::null()).spawn().unwrap());
    wait_for("fdclose to attach", Duration::from_secs(30), || {
        status_field(pid, "TracerPid").is_some_and(|t| t != "0")
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(tool.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut status = None;
    wait_for("fdclose to end", Duration::from_secs(60), || {
        status = tool.0.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(
        status.unwrap().signal(),
        Some(libc::SIGTERM),
        "it did die of SIGTERM"
    );
    assert_untraced_and_running(pid);
    // The journal ends with the detach record: the process was restored before fdclose died.
    let text = std::fs::read_to_string(&jpath).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "detach", "{last}");
    assert_eq!(last["restored"], true, "{last}");
    let mut t = Target {
        fx,
        pid,
        listen: n[1],
        client: n[2],
        accepted: n[3],
        pipe_r: n[4],
        pipe_w: n[5],
        unix0: n[6],
    };
    // The fixture is healthy (no failed or early nanosleep, reader still waiting).
    let c = checks(&mut t);
    assert_eq!(c[&t.unix0].0, 0);
}
