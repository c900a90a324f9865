//! Closing runs of consecutive fds with one close_range(2), and the one-close-per-fd path
//! (FDCLOSE_NO_CLOSE_RANGE=1, or a kernel/seccomp filter that refuses close_range): both close
//! exactly the planned fds that still hold their planned sockets, never a neighbour, never an fd
//! re-pointed between plan and act. Live fixture: integration/fixtures/batch_leaker.c.

mod support;

use fdclose::engine::{self, EngineOptions, Op, Surgery, NO_CLOSE_RANGE_ENV};
use fdclose::journal::Journal;
use fdclose::plan::Outcome;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use support::{build_c_fixture, fd_inode, fd_table, fdclose, spawn_interactive, Fixture};

const FIRST: i32 = 10;
const LAST: i32 = 20;
const KEEP: i32 = 15;

fn start(m32: bool, extra: &[&str]) -> (Fixture, i32) {
    let exe = build_c_fixture("batch_leaker", if m32 { &["-m32"] } else { &[] });
    let mut cmd = Command::new(exe);
    cmd.args([FIRST.to_string(), LAST.to_string(), KEEP.to_string()])
        .args(extra);
    let mut fx = spawn_interactive(&mut cmd);
    let pid: i32 = fx.expect_line("READY").parse().unwrap();
    assert_eq!(pid, fx.pid());
    (fx, pid)
}

/// fd → inode of FIRST-1..=LAST+1.
fn inodes(pid: i32) -> BTreeMap<i32, u64> {
    (FIRST - 1..=LAST + 1)
        .map(|fd| {
            (
                fd,
                fd_inode(pid, fd).unwrap_or_else(|| panic!("fd {fd} open")),
            )
        })
        .collect()
}

fn journal() -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(Some(&dir.path().join("journal.jsonl"))).unwrap();
    (dir, j)
}

fn entries(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `after` records by action: how many went through close_range, how many one close each.
fn after_actions(j: &[Value]) -> (usize, usize) {
    let afters = j.iter().filter(|e| e["type"] == "after");
    let (mut range, mut single) = (0, 0);
    for a in afters {
        match a["action"].as_str().unwrap() {
            "close-range" => range += 1,
            "close" => single += 1,
            other => panic!("unexpected action {other}"),
        }
    }
    (range, single)
}

/// Every fd planned for closing is gone; the others (FIRST-1, LAST+1, `untouched`) hold what
/// they held at `before`.
fn assert_exactly_closed(pid: i32, before: &BTreeMap<i32, u64>, untouched: i32) {
    let table = fd_table(pid);
    for fd in FIRST - 1..=LAST + 1 {
        if fd == FIRST - 1 || fd == LAST + 1 || fd == untouched {
            assert_eq!(
                fd_inode(pid, fd),
                Some(before[&fd]),
                "fd {fd} must be untouched: {table:?}"
            );
        } else {
            assert!(!table.contains_key(&fd), "fd {fd} still open: {table:?}");
        }
    }
}

fn done_verified(o: &Outcome) -> bool {
    matches!(o, Outcome::Done { verified: true, .. })
}

/// The CLI selects the CLOSE_WAIT fds (KEEP is a live connection, so not planned) and closes
/// them; with close_range that takes two runs, 10-14 and 16-20.
fn cli_closes_around_a_live_fd(m32: bool, no_close_range: bool) {
    let (mut fx, pid) = start(m32, &[]);
    let before = inodes(pid);
    let dir = tempfile::tempdir().unwrap();
    let jpath = dir.path().join("journal.jsonl");
    let mut cmd = fdclose();
    cmd.args(["--pid", &pid.to_string(), "--state", "close-wait", "--yes"])
        .arg("--journal")
        .arg(&jpath);
    if no_close_range {
        cmd.env(NO_CLOSE_RANGE_ENV, "1");
    } else {
        cmd.env_remove(NO_CLOSE_RANGE_ENV);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_exactly_closed(pid, &before, KEEP);
    assert_eq!(fx.ask(&format!("live {KEEP}"), "LIVE"), format!("{KEEP} 0"));
    assert_eq!(fx.ask(&format!("live {}", LAST + 1), "LIVE"), "21 0");

    let j = entries(&jpath);
    let planned: Vec<i64> = j
        .iter()
        .filter(|e| e["type"] == "planned")
        .map(|e| e["fd"].as_i64().unwrap())
        .collect();
    assert_eq!(planned.len(), 10, "{planned:?}");
    assert!(!planned.contains(&(KEEP as i64)));
    let (range, single) = after_actions(&j);
    if no_close_range {
        assert_eq!((range, single), (0, 10));
    } else {
        assert_eq!((range, single), (10, 0));
    }
    // Every after is verified, and its before came first.
    for fd in (FIRST..=LAST).filter(|&f| f != KEEP) {
        let pos = |t: &str| {
            j.iter()
                .position(|e| e["type"] == t && e["fd"] == fd)
                .unwrap_or_else(|| panic!("no {t} for fd {fd}"))
        };
        assert!(pos("before") < pos("after"));
        assert_eq!(j[pos("after")]["verified"], true, "fd {fd}");
    }
    let attach = j.iter().position(|e| e["type"] == "attach").unwrap();
    let first_before = j.iter().position(|e| e["type"] == "before").unwrap();
    assert!(attach < first_before);
}

#[test]
fn cli_close_range_skips_a_live_fd_x86_64() {
    cli_closes_around_a_live_fd(false, false);
}

#[test]
fn cli_close_range_skips_a_live_fd_i386() {
    cli_closes_around_a_live_fd(true, false);
}

#[test]
fn cli_one_close_per_fd_gives_the_same_x86_64() {
    cli_closes_around_a_live_fd(false, true);
}

#[test]
fn cli_one_close_per_fd_gives_the_same_i386() {
    cli_closes_around_a_live_fd(true, true);
}

/// Every fd of FIRST..=LAST is planned with its inode, then KEEP is re-pointed to a new socket
/// before the engine acts: KEEP comes back `changed` and keeps the new socket; the rest close.
fn repointed_fd_splits_the_run(m32: bool, no_close_range: bool) {
    let (mut fx, pid) = start(m32, &[]);
    let planned = inodes(pid);
    let surg: Vec<Surgery> = (FIRST..=LAST)
        .map(|fd| Surgery {
            fd,
            expect_ino: planned[&fd],
            op: Op::Close,
        })
        .collect();
    let now = fx.ask(&format!("reopen {KEEP}"), "REOPENED");
    let mut before = planned.clone();
    before.insert(KEEP, fd_inode(pid, KEEP).unwrap());
    assert_ne!(before[&KEEP], planned[&KEEP]);
    assert_eq!(now, format!("socket:[{}]", before[&KEEP]));

    let (_d, mut j) = journal();
    let opts = EngineOptions {
        no_close_range,
        ..Default::default()
    };
    let out = engine::operate(pid, &surg, &opts, &mut j).unwrap();
    for (s, o) in surg.iter().zip(&out) {
        if s.fd == KEEP {
            assert_eq!(o, &Outcome::Changed { now: now.clone() });
        } else {
            assert!(done_verified(o), "fd {}: {o:?}", s.fd);
        }
    }
    assert_exactly_closed(pid, &before, KEEP);
    let e = entries(j.path());
    let (range, single) = after_actions(&e);
    if no_close_range {
        assert_eq!((range, single), (0, 10));
    } else {
        assert_eq!((range, single), (10, 0));
    }
    assert!(
        !e.iter().any(|x| x["type"] == "before" && x["fd"] == KEEP),
        "a changed fd gets no before record"
    );
    assert_eq!(fx.ask(&format!("live {}", FIRST - 1), "LIVE"), "9 0");
}

#[test]
fn repointed_fd_splits_the_run_x86_64() {
    repointed_fd_splits_the_run(false, false);
}

#[test]
fn repointed_fd_splits_the_run_i386() {
    repointed_fd_splits_the_run(true, false);
}

#[test]
fn repointed_fd_one_close_per_fd_x86_64() {
    repointed_fd_splits_the_run(false, true);
}

#[test]
fn repointed_fd_one_close_per_fd_i386() {
    repointed_fd_splits_the_run(true, true);
}

/// A kernel without close_range (< 5.9) answers ENOSYS; here a seccomp filter does. The engine
/// falls back to one close per fd for the rest of the run and closes the same fds.
fn refused_close_range_falls_back(m32: bool) {
    let (mut fx, pid) = start(m32, &["noclose_range"]);
    let before = inodes(pid);
    let surg: Vec<Surgery> = (FIRST..=LAST)
        .filter(|&fd| fd != KEEP)
        .map(|fd| Surgery {
            fd,
            expect_ino: before[&fd],
            op: Op::Close,
        })
        .collect();
    let (_d, mut j) = journal();
    let out = engine::operate(pid, &surg, &EngineOptions::default(), &mut j).unwrap();
    assert!(out.iter().all(done_verified), "{out:?}");
    assert_exactly_closed(pid, &before, KEEP);
    let e = entries(j.path());
    assert_eq!(after_actions(&e), (0, 10));
    assert_eq!(fx.ask(&format!("live {KEEP}"), "LIVE"), format!("{KEEP} 0"));
}

#[test]
fn refused_close_range_falls_back_x86_64() {
    refused_close_range_falls_back(false);
}

#[test]
fn refused_close_range_falls_back_i386() {
    refused_close_range_falls_back(true);
}

/// Under a seccomp filter the first fd of each run is closed with close(2), for the filter to
/// judge; close_range takes the rest of the run only once that went through.
#[test]
fn seccomp_filter_judges_a_plain_close_first() {
    let (mut fx, pid) = start(false, &["seccomp_neutral"]);
    assert_eq!(support::status_field(pid, "Seccomp").as_deref(), Some("2"));
    let before = inodes(pid);
    let surg: Vec<Surgery> = (FIRST..=LAST)
        .filter(|&fd| fd != KEEP)
        .map(|fd| Surgery {
            fd,
            expect_ino: before[&fd],
            op: Op::Close,
        })
        .collect();
    let (_d, mut j) = journal();
    let out = engine::operate(pid, &surg, &EngineOptions::default(), &mut j).unwrap();
    assert!(out.iter().all(done_verified), "{out:?}");
    assert_exactly_closed(pid, &before, KEEP);
    let e = entries(j.path());
    let plain: Vec<i64> = e
        .iter()
        .filter(|x| x["type"] == "after" && x["action"] == "close")
        .map(|x| x["fd"].as_i64().unwrap())
        .collect();
    assert_eq!(
        plain,
        vec![FIRST as i64, KEEP as i64 + 1],
        "first of each run"
    );
    assert_eq!(after_actions(&e), (8, 2));
    assert_eq!(fx.ask(&format!("live {KEEP}"), "LIVE"), format!("{KEEP} 0"));
}

/// An fd planned twice is acted on once; the second surgery is checked after the first call and
/// finds it gone. Neighbours stay.
#[test]
fn fd_planned_twice_is_closed_once() {
    let (_fx, pid) = start(false, &[]);
    let before = inodes(pid);
    let s = |fd: i32| Surgery {
        fd,
        expect_ino: before[&fd],
        op: Op::Close,
    };
    let surg = [s(12), s(13), s(12), s(14)];
    let (_d, mut j) = journal();
    let out = engine::operate(pid, &surg, &EngineOptions::default(), &mut j).unwrap();
    assert!(done_verified(&out[0]) && done_verified(&out[1]) && done_verified(&out[3]));
    assert!(
        matches!(&out[2], Outcome::Gone { what } if what.contains("fd 12")),
        "{:?}",
        out[2]
    );
    let table = fd_table(pid);
    for fd in [11, 15, 16] {
        assert_eq!(fd_inode(pid, fd), Some(before[&fd]), "{table:?}");
    }
    for fd in 12..=14 {
        assert!(!table.contains_key(&fd));
    }
}

/// Shutting down many fds in one attach: the TCP tables are read once before and once after the
/// batch, and each fd's own state change is what verifies it (CLOSE_WAIT → LAST_ACK, and on
/// loopback at once CLOSE, unlisted); the live connection that was not planned stays ESTABLISHED.
#[test]
fn shutdowns_are_verified_per_fd_from_one_read_of_the_tables() {
    use fdclose::plan::How;
    let (mut fx, pid) = start(false, &[]);
    let before = inodes(pid);
    let surg: Vec<Surgery> = (FIRST..=LAST)
        .filter(|&fd| fd != KEEP)
        .map(|fd| Surgery {
            fd,
            expect_ino: before[&fd],
            op: Op::Shutdown(How::Wr),
        })
        .collect();
    let (_d, mut j) = journal();
    let out = engine::operate(pid, &surg, &EngineOptions::default(), &mut j).unwrap();
    assert!(out.iter().all(done_verified), "{out:?}");
    let close_wait = support::tcp_inodes_in_state(pid, "08");
    for s in &surg {
        assert!(
            !close_wait.contains(&s.expect_ino),
            "fd {} left CLOSE_WAIT",
            s.fd
        );
    }
    assert!(support::tcp_inodes_in_state(pid, "01").contains(&before[&KEEP]));
    // Shutdown keeps every fd open.
    assert_eq!(inodes(pid), before);
    assert_eq!(fx.ask(&format!("live {KEEP}"), "LIVE"), format!("{KEEP} 0"));
}
