//! The ptrace engine against busy processes: a 100-thread process whose threads sit in every kind
//! of blocking call, and a process hit by a storm of queued real-time signals during surgery. Both
//! for x86_64 and i386 (gcc -m32) programs.

mod engine_common;
mod support;

use engine_common::*;
use fdclose::engine::{EngineOptions, Op};
use fdclose::journal::{Entry, Event};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const THREADS: usize = 100;

struct Counts {
    bad: u64,
    eintr: u64,
    lastbad: String,
    per_thread: Vec<u64>,
}

fn counts(fx: &mut Fixture) -> Counts {
    let line = fx.ask("counts", "COUNTS");
    let mut w = line.split_whitespace();
    let mut kv = |k: &str| w.next().unwrap().strip_prefix(k).unwrap().to_string();
    let bad = kv("bad=").parse().unwrap();
    let eintr = kv("eintr=").parse().unwrap();
    let lastbad = kv("lastbad=");
    let per_thread = w.map(|x| x.parse().unwrap()).collect();
    Counts {
        bad,
        eintr,
        lastbad,
        per_thread,
    }
}

fn hundred_threads(m32: bool, freeze: bool) {
    let (mut fx, fds) = rt_leaker(m32, &["-n", "20", "-t", &THREADS.to_string()]);
    let pid = fx.pid();
    // Main + feeder + workers.
    let tasks = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count()
    };
    assert_eq!(tasks(), THREADS + 2);
    // Every worker has completed a call at least once before the surgery.
    wait_for("every worker counted once", Duration::from_secs(20), || {
        counts(&mut fx).per_thread.iter().all(|&c| c > 0)
    });
    let before = counts(&mut fx);
    assert_eq!(
        before.bad, 0,
        "bad results before surgery: {}",
        before.lastbad
    );

    let (r, journal) = operate_within(
        pid,
        surgeries(&fds, || Op::Close),
        EngineOptions {
            freeze,
            ..EngineOptions::default()
        },
        OPERATE_LIMIT,
    );
    assert_all_done(&r.expect("operate"));
    for &(fd, _) in &fds {
        assert!(!fd_table(pid).contains_key(&fd), "fd {fd} still open");
    }
    // Freezing stops every thread, else only the injection thread: the journal says how many.
    let text = std::fs::read_to_string(&journal).unwrap();
    let frozen = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .find_map(|e| match e.event {
            Event::Attach { threads, .. } => Some(threads),
            _ => None,
        });
    let want = if freeze { THREADS + 2 } else { 1 };
    assert_eq!(frozen, Some(want), "threads stopped, per the journal");
    assert_eq!(status_field(pid, "TracerPid").as_deref(), Some("0"));
    assert_eq!(tasks(), THREADS + 2, "all threads survived");

    // Every thread keeps running: each counter moves past its pre-surgery value.
    wait_for(
        "every worker counting again",
        Duration::from_secs(20),
        || {
            let now = counts(&mut fx);
            now.per_thread
                .iter()
                .zip(&before.per_thread)
                .all(|(n, b)| n > b)
        },
    );
    let after = counts(&mut fx);
    assert_eq!(
        after.bad, 0,
        "a blocked call did not complete as if untouched (kind:ret:errno = {})",
        after.lastbad
    );
    let _ = after.eintr; // epoll_wait may legitimately see EINTR.
}

#[test]
fn hundred_threads_x86_64() {
    hundred_threads(false, true);
}

#[test]
fn hundred_threads_i386() {
    hundred_threads(true, true);
}

/// --no-freeze: only the injection thread stops; the other 101 keep running through the surgery.
#[test]
fn hundred_threads_no_freeze_x86_64() {
    hundred_threads(false, false);
}

#[test]
fn hundred_threads_no_freeze_i386() {
    hundred_threads(true, false);
}

/// Queue real-time signals from this process while the engine performs surgery after surgery on the
/// target: every signal sent must be delivered to the program's handler.
fn signal_storm(m32: bool, opts: EngineOptions) {
    const SIGNALS: u64 = 2000;
    let (mut fx, fds) = rt_leaker(m32, &["-n", "400", "-s"]);
    let pid = fx.pid();
    assert_eq!(fx.ask("sigs", "SIGS"), "0");

    // Exactly SIGNALS signals, paced (one every 50 us) so they spread over many surgeries.
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let sent = sent.clone();
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(60);
            let mut n: u64 = 0;
            while n < SIGNALS && Instant::now() < end {
                let sig = libc::SIGRTMIN() + (n % 8) as i32;
                let val = libc::sigval {
                    sival_ptr: n as usize as *mut libc::c_void,
                };
                // SAFETY: sigqueue(3) takes plain values; the target is our own child.
                let r = unsafe { libc::sigqueue(pid, sig, val) };
                if r == 0 {
                    n += 1;
                    sent.store(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_micros(50));
                } else {
                    let e = std::io::Error::last_os_error();
                    // EAGAIN: the signal queue is full; try again.
                    if e.raw_os_error() != Some(libc::EAGAIN) {
                        return n;
                    }
                    std::thread::yield_now();
                }
            }
            n
        })
    };
    // Surgery after surgery (each a full attach/inject/restore/detach) while signals pour in,
    // until the sender has sent them all.
    wait_for("first signals sent", Duration::from_secs(10), || {
        sent.load(Ordering::SeqCst) > 0
    });
    let storm_started = Instant::now();
    let mut rest = fds.as_slice();
    let mut rounds = 0;
    while !rest.is_empty() && (sent.load(Ordering::SeqCst) < SIGNALS || rounds < 5) {
        let (now, later) = rest.split_at(rest.len().min(10));
        let (r, _) = operate_within(
            pid,
            surgeries(now, || Op::Close),
            opts.clone(),
            OPERATE_LIMIT,
        );
        let outcomes = r.unwrap_or_else(|e| panic!("operate during the storm: {e}"));
        assert_all_done(&outcomes);
        rest = later;
        rounds += 1;
    }
    let surgery_done_at = sent.load(Ordering::SeqCst);
    eprintln!(
        "signal storm: {rounds} surgeries in {:?}, {surgery_done_at} signals sent meanwhile",
        storm_started.elapsed()
    );
    let total = sender.join().unwrap();
    assert_eq!(total, SIGNALS, "all signals queued");
    assert!(
        surgery_done_at > 0 && rounds >= 5,
        "signals overlapped the surgery ({rounds} rounds, {surgery_done_at} signals sent meanwhile)"
    );
    wait_for(
        &format!("all {total} signals delivered"),
        Duration::from_secs(20),
        || fx.ask("sigs", "SIGS").parse::<u64>().unwrap() >= total,
    );
    assert_eq!(
        fx.ask("sigs", "SIGS").parse::<u64>().unwrap(),
        total,
        "no extra signals"
    );
    let closed = fds.len() - rest.len();
    for &(fd, _) in &fds[..closed] {
        assert_eq!(fd_inode(pid, fd), None, "fd {fd} closed");
    }
    for &(fd, ino) in rest {
        assert_eq!(
            fd_inode(pid, fd),
            Some(ino),
            "fd {fd} not in any surgery, untouched"
        );
    }
    assert_eq!(status_field(pid, "TracerPid").as_deref(), Some("0"));
}

#[test]
fn signal_storm_x86_64() {
    signal_storm(false, EngineOptions::default());
}

#[test]
fn signal_storm_i386() {
    signal_storm(true, EngineOptions::default());
}

/// The same storm on the path for kernels without PTRACE_SETSIGMASK (Linux < 3.11), where
/// signals cannot be blocked while injecting and must be held back and re-sent by the engine.
#[test]
fn signal_storm_without_setsigmask_x86_64() {
    signal_storm(
        false,
        EngineOptions {
            no_setsigmask: true,
            ..EngineOptions::default()
        },
    );
}

#[test]
fn signal_storm_without_setsigmask_i386() {
    signal_storm(
        true,
        EngineOptions {
            no_setsigmask: true,
            ..EngineOptions::default()
        },
    );
}
