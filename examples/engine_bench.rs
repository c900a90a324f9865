//! Close every CLOSE_WAIT socket of one process through the engine library, and say how long it
//! took. Used by integration/bench/engine-vs-gdb.sh until the `fdclose` command is wired.
//!
//!   cargo run --release --example engine_bench -- PID [--no-freeze] [--op close|shutdown|replace]

use fdclose::engine::{self, EngineOptions, Op, Surgery};
use fdclose::journal::Journal;
use std::collections::BTreeSet;
use std::time::Instant;

/// Inodes of TCP sockets in CLOSE_WAIT (state 08) in PID's network namespace.
fn close_wait_inodes(pid: i32) -> BTreeSet<u64> {
    let mut set = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "08" {
                set.insert(f[9].parse().unwrap_or(0));
            }
        }
    }
    set
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pid: i32 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: engine_bench PID [--no-freeze] [--op close|shutdown|replace]");
    let freeze = !args.iter().any(|a| a == "--no-freeze");
    let op = match args
        .iter()
        .position(|a| a == "--op")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
    {
        None | Some("close") => Op::Close,
        Some("shutdown") => Op::Shutdown(fdclose::plan::How::Rdwr),
        Some("replace") => Op::Replace,
        Some(other) => panic!("unknown --op {other}"),
    };

    let t0 = Instant::now();
    let inodes = close_wait_inodes(pid);
    let mut surgeries = vec![];
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read the fd table") {
        let e = e.unwrap();
        let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // The link text names the socket inode: cheaper than a stat per fd at 10,000 fds.
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue;
        };
        let ino = link
            .to_str()
            .and_then(|l| l.strip_prefix("socket:["))
            .and_then(|l| l.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(ino) = ino.filter(|i| inodes.contains(i)) {
            surgeries.push(Surgery {
                fd,
                expect_ino: ino,
                op,
            });
        }
    }
    let resolved = t0.elapsed();
    // JOURNAL=path puts the journal elsewhere (e.g. on tmpfs, to see the engine without fsync cost).
    let journal_path = std::env::var_os("JOURNAL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("engine-bench-{pid}.jsonl")));
    let mut journal = Journal::open(Some(&journal_path)).expect("open journal");
    let opts = EngineOptions {
        freeze,
        ..EngineOptions::default()
    };
    let t1 = Instant::now();
    let outcomes = engine::operate(pid, &surgeries, &opts, &mut journal).expect("operate");
    let operated = t1.elapsed();
    let done = outcomes.iter().filter(|o| o.is_done()).count();
    println!(
        "engine_bench pid={pid} fds={} done={done} resolve_ms={:.1} operate_ms={:.1} total_ms={:.1}",
        surgeries.len(),
        resolved.as_secs_f64() * 1e3,
        operated.as_secs_f64() * 1e3,
        t0.elapsed().as_secs_f64() * 1e3
    );
    let _ = std::fs::remove_file(journal_path);
}
