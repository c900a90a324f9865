//! Time and print one `resolve()` call: `resolve_probe [--pid P]... [--state NAME]... [--proto P]...
//! [--orphans] [--fd N]... [-v]`. Used by integration/bench/resolve-bench.sh before the CLI exists.
use fdclose::model::{Proto, SockState};
use fdclose::resolve::{resolve, Query, Targets};
use std::time::Instant;

fn main() {
    let mut pids = Vec::new();
    let mut comms = Vec::new();
    let mut mask = 0u32;
    let mut protos = Vec::new();
    let mut include_fds = Vec::new();
    let mut orphans = false;
    let mut verbose = false;
    let mut netns = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pid" => pids.push(args.next().unwrap().parse().unwrap()),
            "--comm" => comms.push(args.next().unwrap()),
            "--state" => {
                let n = args.next().unwrap();
                if n == "all" {
                    mask = u32::MAX;
                } else {
                    let s = SockState::NAMED
                        .iter()
                        .find(|s| s.name() == n)
                        .expect("state");
                    mask |= s.kernel_bit();
                }
            }
            "--proto" => protos.push(match args.next().unwrap().as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                "unix" => Proto::Unix,
                p => panic!("proto {p}"),
            }),
            "--fd" => include_fds.push(args.next().unwrap().parse().unwrap()),
            "--netns" => netns = Some(args.next().unwrap()),
            "--orphans" => orphans = true,
            "-v" => verbose = true,
            a => panic!("unknown argument {a}"),
        }
    }
    if protos.is_empty() {
        protos.push(Proto::Tcp);
    }
    if mask == 0 {
        mask = u32::MAX;
    }
    let targets = if pids.is_empty() && comms.is_empty() {
        Targets::All
    } else {
        Targets::Listed { pids, comms }
    };
    let q = Query {
        targets,
        protos,
        state_mask: mask,
        include_fds,
        orphans,
        netns,
    };
    let t = Instant::now();
    match resolve(&q) {
        Ok(r) => {
            let el = t.elapsed();
            if verbose {
                for m in r.matches.iter().chain(&r.orphans) {
                    println!("{m:?}");
                }
                for u in &r.unreadable {
                    println!("unreadable {u:?}");
                }
            }
            println!(
                "{} matches, {} orphans, {} processes, source {}, {:.1} ms",
                r.matches.len(),
                r.orphans.len(),
                r.processes.len(),
                r.source,
                el.as_secs_f64() * 1e3
            );
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}
