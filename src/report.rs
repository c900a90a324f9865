//! report: table, summary and JSON Lines for matches, plans and results.
//!
//! Pure formatting: values in, `String` out. `main` decides where the text goes.

use crate::model::{unmap, Match, SockState, SocketEntry};
use crate::plan::{Action, Outcome, Plan};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;

/// Column alignment.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// Aligned columns separated by two spaces; the last column is not padded.
fn render_table(headers: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = headers.iter().map(|(h, _)| h.len()).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let pad = width[i] - cell.chars().count();
            let last = i + 1 == cells.len();
            match headers[i].1 {
                Align::Right => {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(cell);
                }
                Align::Left => {
                    l.push_str(cell);
                    if !last {
                        l.push_str(&" ".repeat(pad));
                    }
                }
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.iter().map(|(h, _)| *h).collect(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// Milliseconds as an operator reads them: `850ms`, `42s`, `5m3s`, `2h4m`, `3d2h`.
pub fn fmt_idle(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn fmt_addr(a: Option<SocketAddr>) -> String {
    match a {
        None => "*".into(),
        Some(a) => {
            let a = unmap(a);
            if a.ip().is_unspecified() && a.port() == 0 {
                "*".into()
            } else if a.ip().is_unspecified() {
                format!("*:{}", a.port())
            } else {
                a.to_string()
            }
        }
    }
}

fn fmt_fd(fd: Option<i32>) -> String {
    fd.map_or("-".into(), |f| f.to_string())
}

/// The cells of one match, in table order from PROTO to EPOLL.
struct Cells {
    proto: String,
    state: String,
    local: String,
    peer: String,
    recv_q: String,
    send_q: String,
    idle: String,
    epoll: String,
}

fn cells(m: &Match) -> Cells {
    let epoll = if m.epoll.is_empty() {
        "-".into()
    } else {
        m.epoll
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    match &m.socket {
        Some(s) => {
            let (local, peer) = match (&s.unix_path, s.local, s.peer) {
                (Some(path), None, None) => (path.clone(), "*".into()),
                (None, None, None) => ("*".into(), "*".into()),
                (_, l, p) => (fmt_addr(l), fmt_addr(p)),
            };
            Cells {
                proto: s.proto.to_string(),
                state: s.state.to_string(),
                local,
                peer,
                recv_q: s.recv_q.to_string(),
                send_q: s.send_q.to_string(),
                idle: s.idle_ms.map_or("-".into(), fmt_idle),
                epoll,
            }
        }
        // An fd selected by --fd that is not a socket: show what it points at.
        None => Cells {
            proto: "-".into(),
            state: "-".into(),
            local: m.target.clone(),
            peer: "-".into(),
            recv_q: "-".into(),
            send_q: "-".into(),
            idle: "-".into(),
            epoll,
        },
    }
}

const SOCKET_HEADERS: [(&str, Align); 11] = [
    ("PID", Align::Right),
    ("COMM", Align::Left),
    ("FD", Align::Right),
    ("PROTO", Align::Left),
    ("STATE", Align::Left),
    ("LOCAL", Align::Left),
    ("PEER", Align::Left),
    ("RECV-Q", Align::Right),
    ("SEND-Q", Align::Right),
    ("IDLE", Align::Right),
    ("EPOLL", Align::Left),
];

/// The default table: one row per matched fd (or orphan socket).
pub fn table(matches: &[Match]) -> String {
    let rows: Vec<Vec<String>> = matches
        .iter()
        .map(|m| {
            let c = cells(m);
            vec![
                m.pid.to_string(),
                m.comm.clone(),
                fmt_fd(m.fd),
                c.proto,
                c.state,
                c.local,
                c.peer,
                c.recv_q,
                c.send_q,
                c.idle,
                c.epoll,
            ]
        })
        .collect();
    let (headers, rows) = with_mem_column(&SOCKET_HEADERS, rows, matches);
    render_table(&headers, &rows)
}

/// Counts and queue bytes over a set of matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Matches that are sockets.
    pub sockets: usize,
    /// Matches that are other kinds of fd (selected by --fd).
    pub other_fds: usize,
    pub processes: usize,
    /// Matches no process holds (orphans: pid 0, no fd).
    pub orphans: usize,
    pub recv_q: u64,
    pub send_q: u64,
}

pub fn totals(matches: &[Match]) -> Totals {
    let mut t = Totals::default();
    let mut pids = BTreeSet::new();
    for m in matches {
        if m.fd.is_none() && m.pid == 0 {
            t.orphans += 1;
        } else {
            pids.insert(m.pid);
        }
        match &m.socket {
            Some(s) => {
                t.sockets += 1;
                let (rq, sq) = queued_bytes(s);
                t.recv_q += rq;
                t.send_q += sq;
            }
            None => t.other_fds += 1,
        }
    }
    t.processes = pids.len();
    t
}

/// (recv-q, send-q) bytes a socket holds. A listener's queues are not bytes: the kernel reports its
/// accept-queue length and backlog there (as `ss` shows them), so they add nothing to byte totals.
fn queued_bytes(s: &SocketEntry) -> (u64, u64) {
    if s.state == SockState::Listening {
        (0, 0)
    } else {
        (s.recv_q, s.send_q)
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Where the matches are: "in 2 processes", "held by no process", or both.
fn where_words(t: &Totals) -> String {
    let procs = format!("in {}", plural(t.processes, "process", "processes"));
    match (t.processes, t.orphans) {
        (_, 0) => procs,
        (0, _) => "held by no process".to_string(),
        (_, o) => format!("{procs} ({o} held by no process)"),
    }
}

/// One line under the table: how many, where, and the bytes stuck in queues.
pub fn total_line(matches: &[Match]) -> String {
    let t = totals(matches);
    let mut s = plural(t.sockets, "socket", "sockets");
    if t.other_fds > 0 {
        s.push_str(&format!(
            " and {}",
            plural(t.other_fds, "other fd", "other fds")
        ));
    }
    format!(
        "{s} {}; recv-q {} bytes, send-q {} bytes{}",
        where_words(&t),
        t.recv_q,
        t.send_q,
        orphan_mem_words(matches)
    )
}

#[derive(Default, Clone, Copy)]
struct Group {
    count: usize,
    recv_q: u64,
    send_q: u64,
}

impl Group {
    fn add(&mut self, m: &Match) {
        self.count += 1;
        if let Some(s) = &m.socket {
            self.recv_q += queued_bytes(s).0;
            self.send_q += queued_bytes(s).1;
        }
    }
}

/// Biggest groups first (count, then bytes), ties by key.
fn ranked<K: Ord + Clone>(g: BTreeMap<K, Group>) -> Vec<(K, Group)> {
    let mut v: Vec<(K, Group)> = g.into_iter().collect();
    v.sort_by(|(ka, a), (kb, b)| {
        b.count
            .cmp(&a.count)
            .then((b.recv_q + b.send_q).cmp(&(a.recv_q + a.send_q)))
            .then(ka.cmp(kb))
    });
    v
}

/// How many peers `--summary` lists (the rest are counted in one line).
pub const TOP_PEERS: usize = 20;

/// `--summary`: counts and queue bytes by state, by peer address (top 20) and by process.
pub fn summary(matches: &[Match]) -> String {
    let mut by_state: BTreeMap<String, Group> = BTreeMap::new();
    let mut by_peer: BTreeMap<String, Group> = BTreeMap::new();
    let mut by_proc: BTreeMap<(i32, String), Group> = BTreeMap::new();
    for m in matches {
        let state = m
            .socket
            .as_ref()
            .map_or("-".into(), |s| s.state.to_string());
        by_state.entry(state).or_default().add(m);
        let peer = match m.socket.as_ref().and_then(|s| s.peer_display()) {
            Some(p) if !p.ip().is_unspecified() => p.ip().to_string(),
            _ => "*".into(),
        };
        by_peer.entry(peer).or_default().add(m);
        by_proc.entry((m.pid, m.comm.clone())).or_default().add(m);
    }
    let num = |g: &Group| {
        vec![
            g.count.to_string(),
            g.recv_q.to_string(),
            g.send_q.to_string(),
        ]
    };
    let mut out = String::new();

    let rows: Vec<Vec<String>> = ranked(by_state)
        .into_iter()
        .map(|(k, g)| [vec![k], num(&g)].concat())
        .collect();
    out.push_str("By state:\n");
    out.push_str(&indent(&render_table(
        &[
            ("STATE", Align::Left),
            ("SOCKETS", Align::Right),
            ("RECV-Q", Align::Right),
            ("SEND-Q", Align::Right),
        ],
        &rows,
    )));

    let peers = ranked(by_peer);
    let n_peers = peers.len();
    let rows: Vec<Vec<String>> = peers
        .iter()
        .take(TOP_PEERS)
        .map(|(k, g)| [vec![k.clone()], num(g)].concat())
        .collect();
    if n_peers > TOP_PEERS {
        let _ = writeln!(out, "\nBy peer (top {TOP_PEERS} of {n_peers}):");
    } else {
        out.push_str("\nBy peer:\n");
    }
    out.push_str(&indent(&render_table(
        &[
            ("PEER", Align::Left),
            ("SOCKETS", Align::Right),
            ("RECV-Q", Align::Right),
            ("SEND-Q", Align::Right),
        ],
        &rows,
    )));

    let rows: Vec<Vec<String>> = ranked(by_proc)
        .into_iter()
        .map(|((pid, comm), g)| [vec![pid.to_string(), comm], num(&g)].concat())
        .collect();
    out.push_str("\nBy process:\n");
    out.push_str(&indent(&render_table(
        &[
            ("PID", Align::Right),
            ("COMM", Align::Left),
            ("SOCKETS", Align::Right),
            ("RECV-Q", Align::Right),
            ("SEND-Q", Align::Right),
        ],
        &rows,
    )));
    out.push_str(&orphan_summary(matches));
    let _ = writeln!(out, "\n{}", total_line(matches));
    out
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

/// One JSON object for a match: `type` "socket" (or "fd" for a non-socket fd selected by --fd).
pub fn match_json(m: &Match) -> Value {
    let mut o = Map::new();
    let ty = if m.socket.is_some() { "socket" } else { "fd" };
    o.insert("type".into(), json!(ty));
    o.insert("pid".into(), json!(m.pid));
    o.insert("comm".into(), json!(m.comm));
    o.insert("fd".into(), json!(m.fd));
    match &m.socket {
        Some(s) => {
            o.insert("inode".into(), json!(s.inode));
            // Names exactly as --proto and --state accept them, so output feeds back as input.
            o.insert("proto".into(), json!(s.proto.name()));
            o.insert("state".into(), json!(s.state.name()));
            o.insert(
                "local".into(),
                json!(s.local_display().map(|a| a.to_string())),
            );
            o.insert(
                "peer".into(),
                json!(s.peer_display().map(|a| a.to_string())),
            );
            if let Some(p) = &s.unix_path {
                o.insert("unix_path".into(), json!(p));
            }
            o.insert("recv_q".into(), json!(s.recv_q));
            o.insert("send_q".into(), json!(s.send_q));
            if let Some(ms) = s.idle_ms {
                o.insert("idle_ms".into(), json!(ms));
            }
            if let Some(mem) = &s.mem {
                o.insert("mem".into(), json!(mem));
            }
        }
        None => {
            o.insert("target".into(), json!(m.target));
        }
    }
    if !m.epoll.is_empty() {
        o.insert("epoll".into(), json!(m.epoll));
    }
    Value::Object(o)
}

/// The closing `{"type":"summary"}` object.
pub fn summary_json(matches: &[Match], unreadable: usize) -> Value {
    let t = totals(matches);
    let mut by_state: BTreeMap<&'static str, usize> = BTreeMap::new();
    for s in matches.iter().filter_map(|m| m.socket.as_ref()) {
        *by_state.entry(s.state.name()).or_default() += 1;
    }
    let mut v = json!({
        "type": "summary",
        "sockets": t.sockets,
        "other_fds": t.other_fds,
        "processes": t.processes,
        "recv_q": t.recv_q,
        "send_q": t.send_q,
        "by_state": by_state,
        "unreadable": unreadable,
    });
    add_orphans_json(&mut v, matches);
    v
}

/// JSON Lines: one object per match, then the summary object.
pub fn json_lines(matches: &[Match], unreadable: usize) -> String {
    let mut out = String::new();
    for m in matches {
        out.push_str(&match_json(m).to_string());
        out.push('\n');
    }
    out.push_str(&summary_json(matches, unreadable).to_string());
    out.push('\n');
    out
}

/// The action in words, as the plan header says it.
pub fn action_words(a: Action) -> String {
    match a {
        Action::Close => "close".into(),
        Action::Shutdown { how } => format!("shut down ({})", how_name(how)),
        Action::Replace => "replace with a dead socket".into(),
        Action::Destroy => "destroy (SOCK_DESTROY)".into(),
    }
}

fn how_name(h: crate::plan::How) -> &'static str {
    match h {
        crate::plan::How::Rd => "rd",
        crate::plan::How::Wr => "wr",
        crate::plan::How::Rdwr => "rdwr",
    }
}

/// What will be done, before anything is: header, the table of steps, and what `--max` left out.
pub fn plan_text(plan: &Plan) -> String {
    let t = totals(&plan.steps);
    let what = match (t.sockets, t.other_fds) {
        (s, 0) => plural(s, "socket", "sockets"),
        (0, o) => plural(o, "fd", "fds"),
        (s, o) => format!(
            "{} and {}",
            plural(s, "socket", "sockets"),
            plural(o, "other fd", "other fds")
        ),
    };
    let mut out = format!(
        "Plan: {} {what} {}:\n",
        action_words(plan.action),
        where_words(&t)
    );
    out.push_str(&table(&plan.steps));
    out.push_str(&total_line(&plan.steps));
    out.push('\n');
    if plan.left_out > 0 {
        let _ = writeln!(
            out,
            "{} more matched but are left out by --max.",
            plan.left_out
        );
    }
    out
}

/// The `{"type":"plan"}` object.
pub fn plan_json(plan: &Plan) -> Value {
    let mut v = json!({
        "type": "plan",
        "action": plan.action.name(),
        "steps": plan.steps.len(),
        "left_out": plan.left_out,
    });
    if let Action::Shutdown { how } = plan.action {
        v["how"] = json!(how_name(how));
    }
    v
}

/// A plan as JSON Lines: the steps, the plan object, the summary.
pub fn plan_json_lines(plan: &Plan, unreadable: usize) -> String {
    let mut out = String::new();
    for m in &plan.steps {
        out.push_str(&match_json(m).to_string());
        out.push('\n');
    }
    out.push_str(&plan_json(plan).to_string());
    out.push('\n');
    out.push_str(&summary_json(&plan.steps, unreadable).to_string());
    out.push('\n');
    out
}

/// Short name of an outcome: done, changed, gone, failed.
pub fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Done { .. } => "done",
        Outcome::Changed { .. } => "changed",
        Outcome::Gone { .. } => "gone",
        Outcome::Failed { .. } => "failed",
    }
}

/// Why, in words, for the DETAIL column and the JSON `reason`.
pub fn outcome_reason(o: &Outcome) -> String {
    match o {
        Outcome::Done { verified, note } => {
            let v = if *verified {
                "verified"
            } else {
                "not verified"
            };
            match note {
                Some(n) => format!("{v}; {n}"),
                None => v.into(),
            }
        }
        Outcome::Changed { now } => format!("fd now holds {now}; left alone"),
        Outcome::Gone { what } => format!("{what} already gone"),
        Outcome::Failed { error, errno } => match errno {
            Some(e) => format!("{error} (errno {e})"),
            None => error.clone(),
        },
    }
}

/// Results, one row per step, then a count per outcome.
pub fn results_text(action: Action, results: &[(&Match, &Outcome)]) -> String {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(m, o)| {
            let c = cells(m);
            vec![
                m.pid.to_string(),
                fmt_fd(m.fd),
                c.proto,
                c.state,
                c.peer,
                outcome_name(o).into(),
                outcome_reason(o),
            ]
        })
        .collect();
    let mut out = format!("Results ({}):\n", action_words(action));
    out.push_str(&render_table(
        &[
            ("PID", Align::Right),
            ("FD", Align::Right),
            ("PROTO", Align::Left),
            ("STATE", Align::Left),
            ("PEER", Align::Left),
            ("OUTCOME", Align::Left),
            ("DETAIL", Align::Left),
        ],
        &rows,
    ));
    out.push_str(&results_count_line(results.iter().map(|(_, o)| *o)));
    out.push('\n');
    out
}

/// How many steps ended done, gone, changed, failed (in that order).
fn outcome_counts<'a>(outcomes: impl Iterator<Item = &'a Outcome>) -> [usize; 4] {
    let mut n = [0usize; 4];
    for o in outcomes {
        let i = match o {
            Outcome::Done { .. } => 0,
            Outcome::Gone { .. } => 1,
            Outcome::Changed { .. } => 2,
            Outcome::Failed { .. } => 3,
        };
        n[i] += 1;
    }
    n
}

/// `3 done, 1 gone, 0 changed, 1 failed`.
pub fn results_count_line<'a>(outcomes: impl Iterator<Item = &'a Outcome>) -> String {
    let n = outcome_counts(outcomes);
    format!(
        "{} done, {} gone, {} changed, {} failed",
        n[0], n[1], n[2], n[3]
    )
}

/// One `{"type":"result"}` object.
pub fn result_json(action: Action, m: &Match, o: &Outcome) -> Value {
    let mut v = json!({
        "type": "result",
        "action": action.name(),
        "pid": m.pid,
        "comm": m.comm,
        "fd": m.fd,
        "inode": m.inode(),
        "proto": m.socket.as_ref().map(|s| s.proto.name()),
        "state": m.socket.as_ref().map(|s| s.state.name()),
        "peer": m.socket.as_ref().and_then(|s| s.peer_display()).map(|a| a.to_string()),
        "outcome": outcome_name(o),
        "reason": outcome_reason(o),
    });
    match o {
        Outcome::Done { verified, note } => {
            v["verified"] = json!(verified);
            if let Some(n) = note {
                v["note"] = json!(n);
            }
        }
        Outcome::Failed { errno: Some(e), .. } => v["errno"] = json!(e),
        _ => {}
    }
    v
}

/// Results as JSON Lines, closed by a `{"type":"outcomes"}` object with the count per outcome.
pub fn results_json_lines(action: Action, results: &[(&Match, &Outcome)]) -> String {
    let mut out: String = results
        .iter()
        .map(|(m, o)| format!("{}\n", result_json(action, m, o)))
        .collect();
    let n = outcome_counts(results.iter().map(|(_, o)| *o));
    let total = json!({
        "type": "outcomes",
        "action": action.name(),
        "done": n[0],
        "gone": n[1],
        "changed": n[2],
        "failed": n[3],
    });
    out.push_str(&format!("{total}\n"));
    out
}

/// Whether a match is a listening socket (acting on one is an outage unless asked for by name).
pub fn is_listening(m: &Match) -> bool {
    m.socket
        .as_ref()
        .is_some_and(|s| s.state == SockState::Listening)
}

// ---- orphans: what sockets owned by no fd hold (orphans helper) -------------------------------
//
// Orphans (FIN-WAIT-1 behind a zero window...) matter for the memory they pin, so wherever they
// are listed the report adds socket memory (skmem: rmem + wmem_queued + fwd + opt, as `ss -m`):
// a MEM column in the table, the memory in the total line, an "Orphans" section in --summary
// (per state and per peer) and an `orphans` object in the JSON summary. Listings without orphans
// print exactly as before.

/// A socket no process holds (pid 0, no fd).
fn is_orphan(m: &Match) -> bool {
    m.fd.is_none() && m.pid == 0 && m.socket.is_some()
}

fn mem_bytes(m: &Match) -> Option<u64> {
    m.socket.as_ref()?.mem.map(|x| x.total())
}

/// `table()`'s headers and rows with MEM after SEND-Q when any row is an orphan.
fn with_mem_column(
    headers: &[(&'static str, Align)],
    mut rows: Vec<Vec<String>>,
    matches: &[Match],
) -> (Vec<(&'static str, Align)>, Vec<Vec<String>>) {
    let mut headers = headers.to_vec();
    if !matches.iter().any(is_orphan) {
        return (headers, rows);
    }
    let at = headers
        .iter()
        .position(|(h, _)| *h == "SEND-Q")
        .map_or(headers.len(), |i| i + 1);
    headers.insert(at, ("MEM", Align::Right));
    for (row, m) in rows.iter_mut().zip(matches) {
        row.insert(at, mem_bytes(m).map_or("-".into(), |b| b.to_string()));
    }
    (headers, rows)
}

/// `, socket memory N bytes` for the total line when orphans are listed.
fn orphan_mem_words(matches: &[Match]) -> String {
    if !matches.iter().any(is_orphan) {
        return String::new();
    }
    let mem: u64 = matches.iter().filter_map(mem_bytes).sum();
    format!(", socket memory {mem} bytes")
}

#[derive(Default, Clone, Copy, serde::Serialize)]
struct OrphanGroup {
    sockets: usize,
    recv_q: u64,
    send_q: u64,
    mem: u64,
}

impl OrphanGroup {
    fn add(&mut self, m: &Match) {
        self.sockets += 1;
        if let Some(s) = &m.socket {
            self.recv_q += s.recv_q;
            self.send_q += s.send_q;
        }
        self.mem += mem_bytes(m).unwrap_or(0);
    }
}

/// Orphan groups keyed by state name or peer address.
type OrphanGroups = BTreeMap<String, OrphanGroup>;

/// Orphans grouped by state and by peer address, with their totals.
fn orphan_groups(matches: &[Match]) -> Option<(OrphanGroup, OrphanGroups, OrphanGroups)> {
    let mut total = OrphanGroup::default();
    let mut by_state = OrphanGroups::new();
    let mut by_peer = OrphanGroups::new();
    for m in matches.iter().filter(|m| is_orphan(m)) {
        let s = m.socket.as_ref().expect("orphans are sockets");
        total.add(m);
        by_state
            .entry(s.state.name().to_string())
            .or_default()
            .add(m);
        let peer = s.peer_display().map_or("*".into(), |p| p.ip().to_string());
        by_peer.entry(peer).or_default().add(m);
    }
    (total.sockets > 0).then_some((total, by_state, by_peer))
}

/// The `--summary` section on orphans; empty when there are none.
fn orphan_summary(matches: &[Match]) -> String {
    let Some((total, by_state, by_peer)) = orphan_groups(matches) else {
        return String::new();
    };
    let rows = |g: OrphanGroups| -> Vec<Vec<String>> {
        let mut v: Vec<(String, OrphanGroup)> = g.into_iter().collect();
        v.sort_by(|(ka, a), (kb, b)| b.mem.cmp(&a.mem).then(ka.cmp(kb)));
        v.into_iter()
            .map(|(k, g)| {
                vec![
                    k,
                    g.sockets.to_string(),
                    g.recv_q.to_string(),
                    g.send_q.to_string(),
                    g.mem.to_string(),
                ]
            })
            .collect()
    };
    let cols = |first: &'static str| {
        [
            (first, Align::Left),
            ("SOCKETS", Align::Right),
            ("RECV-Q", Align::Right),
            ("SEND-Q", Align::Right),
            ("MEM", Align::Right),
        ]
    };
    let mut out = format!(
        "\nOrphans (owned by no fd; only --action destroy frees them): {}, send-q {} bytes, \
         socket memory {} bytes\n",
        plural(total.sockets, "socket", "sockets"),
        total.send_q,
        total.mem
    );
    out.push_str("  By state:\n");
    out.push_str(&indent(&indent(&render_table(
        &cols("STATE"),
        &rows(by_state),
    ))));
    out.push_str("  By peer:\n");
    out.push_str(&indent(&indent(&render_table(
        &cols("PEER"),
        &rows(by_peer),
    ))));
    out
}

/// `"orphans": {sockets, recv_q, send_q, mem, by_state: {...}, by_peer: {...}}` in the JSON
/// summary, and `"mem"` (all listed sockets) when orphans are listed.
fn add_orphans_json(v: &mut Value, matches: &[Match]) {
    let Some((total, by_state, by_peer)) = orphan_groups(matches) else {
        return;
    };
    v["mem"] = json!(matches.iter().filter_map(mem_bytes).sum::<u64>());
    v["orphans"] = json!({
        "sockets": total.sockets,
        "recv_q": total.recv_q,
        "send_q": total.send_q,
        "mem": total.mem,
        "by_state": by_state,
        "by_peer": by_peer,
    });
}

#[cfg(test)]
mod orphan_tests {
    use super::*;
    use crate::model::{MemInfo, Proto, SocketEntry};

    fn orphan(peer: &str, sq: u64, mem: u32) -> Match {
        let mut s = SocketEntry::closed_fd(0, Proto::Tcp);
        s.state = SockState::FinWait1;
        s.local = Some("127.0.0.1:8080".parse().unwrap());
        s.peer = Some(peer.parse().unwrap());
        s.send_q = sq;
        s.mem = Some(MemInfo {
            wmem_queued: mem,
            fwd_alloc: 100,
            ..MemInfo::default()
        });
        Match {
            pid: 0,
            comm: "-".into(),
            fd: None,
            ino: 0,
            target: "-".into(),
            socket: Some(s),
            epoll: vec![],
        }
    }

    #[test]
    fn orphans_show_their_memory_in_table_summary_and_json() {
        let v = vec![
            orphan("127.0.0.2:1000", 500, 4000),
            orphan("127.0.0.2:1001", 700, 6000),
            orphan("127.0.0.3:1000", 1, 900),
        ];
        let t = table(&v);
        let head: Vec<&str> = t.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(head[7..10], ["RECV-Q", "SEND-Q", "MEM"]);
        let row: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[9], "4100");
        assert!(total_line(&v).ends_with("send-q 1201 bytes, socket memory 11200 bytes"));
        assert!(total_line(&v).starts_with("3 sockets held by no process;"));
        let plan = Plan::new(Action::Destroy, v.clone(), None);
        assert!(plan_text(&plan)
            .starts_with("Plan: destroy (SOCK_DESTROY) 3 sockets held by no process:\n"));

        let s = summary(&v);
        assert!(s.contains("Orphans (owned by no fd"), "{s}");
        let peer2 = s.lines().find(|l| {
            l.trim_start().starts_with("127.0.0.2 ") && l.split_whitespace().count() == 5
        });
        assert_eq!(
            peer2.unwrap().split_whitespace().collect::<Vec<_>>(),
            ["127.0.0.2", "2", "0", "1200", "10200"]
        );

        let j = summary_json(&v, 0);
        assert_eq!(j["send_q"], 1201);
        assert_eq!(j["mem"], 11200);
        assert_eq!(j["orphans"]["sockets"], 3);
        assert_eq!(j["orphans"]["by_state"]["fin-wait-1"]["mem"], 11200);
        assert_eq!(j["orphans"]["by_peer"]["127.0.0.3"]["send_q"], 1);
    }

    #[test]
    fn listings_without_orphans_are_unchanged() {
        let mut m = orphan("127.0.0.2:1000", 5, 10);
        m.pid = 42;
        m.fd = Some(7);
        let t = table(std::slice::from_ref(&m));
        assert!(!t.lines().next().unwrap().contains("MEM"));
        assert!(!summary(std::slice::from_ref(&m)).contains("Orphans"));
        assert!(summary_json(std::slice::from_ref(&m), 0)
            .get("orphans")
            .is_none());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MemInfo, Proto, SocketEntry};
    use crate::plan::How;

    fn sock(
        pid: i32,
        fd: i32,
        state: SockState,
        local: &str,
        peer: &str,
        rq: u64,
        sq: u64,
    ) -> Match {
        let mut s = SocketEntry::closed_fd(1000 + fd as u64, Proto::Tcp);
        s.state = state;
        s.local = Some(local.parse().unwrap());
        s.peer = Some(peer.parse().unwrap());
        s.recv_q = rq;
        s.send_q = sq;
        Match {
            pid,
            comm: if pid == 4242 {
                "java".into()
            } else {
                "nginx".into()
            },
            fd: Some(fd),
            ino: s.inode,
            target: format!("socket:[{}]", s.inode),
            socket: Some(s),
            epoll: vec![],
        }
    }

    fn sample() -> Vec<Match> {
        let mut a = sock(
            4242,
            17,
            SockState::CloseWait,
            "[::ffff:10.0.0.1]:8080",
            "[::ffff:10.0.0.5]:51234",
            12,
            0,
        );
        a.epoll = vec![9];
        a.socket.as_mut().unwrap().idle_ms = Some(305_000);
        let b = sock(
            4242,
            18,
            SockState::Established,
            "10.0.0.1:8080",
            "10.0.0.6:40000",
            0,
            3000,
        );
        let c = sock(
            77,
            5,
            SockState::CloseWait,
            "[::1]:443",
            "[::1]:50000",
            0,
            0,
        );
        vec![a, b, c]
    }

    #[test]
    fn idle_reads_like_a_person_writes_it() {
        assert_eq!(fmt_idle(850), "850ms");
        assert_eq!(fmt_idle(42_000), "42s");
        assert_eq!(fmt_idle(303_000), "5m3s");
        assert_eq!(fmt_idle(2 * 3_600_000 + 4 * 60_000), "2h4m");
        assert_eq!(fmt_idle(3 * 86_400_000 + 2 * 3_600_000), "3d2h");
    }

    #[test]
    fn table_is_aligned_and_unmaps_ipv4() {
        let t = table(&sample());
        let expect = [
            " PID  COMM   FD  PROTO  STATE        LOCAL          PEER            RECV-Q  SEND-Q  IDLE  EPOLL",
            "4242  java   17  tcp    close-wait   10.0.0.1:8080  10.0.0.5:51234      12       0  5m5s  9",
            "4242  java   18  tcp    established  10.0.0.1:8080  10.0.0.6:40000       0    3000     -  -",
            "  77  nginx   5  tcp    close-wait   [::1]:443      [::1]:50000          0       0     -  -",
            "",
        ]
        .join("\n");
        assert_eq!(t, expect);
        assert_eq!(
            total_line(&sample()),
            "3 sockets in 2 processes; recv-q 12 bytes, send-q 3000 bytes"
        );
    }

    #[test]
    fn non_sockets_unix_and_listeners_render() {
        let mut u = SocketEntry::closed_fd(5, Proto::Unix);
        u.state = SockState::Listening;
        u.unix_path = Some("/run/app.sock".into());
        let m = Match {
            pid: 1,
            comm: "app".into(),
            fd: Some(3),
            ino: 5,
            target: "socket:[5]".into(),
            socket: Some(u),
            epoll: vec![4, 6],
        };
        let f = Match {
            pid: 1,
            comm: "app".into(),
            fd: Some(7),
            ino: 99,
            target: "/var/log/app.log".into(),
            socket: None,
            epoll: vec![],
        };
        let l = sock(
            1,
            8,
            SockState::Listening,
            "0.0.0.0:80",
            "0.0.0.0:0",
            0,
            4096,
        );
        let t = table(&[m.clone(), f.clone(), l.clone()]);
        assert!(t.contains("unix   listening  /run/app.sock     *"), "{t}");
        assert!(t.contains("4,6"), "{t}");
        assert!(t.contains("-      -          /var/log/app.log  -"), "{t}");
        assert!(t.contains("*:80"), "{t}");
        assert!(is_listening(&l) && !is_listening(&f));
        assert_eq!(
            total_line(&[m, f, l]),
            "2 sockets and 1 other fd in 1 process; recv-q 0 bytes, send-q 0 bytes"
        );
    }

    #[test]
    fn summary_groups_by_state_peer_and_process() {
        let mut v = sample();
        v.push(sock(
            4242,
            19,
            SockState::CloseWait,
            "10.0.0.1:8080",
            "10.0.0.5:51300",
            4,
            0,
        ));
        let s = summary(&v);
        let expect = "\
By state:
  STATE        SOCKETS  RECV-Q  SEND-Q
  close-wait         3      16       0
  established        1       0    3000

By peer:
  PEER      SOCKETS  RECV-Q  SEND-Q
  10.0.0.5        2      16       0
  10.0.0.6        1       0    3000
  ::1             1       0       0

By process:
   PID  COMM   SOCKETS  RECV-Q  SEND-Q
  4242  java         3      16    3000
    77  nginx        1       0       0

4 sockets in 2 processes; recv-q 16 bytes, send-q 3000 bytes
";
        assert_eq!(s, expect);
    }

    #[test]
    fn summary_lists_top_peers_only() {
        let v: Vec<Match> = (0..25)
            .map(|i| {
                sock(
                    1,
                    i,
                    SockState::CloseWait,
                    "127.0.0.1:80",
                    &format!("10.0.1.{}:1000", i),
                    0,
                    0,
                )
            })
            .collect();
        let s = summary(&v);
        assert!(s.contains("By peer (top 20 of 25):"), "{s}");
        let peer_rows = s
            .lines()
            .filter(|l| l.trim_start().starts_with("10.0.1."))
            .count();
        assert_eq!(peer_rows, 20);
    }

    #[test]
    fn json_lines_carry_every_field_and_a_summary() {
        let mut v = sample();
        v[0].socket.as_mut().unwrap().mem = Some(MemInfo {
            rmem_alloc: 100,
            ..Default::default()
        });
        let out = json_lines(&v, 2);
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        let a = &lines[0];
        assert_eq!(a["type"], "socket");
        assert_eq!(a["pid"], 4242);
        assert_eq!(a["comm"], "java");
        assert_eq!(a["fd"], 17);
        assert_eq!(a["inode"], 1017);
        assert_eq!(a["proto"], "tcp");
        assert_eq!(a["state"], "close-wait");
        assert_eq!(lines[1]["state"], "established");
        assert_eq!(a["local"], "10.0.0.1:8080");
        assert_eq!(a["peer"], "10.0.0.5:51234");
        assert_eq!(a["recv_q"], 12);
        assert_eq!(a["send_q"], 0);
        assert_eq!(a["idle_ms"], 305_000);
        assert_eq!(a["epoll"], json!([9]));
        assert_eq!(a["mem"]["rmem_alloc"], 100);
        assert!(lines[1].get("idle_ms").is_none());
        let s = &lines[3];
        assert_eq!(s["type"], "summary");
        assert_eq!(s["sockets"], 3);
        assert_eq!(s["processes"], 2);
        assert_eq!(s["recv_q"], 12);
        assert_eq!(s["send_q"], 3000);
        assert_eq!(s["unreadable"], 2);
        assert_eq!(s["by_state"]["close-wait"], 2);
    }

    #[test]
    fn json_spells_states_as_the_state_flag_does() {
        for st in SockState::NAMED {
            let m = sock(1, 3, st, "127.0.0.1:1", "127.0.0.1:2", 0, 0);
            assert_eq!(match_json(&m)["state"], st.name());
            let done = Outcome::Gone { what: "x".into() };
            assert_eq!(result_json(Action::Close, &m, &done)["state"], st.name());
        }
    }

    #[test]
    fn plan_renders_in_text_and_json() {
        let p = Plan::new(Action::Shutdown { how: How::Rdwr }, sample(), Some(2));
        let t = plan_text(&p);
        assert!(
            t.starts_with("Plan: shut down (rdwr) 2 sockets in 2 processes:\n PID"),
            "{t}"
        );
        assert!(
            t.contains("1 more matched but are left out by --max."),
            "{t}"
        );
        // Plan order is by pid: the pid-77 socket comes first and the cap drops a java one.
        assert!(t.contains("\n  77  nginx"), "{t}");
        assert!(!t.contains("established"), "{t}");
        let j: Vec<Value> = plan_json_lines(&p, 0)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(j.len(), 4);
        assert_eq!(j[2]["type"], "plan");
        assert_eq!(j[2]["action"], "shutdown");
        assert_eq!(j[2]["how"], "rdwr");
        assert_eq!(j[2]["steps"], 2);
        assert_eq!(j[2]["left_out"], 1);
        assert_eq!(j[3]["type"], "summary");
    }

    #[test]
    fn results_say_what_happened_and_why() {
        let v = sample();
        let outcomes = [
            Outcome::Done {
                verified: true,
                note: None,
            },
            Outcome::Failed {
                error: "ptrace denied: the process is traced by PID 812 (strace)".into(),
                errno: Some(1),
            },
            Outcome::Changed {
                now: "socket:[999]".into(),
            },
        ];
        let pairs: Vec<(&Match, &Outcome)> = v.iter().zip(outcomes.iter()).collect();
        let t = results_text(Action::Close, &pairs);
        assert!(t.starts_with("Results (close):\n"), "{t}");
        assert!(t.contains("done     verified"), "{t}");
        assert!(
            t.contains(
                "failed   ptrace denied: the process is traced by PID 812 (strace) (errno 1)"
            ),
            "{t}"
        );
        assert!(
            t.contains("changed  fd now holds socket:[999]; left alone"),
            "{t}"
        );
        assert!(t.ends_with("1 done, 0 gone, 1 changed, 1 failed\n"), "{t}");
        let j: Vec<Value> = results_json_lines(Action::Close, &pairs)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(j[0]["type"], "result");
        assert_eq!(j[0]["outcome"], "done");
        assert_eq!(j[0]["verified"], true);
        assert_eq!(j[0]["fd"], 17);
        assert_eq!(j[0]["peer"], "10.0.0.5:51234");
        assert_eq!(j[1]["outcome"], "failed");
        assert_eq!(j[1]["errno"], 1);
        assert_eq!(j[2]["outcome"], "changed");
        assert_eq!(j.len(), 4);
        assert_eq!(
            j[3],
            json!({"type": "outcomes", "action": "close", "done": 1, "gone": 0, "changed": 1, "failed": 1})
        );
        assert_eq!(j[2]["reason"], "fd now holds socket:[999]; left alone");
    }
}
