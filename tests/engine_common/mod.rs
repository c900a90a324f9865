//! Engine-specific helpers shared by the engine_* live tests: run `engine::operate` with a journal
//! in a temp dir and a deadline, so a hung engine fails the test instead of hanging it.
#![allow(dead_code)]

use fdclose::engine::{self, EngineOptions, Op, Surgery};
use fdclose::journal::Journal;
use fdclose::plan::Outcome;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// How long one `operate` call may take before the test calls the engine hung.
pub const OPERATE_LIMIT: Duration = Duration::from_secs(30);

pub type OperateResult = Result<Vec<Outcome>, String>;

/// Run `operate` on a thread with a deadline. Returns the engine's answer (errors as text) and the
/// journal path. Panics if the engine does not answer within `limit`.
pub fn operate_within(
    pid: i32,
    surgeries: Vec<Surgery>,
    opts: EngineOptions,
    limit: Duration,
) -> (OperateResult, PathBuf) {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("engine-journals");
    let journal_path = dir.join(format!(
        "{}-{pid}-{}.jsonl",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_file(&journal_path);
    let jp = journal_path.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut journal = Journal::open(Some(jp.as_path())).expect("open journal");
        let r = engine::operate(pid, &surgeries, &opts, &mut journal).map_err(|e| e.to_string());
        let _ = tx.send(r);
    });
    match rx.recv_timeout(limit) {
        Ok(r) => (r, journal_path),
        Err(_) => panic!("engine::operate on pid {pid} did not return within {limit:?}"),
    }
}

/// `operate` with default options and the standard deadline; panics on an engine error.
pub fn operate_ok(pid: i32, surgeries: Vec<Surgery>) -> Vec<Outcome> {
    let n = surgeries.len();
    let (r, _) = operate_within(pid, surgeries, EngineOptions::default(), OPERATE_LIMIT);
    let outcomes = r.unwrap_or_else(|e| panic!("engine::operate on pid {pid} failed: {e}"));
    assert_eq!(outcomes.len(), n, "one outcome per surgery");
    outcomes
}

pub fn close(fd: i32, ino: u64) -> Surgery {
    Surgery {
        fd,
        expect_ino: ino,
        op: Op::Close,
    }
}

pub fn surgeries(fds: &[(i32, u64)], op: impl Fn() -> Op) -> Vec<Surgery> {
    fds.iter()
        .map(|&(fd, ino)| Surgery {
            fd,
            expect_ino: ino,
            op: op(),
        })
        .collect()
}

pub fn assert_all_done(outcomes: &[Outcome]) {
    for (i, o) in outcomes.iter().enumerate() {
        assert!(o.is_done(), "surgery #{i} not done: {o:?}");
    }
}

/// Send `sig` to `pid`; true when kill(2) accepted it.
pub fn send_signal(pid: i32, sig: i32) -> bool {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    unsafe { libc::kill(pid, sig) == 0 }
}
