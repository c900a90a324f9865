//! The ptrace engine against processes blocked in system calls: every interrupted call must finish
//! exactly as if nobody had stopped the process (full sleep, data returned, ETIMEDOUT after the full
//! timeout; only epoll_wait may say EINTR), no errno >= 512 ever leaks, and the leaked fd is gone.
//! Run for x86_64 and for i386 (gcc -m32) programs. Also: pre-stopped targets stay stopped, a target
//! that dies mid-surgery ends in an error and never a hang, a reused fd number is left alone, and
//! the journal records every fd before and after with the saved registers.

mod engine_common;
mod support;

use engine_common::*;
use fdclose::engine::{EngineOptions, Op};
use fdclose::plan::Outcome;
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// Length of the sleeps and timeouts inside the fixture. Long enough for the engine to finish
/// while the call is still blocked even on a loaded 2-core machine.
const CALL_MS: u64 = 3000;

struct Done {
    ret: i64,
    errno: i32,
    elapsed_ms: f64,
    fdgone: bool,
    extra: i64,
}

fn parse_done(line: &str) -> Done {
    let field = |k: &str| -> &str {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in DONE line {line:?}"))
    };
    Done {
        ret: field("ret").parse().unwrap(),
        errno: field("errno").parse().unwrap(),
        elapsed_ms: field("elapsed_ms").parse().unwrap(),
        fdgone: field("fdgone") == "1",
        extra: field("extra").parse().unwrap(),
    }
}

/// Run one case; when the machine was too slow for the surgery to land inside the fixture's call
/// (the test thread starved for seconds), the run proves nothing: try again, up to 3 times.
fn blocked_case(mode: &str, m32: bool) {
    for attempt in 1..=3 {
        match blocked_attempt(mode, m32) {
            Ok(()) => return,
            Err(why) => eprintln!("{mode}: attempt {attempt} inconclusive: {why}"),
        }
    }
    panic!("{mode}: 3 attempts, the surgery never landed inside the {CALL_MS} ms call");
}

/// Poll `cond` until it holds (true) or `limit` passes (false).
fn within(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn blocked_attempt(mode: &str, m32: bool) -> Result<(), String> {
    let exe = build_fixture("rt_blocking", m32);
    let mut fx = Fixture::spawn(Command::new(exe).args([mode, &CALL_MS.to_string()]));
    let pid = fx.pid();
    let mut feed = None;
    if mode == "read" {
        let port: u16 = fx.expect_line_within("LISTEN", LINE_LIMIT).parse().unwrap();
        feed = Some(TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    let ready = fx.expect_line_within("READY", LINE_LIMIT);
    let f: Vec<i64> = ready
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let (fd, ino, nr, arg) = (f[0] as i32, f[1] as u64, f[2], f[3]);
    let ready_at = Instant::now();

    // The fd is the socket the fixture says (which saw TCP_INFO say CLOSE_WAIT before READY; the
    // system-wide /proc/net/tcp is too slow to read inside the call's window).
    assert_eq!(
        fd_inode(pid, fd),
        Some(ino),
        "READY names fd {fd} inode {ino}"
    );

    // Wait until the main thread sits in the call (busy: until it burns CPU in user space).
    let window = Duration::from_millis(CALL_MS / 2);
    let in_call = if nr >= 0 {
        within(window, || blocked_syscall(pid, pid) == Some(nr))
    } else {
        within(window, || proc_state(pid) == Some('R'))
    };
    if !in_call {
        return Err(format!(
            "pid {pid} not seen in its call (syscall {nr}) {:?} after READY",
            ready_at.elapsed()
        ));
    }
    let started = Instant::now();

    let outcomes = operate_ok(pid, vec![close(fd, ino)]);
    let took = started.elapsed();
    assert!(
        outcomes[0].is_done(),
        "{mode}: close outcome {:?}",
        outcomes[0]
    );
    assert!(
        !fd_table(pid).contains_key(&fd),
        "{mode}: fd {fd} still open after close"
    );
    assert_eq!(
        status_field(pid, "TracerPid").as_deref(),
        Some("0"),
        "{mode}: engine detached"
    );
    // Otherwise the call may have ended before the surgery and this run proves nothing.
    if ready_at.elapsed() >= Duration::from_millis(CALL_MS * 2 / 3) {
        return Err(format!(
            "surgery took {took:?}, ended {:?} after READY: too close to the {CALL_MS} ms call",
            ready_at.elapsed()
        ));
    }
    if nr >= 0 && mode != "epoll" {
        // A call restarted with its remaining time shows as restart_syscall. The thread needs a
        // moment (a scheduling slot) to re-enter it after the detach.
        let restart = if m32 { 0 } else { libc::SYS_restart_syscall };
        wait_for(
            &format!("{mode}: back in the same call (or its restart) after surgery"),
            Duration::from_secs(5),
            || {
                let now = blocked_syscall(pid, pid);
                now == Some(nr) || now == Some(restart)
            },
        );
    }

    // Let the call complete.
    match mode {
        "read" => feed.as_mut().unwrap().write_all(b"hello").unwrap(),
        "accept" => drop(TcpStream::connect(("127.0.0.1", arg as u16)).unwrap()),
        "wait4" => {
            assert!(send_signal(arg as i32, libc::SIGTERM));
        }
        _ => {}
    }
    let d = parse_done(&fx.expect_line_within(&format!("DONE {mode}"), LINE_LIMIT));
    assert!(
        d.errno < 512,
        "{mode}: kernel-internal errno {} leaked",
        d.errno
    );
    assert!(d.fdgone, "{mode}: the fixture still sees fd {fd} open");
    let full = CALL_MS as f64;
    match mode {
        "nanosleep" | "clock_nanosleep" | "poll" | "select" | "busy" => {
            assert_eq!((d.ret, d.errno), (0, 0), "{mode}: result");
            assert!(
                d.elapsed_ms >= full,
                "{mode}: returned after {} ms < {full}",
                d.elapsed_ms
            );
        }
        "futex" => {
            assert_eq!((d.ret, d.errno), (-1, libc::ETIMEDOUT), "futex: ETIMEDOUT");
            assert!(
                d.elapsed_ms >= full,
                "futex: ETIMEDOUT after {} ms < {full}",
                d.elapsed_ms
            );
        }
        "epoll" => {
            let eintr = d.ret == -1 && d.errno == libc::EINTR;
            let full_timeout = d.ret == 0 && d.elapsed_ms >= full;
            assert!(
                eintr || full_timeout,
                "epoll_wait: ret={} errno={} after {} ms",
                d.ret,
                d.errno,
                d.elapsed_ms
            );
        }
        "read" => assert_eq!((d.ret, d.extra), (5, 5), "read: got the 5 bytes"),
        "accept" => assert!(
            d.ret >= 0 && d.extra == 1,
            "accept: ret={} errno={}",
            d.ret,
            d.errno
        ),
        "wait4" => {
            assert_eq!(d.ret, arg, "wait4 returns the child's pid");
            assert_eq!(
                d.extra & 0x7f,
                libc::SIGTERM as i64,
                "child killed by SIGTERM"
            );
        }
        _ => unreachable!(),
    }
    Ok(())
}

macro_rules! matrix {
    ($($name:ident: $mode:expr),* $(,)?) => {
        mod x86_64 {
            $(#[test] fn $name() { super::blocked_case($mode, false) })*
        }
        mod i386 {
            $(#[test] fn $name() { super::blocked_case($mode, true) })*
        }
    };
}

matrix! {
    nanosleep: "nanosleep",
    clock_nanosleep: "clock_nanosleep",
    read: "read",
    poll: "poll",
    select: "select",
    epoll_wait: "epoll",
    futex_wait_timeout: "futex",
    accept: "accept",
    wait4: "wait4",
    busy_loop: "busy",
}

fn leaker(args: &[&str]) -> (Fixture, Vec<(i32, u64)>) {
    rt_leaker(false, args)
}

/// A process stopped by SIGSTOP before the surgery is still stopped after it, and runs on after
/// SIGCONT.
#[test]
fn prestopped_process_stays_stopped() {
    let exe = build_fixture("rt_blocking", false);
    let mut fx = Fixture::spawn(Command::new(exe).args(["nanosleep", "1000"]));
    let pid = fx.pid();
    let f: Vec<i64> = fx
        .expect_line_within("READY", LINE_LIMIT)
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    let (fd, ino) = (f[0] as i32, f[1] as u64);
    wait_for("blocked in nanosleep", Duration::from_secs(10), || {
        blocked_syscall(pid, pid) == Some(f[2])
    });
    assert!(send_signal(pid, libc::SIGSTOP));
    wait_for("group stop (State T)", Duration::from_secs(10), || {
        proc_state(pid) == Some('T')
    });

    let outcomes = operate_ok(pid, vec![close(fd, ino)]);
    assert!(outcomes[0].is_done(), "{:?}", outcomes[0]);
    assert!(!fd_table(pid).contains_key(&fd));
    assert_eq!(status_field(pid, "TracerPid").as_deref(), Some("0"));
    assert_eq!(proc_state(pid), Some('T'), "still stopped after surgery");
    assert!(
        status_field(pid, "State")
            .unwrap()
            .starts_with("T (stopped)"),
        "group-stopped, not traced-stopped: {:?}",
        status_field(pid, "State")
    );

    assert!(send_signal(pid, libc::SIGCONT));
    let d = parse_done(&fx.expect_line_within("DONE nanosleep", LINE_LIMIT));
    assert_eq!(
        (d.ret, d.errno),
        (0, 0),
        "nanosleep completes after SIGCONT"
    );
    assert!(d.fdgone);
    assert!(d.elapsed_ms >= 1000.0);
}

/// The same with 20 worker threads: every thread is still group-stopped after the surgery, none
/// runs until SIGCONT, and then all of them work on with untouched calls.
#[test]
fn prestopped_threaded_process_stays_stopped() {
    let (mut fx, fds) = leaker(&["-n", "5", "-t", "20"]);
    let pid = fx.pid();
    let counts = |fx: &mut Fixture| -> (String, Vec<u64>) {
        let line = fx.ask("counts", "COUNTS");
        let bad = line.split_whitespace().next().unwrap().to_string();
        let c = line
            .split_whitespace()
            .skip(3)
            .map(|w| w.parse().unwrap())
            .collect();
        (bad, c)
    };
    wait_for("every worker counted once", Duration::from_secs(20), || {
        counts(&mut fx).1.iter().all(|&c| c > 0)
    });
    assert!(send_signal(pid, libc::SIGSTOP));
    let tasks: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect();
    let stopped = |tid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    };
    wait_for(
        "every thread group-stopped",
        Duration::from_secs(10),
        || tasks.iter().all(|&t| stopped(t)),
    );

    let outcomes = operate_ok(pid, surgeries(&fds, || Op::Close));
    assert_all_done(&outcomes);
    for &(fd, _) in &fds {
        assert_eq!(fd_inode(pid, fd), None, "fd {fd} closed");
    }
    assert_eq!(status_field(pid, "TracerPid").as_deref(), Some("0"));
    for &t in &tasks {
        assert!(stopped(t), "thread {t} still stopped after surgery");
    }
    assert!(status_field(pid, "State")
        .unwrap()
        .starts_with("T (stopped)"));

    assert!(send_signal(pid, libc::SIGCONT));
    let (_, before) = counts(&mut fx);
    wait_for(
        "every worker counting again",
        Duration::from_secs(20),
        || counts(&mut fx).1.iter().zip(&before).all(|(n, b)| n > b),
    );
    let (bad, _) = counts(&mut fx);
    assert_eq!(bad, "bad=0", "calls completed untouched after the stop");
}

/// A target killed while the engine works on it: operate returns (an error, or Gone / Failed for
/// the fds not done), never hangs, and leaves nothing traced. Two moments: as soon as the engine
/// has seized it (freeze), and once the first fds are closed (mid-surgery); should the engine
/// finish all 6,000 fds first, try again (3 times). That the report *says* the process exited is
/// `target_exit_is_reported_as_an_exit`.
#[test]
fn target_exits_during_freeze() {
    target_exits(Moment::Seized);
}

#[test]
fn target_exits_mid_surgery() {
    target_exits(Moment::FirstFdClosed);
}

#[derive(Clone, Copy, Debug)]
enum Moment {
    Seized,
    FirstFdClosed,
}

fn target_exits(when: Moment) {
    for attempt in 1..=3 {
        if kill_during_surgery(when, false) {
            return;
        }
        eprintln!("attempt {attempt}: the engine finished before the kill landed; again");
    }
    panic!("the engine finished every fd before a kill could land, 3 times: nothing tested");
}

/// The operator must read that the process went away — not that a register restore failed or
/// that no thread could be stopped. Six kills, at both moments: every report must say so.
#[test]
fn target_exit_is_reported_as_an_exit() {
    for when in [Moment::Seized, Moment::FirstFdClosed].repeat(3) {
        kill_during_surgery(when, true);
    }
}

/// One try; true when the kill landed during the surgery. `clear`: also require the report to
/// say that the process exited (an error naming the exit, or Gone for every fd not done).
fn kill_during_surgery(when: Moment, clear: bool) -> bool {
    let (fx, fds) = leaker(&["-n", "6000"]);
    let pid = fx.pid();
    let first_fd = fds[0].0;
    let killer = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            let now = match when {
                Moment::Seized => status_field(pid, "TracerPid").is_some_and(|t| t != "0"),
                Moment::FirstFdClosed => fd_inode(pid, first_fd).is_none(),
            };
            if now {
                break;
            }
            std::hint::spin_loop();
        }
        send_signal(pid, libc::SIGKILL)
    });
    let started = Instant::now();
    let (r, _) = operate_within(
        pid,
        surgeries(&fds, || Op::Close),
        EngineOptions::default(),
        Duration::from_secs(30),
    );
    let took = started.elapsed();
    assert!(killer.join().unwrap(), "the killer found the target");
    // Nothing of ours traces it any more: a zombie or reaped, never ptrace-stopped.
    if let Some(s) = proc_state(pid) {
        assert!(s == 'Z' || s == 'X', "target state after kill: {s}");
    }
    assert!(took < Duration::from_secs(30));
    eprintln!(
        "killed ({when:?}) after {took:?}: {}",
        match &r {
            Err(e) => format!("error: {e}"),
            Ok(o) => format!(
                "{} of {} done, first other: {:?}",
                o.iter().filter(|o| o.is_done()).count(),
                o.len(),
                o.iter().find(|o| !o.is_done())
            ),
        }
    );
    match r {
        Err(e) => {
            assert!(!e.is_empty(), "the error says something");
            if clear {
                let l = e.to_lowercase();
                assert!(
                    ["exited", "gone", "died", "killed"]
                        .iter()
                        .any(|w| l.contains(w)),
                    "the error says the process exited: {e}"
                );
            }
            true
        }
        Ok(outcomes) => {
            assert_eq!(outcomes.len(), fds.len(), "one outcome per surgery");
            for o in &outcomes {
                if clear {
                    // Every fd not done is reported as gone with the process, not as a failure.
                    assert!(
                        matches!(o, Outcome::Done { .. } | Outcome::Gone { .. }),
                        "{o:?}"
                    );
                } else {
                    assert!(
                        matches!(
                            o,
                            Outcome::Done { .. } | Outcome::Gone { .. } | Outcome::Failed { .. }
                        ),
                        "{o:?}"
                    );
                }
            }
            let first_not_done = outcomes.iter().position(|o| !o.is_done());
            first_not_done.is_some()
        }
    }
}

/// close, shutdown and replace in one attach, on x86_64 and i386 programs (each ABI has its own
/// numbers for socket, shutdown and dup3): the closed fd is gone, the shut-down one keeps its
/// socket but leaves CLOSE_WAIT, the replaced one keeps its number on a different socket.
fn three_ops(m32: bool) {
    let (mut fx, fds) = rt_leaker(m32, &["-n", "3"]);
    let pid = fx.pid();
    let [(fc, ic), (fs, is), (fr, ir)] = fds[..] else {
        panic!("3 fds")
    };
    let outcomes = operate_ok(
        pid,
        vec![
            close(fc, ic),
            fdclose::engine::Surgery {
                fd: fs,
                expect_ino: is,
                op: Op::Shutdown(fdclose::plan::How::Rdwr),
            },
            fdclose::engine::Surgery {
                fd: fr,
                expect_ino: ir,
                op: Op::Replace,
            },
        ],
    );
    assert_all_done(&outcomes);
    assert_eq!(fd_inode(pid, fc), None, "closed fd {fc} gone");
    assert_eq!(
        fd_inode(pid, fs),
        Some(is),
        "shut-down fd {fs} keeps its socket"
    );
    let now = fd_inode(pid, fr).expect("replaced fd keeps its number");
    assert_ne!(now, ir, "replaced fd {fr} holds another socket");
    // Both connections are released: our FIN went out, neither socket is in CLOSE_WAIT any more.
    wait_for(
        "shut-down and replaced sockets leave CLOSE_WAIT",
        Duration::from_secs(10),
        || {
            let cw = tcp_inodes_in_state(pid, "08");
            !cw.contains(&is) && !cw.contains(&ir)
        },
    );
    // The program sees the same from inside.
    assert_eq!(
        fx.ask(&format!("check {fc}"), "CHECK"),
        format!("{fc} open=0 ino=0")
    );
    assert_eq!(
        fx.ask(&format!("check {fr}"), "CHECK"),
        format!("{fr} open=1 ino={now}")
    );
}

#[test]
fn close_shutdown_replace_x86_64() {
    three_ops(false);
}

#[test]
fn close_shutdown_replace_i386() {
    three_ops(true);
}

/// A hardened program whose seccomp filter fails close(2) with EPERM: each fd is reported Failed
/// with EPERM and a word about seccomp, stays open, and the program runs on unharmed.
fn seccomp_refusal(m32: bool) {
    let (mut fx, fds) = rt_leaker(m32, &["-n", "2", "-S"]);
    let pid = fx.pid();
    assert_eq!(status_field(pid, "Seccomp").as_deref(), Some("2"));
    let outcomes = operate_ok(pid, surgeries(&fds, || Op::Close));
    for (o, &(fd, ino)) in outcomes.iter().zip(&fds) {
        match o {
            Outcome::Failed { error, errno } => {
                assert_eq!(*errno, Some(libc::EPERM), "fd {fd}: {error}");
                assert!(
                    error.contains("seccomp"),
                    "fd {fd}: the error names seccomp: {error}"
                );
            }
            other => panic!("fd {fd}: close refused by seccomp must be Failed, got {other:?}"),
        }
        assert_eq!(fd_inode(pid, fd), Some(ino), "fd {fd} untouched");
    }
    assert_eq!(status_field(pid, "TracerPid").as_deref(), Some("0"));
    assert_eq!(fx.ask("ping", "PONG"), "", "the program runs on");
    let (fd, ino) = fds[0];
    assert_eq!(
        fx.ask(&format!("check {fd}"), "CHECK"),
        format!("{fd} open=1 ino={ino}")
    );
}

#[test]
fn seccomp_refusal_x86_64() {
    seccomp_refusal(false);
}

#[test]
fn seccomp_refusal_i386() {
    seccomp_refusal(true);
}

/// A process already traced (strace attached) cannot be seized: operate refuses with the tracer's
/// pid, changes nothing, and the process runs on once strace lets go.
#[test]
fn already_traced_target_is_refused() {
    let (mut fx, fds) = leaker(&["-n", "2"]);
    let pid = fx.pid();
    let strace = Fixture::spawn(
        Command::new("strace")
            .args(["-o", "/dev/null", "-p"])
            .arg(pid.to_string()),
    );
    wait_for("strace attached", Duration::from_secs(10), || {
        status_field(pid, "TracerPid").is_some_and(|t| t != "0")
    });
    let tracer = status_field(pid, "TracerPid").unwrap();
    let (r, _) = operate_within(
        pid,
        surgeries(&fds, || Op::Close),
        EngineOptions::default(),
        OPERATE_LIMIT,
    );
    let e = r.expect_err("a traced process cannot be operated on");
    assert!(
        e.contains(&tracer),
        "the error names the tracer {tracer}: {e}"
    );
    for &(fd, ino) in &fds {
        assert_eq!(fd_inode(pid, fd), Some(ino), "fd {fd} untouched");
    }
    drop(strace);
    wait_for("strace detached", Duration::from_secs(10), || {
        status_field(pid, "TracerPid").as_deref() == Some("0")
    });
    assert_eq!(fx.ask("ping", "PONG"), "");
}

/// The fd number was closed and reused between plan and act: the engine must see the inode
/// changed, say so, and leave the new object alone.
#[test]
fn reused_fd_number_is_left_alone() {
    let (mut fx, fds) = leaker(&["-n", "2"]);
    let pid = fx.pid();
    let (fd, old_ino) = fds[0];
    let reply = fx.ask(&format!("reopen {fd}"), "REOPENED");
    let new_ino: u64 = reply.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_ne!(new_ino, old_ino);
    assert_eq!(fd_inode(pid, fd), Some(new_ino));

    let outcomes = operate_ok(pid, vec![close(fd, old_ino), close(fds[1].0, fds[1].1)]);
    assert!(
        matches!(outcomes[0], Outcome::Changed { .. }),
        "stale inode → Changed, got {:?}",
        outcomes[0]
    );
    assert!(
        outcomes[1].is_done(),
        "the other fd is still closed: {:?}",
        outcomes[1]
    );
    assert_eq!(
        fd_inode(pid, fd),
        Some(new_ino),
        "the reused fd is untouched"
    );
    let check = fx.ask(&format!("check {fd}"), "CHECK");
    assert_eq!(check, format!("{fd} open=1 ino={new_ino}"));
    assert_eq!(fd_inode(pid, fds[1].0), None);
}

/// After operate, the journal holds the injection thread's saved registers and signal mask
/// (attach), then a before and an after entry for every fd, in that order, and a detach that says
/// the registers were restored. The fixture's only thread sits in read(2) on stdin, so the saved
/// orig_rax / orig_eax must be read's number: the registers are the interrupted call's.
#[test]
fn journal_records_before_and_after_with_registers() {
    journal_case(false);
}

#[test]
fn journal_records_before_and_after_with_registers_i386() {
    journal_case(true);
}

fn journal_case(m32: bool) {
    use fdclose::journal::{Entry, Event};
    let (mut fx, fds) = rt_leaker(m32, &["-n", "3"]);
    let pid = fx.pid();
    // read: x86_64 0, i386 3.
    let read_nr: i64 = if m32 { 3 } else { libc::SYS_read };
    wait_for(
        "main thread blocked in read(stdin)",
        Duration::from_secs(10),
        || blocked_syscall(pid, pid) == Some(read_nr),
    );
    let (r, path) = operate_within(
        pid,
        surgeries(&fds, || Op::Close),
        EngineOptions::default(),
        OPERATE_LIMIT,
    );
    assert_all_done(&r.expect("operate"));
    assert_eq!(fx.ask("ping", "PONG"), "", "target alive after surgery");

    let text = std::fs::read_to_string(&path).expect("journal written");
    let entries: Vec<Entry> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("journal line {l:?}: {e}")))
        .collect();
    let attach = entries
        .iter()
        .position(|e| matches!(&e.event, Event::Attach { pid: p, .. } if *p == pid))
        .unwrap_or_else(|| panic!("no attach entry for pid {pid}: {text}"));
    let Event::Attach {
        regs, sigmask, abi, ..
    } = &entries[attach].event
    else {
        unreachable!()
    };
    let (want_abi, ip, sp, orig) = if m32 {
        ("i386", "eip", "esp", "orig_eax")
    } else {
        ("x86_64", "rip", "rsp", "orig_rax")
    };
    assert_eq!(abi, want_abi);
    let reg = |name: &str| -> u64 {
        let r = regs
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("saved register {name} missing: {regs:?}"));
        let hex = r.value.strip_prefix("0x").expect("hex register value");
        u64::from_str_radix(hex, 16).unwrap()
    };
    assert_ne!(reg(ip), 0, "a real instruction pointer was saved");
    assert_ne!(reg(sp), 0, "a real stack pointer was saved");
    assert_eq!(
        reg(orig) as i64,
        read_nr,
        "saved {orig} is the interrupted read(2)"
    );
    assert!(sigmask.starts_with("0x"), "signal mask saved: {sigmask}");
    for &(fd, ino) in &fds {
        let before = entries.iter().position(|e| {
            matches!(&e.event, Event::Before { fd: f, inode, action, .. }
                if *f == fd && *inode == ino && action == "close")
        });
        let after = entries.iter().position(
            |e| matches!(&e.event, Event::After { fd: f, result, .. } if *f == fd && *result == 0),
        );
        let before = before.unwrap_or_else(|| panic!("no before entry for fd {fd}: {text}"));
        let after =
            after.unwrap_or_else(|| panic!("no successful after entry for fd {fd}: {text}"));
        assert!(
            attach < before && before < after,
            "attach < before < after for fd {fd}"
        );
    }
    let detach = entries.iter().rposition(
        |e| matches!(&e.event, Event::Detach { pid: p, restored: true, .. } if *p == pid),
    );
    assert!(
        detach.is_some_and(|d| d > attach),
        "a detach with registers restored: {text}"
    );
}
