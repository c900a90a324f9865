//! resolve: sockets → inodes → fds of the target processes, in their own network namespaces.
//!
//! The work, in order:
//! 1. find the target processes (`--pid`, `--comm`, or every process) and their fd tables
//!    ([`fds`]): socket inodes, epoll watch lists;
//! 2. group them by network namespace and ask the kernel for that namespace's sockets, once per
//!    namespace and protocol, with the state filter applied in the kernel ([`diag`], entered
//!    through [`netns`]); when netlink is unavailable, parse /proc/PID/net instead ([`proc_net`]);
//! 3. join fds to sockets by inode. A socket fd found in no table is `Closed` (its connection is
//!    gone but the fd still holds it); its protocol comes from the `system.sockprotoname` xattr.
//!
//! Nothing here changes any process or socket.

pub mod diag;
pub mod fds;
pub mod netns;
pub mod pidfd;
pub mod proc_net;

use crate::model::{Match, Process, Proto, SockState, SocketEntry, Unreadable};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::PathBuf;

/// Which processes to look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Targets {
    /// Every process we may read (kernel threads and ourselves excepted).
    All,
    /// The named pids plus every process whose comm is one of `comms`.
    Listed { pids: Vec<i32>, comms: Vec<String> },
}

/// What to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub targets: Targets,
    /// Which socket kinds to resolve (Tcp/Udp/Unix); fds of other kinds are skipped unless in
    /// `include_fds`.
    pub protos: Vec<Proto>,
    /// OR of `SockState::kernel_bit()`; `u32::MAX` = every state. Pushed down into sock_diag's
    /// `idiag_states`.
    pub state_mask: u32,
    /// Fd numbers to report even if they are not sockets (`--fd`), whatever their state.
    pub include_fds: Vec<i32>,
    /// Also return sockets owned by no fd (inode 0), e.g. FIN-WAIT-1 orphans.
    pub orphans: bool,
    /// `--netns PATH|PID|NAME`: namespace for orphans when no pid is listed.
    pub netns: Option<String>,
}

/// What the resolver found.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    pub processes: Vec<Process>,
    /// Every fd of the targets holding a socket of a wanted proto in a wanted state, plus
    /// `include_fds` (socket `None` for non-sockets). Sorted by pid, then fd.
    pub matches: Vec<Match>,
    /// pid 0, comm "-", fd None, ino 0, socket Some(..).
    pub orphans: Vec<Match>,
    pub unreadable: Vec<Unreadable>,
    /// "sock_diag", "pidfd" (the target's own fds asked, see [`pidfd`]) or "/proc/net"
    /// (fallback), for the report.
    pub source: &'static str,
    /// Namespace the orphans were listed in (and where SOCK_DESTROY must run): `None` = ours.
    pub orphans_netns: Option<PathBuf>,
}

/// Why resolving failed. Each message is one sentence naming the pid or path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no process with pid {pid}")]
    NoSuchPid { pid: i32 },
    #[error("no process is named '{comm}' (names are matched exactly against /proc/PID/comm)")]
    NoSuchComm { comm: String },
    #[error("cannot read {path}: {} ({})", errno_text(source), hint(source))]
    Unreadable {
        pid: i32,
        path: String,
        source: io::Error,
    },
    #[error("--netns {arg}: {why}")]
    BadNetns { arg: String, why: String },
    #[error(
        "cannot enter the network namespace {path}: {} ({})",
        errno_text(source),
        hint(source)
    )]
    Netns { path: String, source: io::Error },
    #[error(
        "cannot list sockets in {path}: {} ({})",
        errno_text(source),
        hint(source)
    )]
    Sockets { path: String, source: io::Error },
}

/// `Permission denied (os error 13)` → `permission denied`: the sentence reads better without the
/// number.
pub(crate) fn errno_text(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        // Root can be refused too: a process of another user namespace, hidepid, or an LSM.
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "run as root or as the process owner; root is refused only for processes of another \
             user namespace (container)"
        }
        Some(libc::ENOENT) | Some(libc::ESRCH) => "the process may have exited",
        _ => "check that /proc is mounted and the process still exists",
    }
}

/// TCP_BOUND_INACTIVE (Linux 6.8+): bound, neither listening nor connected. Reported as Closed.
pub(crate) const TCP_BOUND_INACTIVE: u8 = 13;

/// Resolve the query. Reads /proc and asks the kernel; changes nothing.
///
/// The kernel dumps (one per namespace and protocol) run on their own thread while the fd tables
/// are read on the others: on a server with tens of thousands of fds both take tens of
/// milliseconds, and they do not depend on each other.
pub fn resolve(q: &Query) -> Result<Resolution, ResolveError> {
    resolve_with(q, Backend::Auto)
}

/// Where socket tables come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// sock_diag, falling back to /proc/PID/net per protocol when netlink is unavailable; or
    /// [`Backend::Pidfd`] when it is possible and cheaper (see [`pidfd_fits`]).
    Auto,
    /// Ask each socket fd of the targets itself, through pidfd_getfd ([`pidfd`]): only for
    /// listed pids, TCP only, no orphans, no `include_fds`. Chosen explicitly, a query it cannot
    /// answer is an error.
    Pidfd,
    /// /proc/PID/net only, as on a kernel without sock_diag (for comparisons and tests).
    ProcNet,
}

/// [`resolve`] with a chosen socket-table backend.
pub fn resolve_with(q: &Query, backend: Backend) -> Result<Resolution, ResolveError> {
    match backend {
        Backend::Pidfd => {
            if !pidfd_query(q) {
                return Err(ResolveError::Sockets {
                    path: "pidfd".into(),
                    source: io::Error::from_raw_os_error(libc::EINVAL),
                });
            }
            return resolve_pidfd(q, true).map(|r| r.expect("forced: never declined"));
        }
        Backend::Auto if pidfd_query(q) => {
            if let Some(r) = resolve_pidfd(q, false)? {
                return Ok(r);
            }
        }
        _ => {}
    }
    let me = std::process::id() as i32;
    let mut unreadable = Vec::new();
    let listed = matches!(q.targets, Targets::Listed { .. });

    // 1. Targets, and which namespaces to ask for which sockets.
    let procs = find_processes(&q.targets, me, &mut unreadable)?;
    // Pids the operator named must be readable; processes found by name or by searching may
    // exit while we look, and are then just left out.
    let explicit: HashSet<i32> = match &q.targets {
        Targets::Listed { pids, .. } => pids.iter().copied().collect(),
        Targets::All => HashSet::new(),
    };
    let wanted: Vec<Proto> = dedup_protos(&q.protos);
    let include: HashSet<i32> = q.include_fds.iter().copied().collect();
    let closed_wanted = q.state_mask & SockState::Closed.kernel_bit() != 0;
    // "In no table" can only be told from a dump of every state.
    let base_mask = if closed_wanted {
        u32::MAX
    } else {
        q.state_mask
    };
    let own_ns = netns::own_netns_inode();
    let orphan_ns = if q.orphans {
        Some(orphan_namespace(q, &procs, listed)?)
    } else {
        None
    };
    let mut plans: Vec<NsPlan> = Vec::new();
    for p in &procs {
        if let Some(n) = plans.iter_mut().find(|n| n.inode == p.netns) {
            n.members.push(p.pid);
            continue;
        }
        plans.push(NsPlan {
            inode: p.netns,
            path: netns::NsPath::of_pid(p.pid),
            members: vec![p.pid],
            need: wanted.iter().map(|&w| (w, base_mask)).collect(),
        });
    }
    if let Some(o) = &orphan_ns {
        let plan = match plans.iter_mut().find(|n| n.inode == o.inode) {
            Some(n) => n,
            None => {
                plans.push(NsPlan {
                    inode: o.inode,
                    path: o.path.clone(),
                    members: Vec::new(),
                    need: BTreeMap::new(),
                });
                plans.last_mut().expect("just pushed")
            }
        };
        *plan.need.entry(Proto::Tcp).or_insert(0) |= q.state_mask;
    }

    // 2. Dump and read fd tables at the same time.
    // /proc reads scale with cores only so far; beyond a few threads they contend in the kernel.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let (dumps, tables) = std::thread::scope(|s| {
        let dumper = s.spawn(|| {
            plans
                .iter()
                .map(|n| (n, dump_namespace(n, own_ns, &n.need, backend)))
                .collect::<Vec<_>>()
        });
        let tables = read_tables(procs, listed, &explicit, threads, &mut unreadable);
        let dumps = dumper
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        (dumps, tables)
    });
    let mut tables = tables?;
    let mut used = HashSet::new();
    let mut sockets: HashMap<u64, NsSockets> = HashMap::new();
    for (plan, dump) in dumps {
        match dump {
            Ok((table, source)) => {
                used.insert(source);
                sockets.insert(plan.inode, table);
            }
            // Searching every process, a namespace we cannot list makes its processes
            // unreadable, not the whole search impossible.
            Err(e) if !listed && !plan.members.is_empty() => {
                let reason = e.to_string();
                tables.retain(|(p, _)| p.netns != plan.inode);
                unreadable.extend(plan.members.iter().map(|&pid| Unreadable {
                    pid,
                    reason: reason.clone(),
                }));
            }
            Err(e) => return Err(e),
        }
    }

    // Fds named by --fd bypass the proto and state filters: dump their protocol in every state
    // where that was not done already.
    if !include.is_empty() {
        for n in &plans {
            let mut extra = BTreeMap::new();
            for (p, t) in tables.iter().filter(|(p, _)| p.netns == n.inode) {
                for fd in t.sockets.iter().filter(|s| include.contains(&s.fd)) {
                    let proto = fds::socket_proto(p.pid, fd.fd);
                    if proto != Proto::Other && n.need.get(&proto) != Some(&u32::MAX) {
                        extra.insert(proto, u32::MAX);
                    }
                }
            }
            if !extra.is_empty() {
                let (more, source) = dump_namespace(n, own_ns, &extra, backend)?;
                used.insert(source);
                let into = sockets.entry(n.inode).or_default();
                into.by_inode.extend(more.by_inode);
            }
        }
    }

    let mut orphans = Vec::new();
    if let Some(o) = &orphan_ns {
        if let Some(t) = sockets.get(&o.inode) {
            orphans = orphans_of(t, q.state_mask);
        }
    }

    // 3. Join fds to sockets by inode.
    let empty = NsSockets::default();
    let mut matches = Vec::new();
    for (p, t) in &tables {
        let table = sockets.get(&p.netns).unwrap_or(&empty);
        let watchers = t.epoll_watchers();
        let push = |matches: &mut Vec<Match>, fd: i32, ino: u64, target: String, s| {
            matches.push(Match {
                pid: p.pid,
                comm: p.comm.clone(),
                fd: Some(fd),
                ino,
                target,
                socket: s,
                epoll: watchers.get(&(fd, ino)).cloned().unwrap_or_default(),
            })
        };
        for s in &t.sockets {
            let included = include.contains(&s.fd);
            let entry = match table.by_inode.get(&s.inode) {
                Some(e) => {
                    let ok = included
                        || (wanted.contains(&e.proto) && e.state.kernel_bit() & q.state_mask != 0);
                    ok.then(|| e.clone())
                }
                None if closed_wanted || included => {
                    let proto = fds::socket_proto(p.pid, s.fd);
                    (included || wanted.contains(&proto))
                        .then(|| SocketEntry::closed_fd(s.inode, proto))
                }
                None => None,
            };
            if let Some(e) = entry {
                let target = format!("socket:[{}]", s.inode);
                push(&mut matches, s.fd, s.inode, target, Some(e));
            }
        }
        for &fd in &q.include_fds {
            if t.sockets.iter().any(|s| s.fd == fd) {
                continue;
            }
            // An fd number the process does not have is simply not matched.
            if let Ok((target, ino)) = fds::describe_fd(p.pid, fd) {
                push(&mut matches, fd, ino, target, None);
            }
        }
    }
    matches.sort_by_key(|m| (m.pid, m.fd));

    Ok(Resolution {
        processes: tables.into_iter().map(|(p, _)| p).collect(),
        matches,
        orphans,
        unreadable,
        source: if used.contains(&Source::ProcNet) && !used.contains(&Source::Diag) {
            "/proc/net"
        } else {
            "sock_diag"
        },
        orphans_netns: orphan_ns.and_then(|o| (o.inode != own_ns).then_some(o.path.0)),
    })
}

/// What to ask one network namespace for.
struct NsPlan {
    inode: u64,
    /// How to enter it: `--netns` or the first member's /proc/PID/ns/net.
    path: netns::NsPath,
    /// Target processes in it, for entering it and for the /proc/PID/net fallback.
    members: Vec<i32>,
    /// Protocol → kernel state mask.
    need: BTreeMap<Proto, u32>,
}

impl NsPlan {
    /// Ways into the namespace, in order: the plan's path, then each other member's.
    fn paths(&self) -> impl Iterator<Item = netns::NsPath> + '_ {
        std::iter::once(self.path.clone()).chain(
            self.members
                .iter()
                .skip(1)
                .map(|&p| netns::NsPath::of_pid(p)),
        )
    }
}

/// Fd tables of the targets. A named process (by pid or comm) we may not read is an error, and
/// so is a named pid that no longer exists; in a search of every process an unreadable one is
/// noted in `unreadable`, and a process that exited meanwhile is dropped silently.
fn read_tables(
    procs: Vec<Process>,
    listed: bool,
    explicit: &HashSet<i32>,
    threads: usize,
    unreadable: &mut Vec<Unreadable>,
) -> Result<Vec<(Process, fds::FdTable)>, ResolveError> {
    let results: Vec<Result<fds::FdTable, fds::FdError>> = if procs.len() <= threads {
        // Few processes, maybe huge: spread each one's fds over the threads.
        procs
            .iter()
            .map(|p| fds::read_fd_table_with(p.pid, threads))
            .collect()
    } else {
        // Many processes, mostly small: spread the processes over the threads.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut out: Vec<Option<Result<fds::FdTable, fds::FdError>>> =
            procs.iter().map(|_| None).collect();
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(p) = procs.get(i) else {
                                return mine;
                            };
                            mine.push((i, fds::read_fd_table(p.pid)));
                        }
                    })
                })
                .collect();
            for w in workers {
                for (i, r) in w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)) {
                    out[i] = Some(r);
                }
            }
        });
        out.into_iter()
            .map(|r| r.expect("every index was taken by a worker"))
            .collect()
    };
    let mut tables = Vec::with_capacity(procs.len());
    for (p, r) in procs.into_iter().zip(results) {
        match r {
            Ok(t) => tables.push((p, t)),
            Err(e) if matches!(e.source.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => {
                if explicit.contains(&p.pid) {
                    return Err(ResolveError::NoSuchPid { pid: p.pid });
                }
            }
            Err(e) if listed => {
                return Err(ResolveError::Unreadable {
                    pid: p.pid,
                    path: e.path,
                    source: e.source,
                })
            }
            Err(e) => unreadable.push(Unreadable {
                pid: p.pid,
                reason: format!("cannot read {}: {}", e.path, errno_text(&e.source)),
            }),
        }
    }
    Ok(tables)
}

/// Whether the pidfd backend can answer `q` at all: listed pids only (no name search), TCP only,
/// no orphans (they have no fd to ask) and no `include_fds` (they may be of any kind).
///
/// "TCP only" includes a query of every proto whose states only TCP sockets take: `--state
/// close-wait` without `--proto` asks for UDP and unix sockets too, but none can be in
/// CLOSE_WAIT (UDP: unconnected/established; unix: listening/established/unconnected; a
/// non-inet socket is reported only as closed).
fn pidfd_query(q: &Query) -> bool {
    const NOT_ONLY_TCP: u32 = (1 << SockState::Established as u32)
        | (1 << SockState::SynSent as u32)
        | (1 << SockState::Closed as u32)
        | (1 << SockState::Listening as u32);
    let protos = dedup_protos(&q.protos);
    let tcp = protos == [Proto::Tcp]
        || (protos.contains(&Proto::Tcp) && q.state_mask & NOT_ONLY_TCP == 0);
    matches!(&q.targets, Targets::Listed { pids, comms } if !pids.is_empty() && comms.is_empty())
        && tcp
        && !q.orphans
        && q.include_fds.is_empty()
}

/// The rule [`Backend::Auto`] follows, before the fd tables are read: ask the target's sockets
/// themselves when its fds (an upper bound of its socket fds) number less than a tenth of the
/// host's TCP sockets (/proc/net/sockstat:
/// max(inuse, alloc) + TIME-WAIT), which sock_diag would walk; else dump.
///
/// The tenth is measured (2 cores, Linux 6.18, release build): pidfd costs ~5 us per socket fd
/// (a dozen syscalls), the sock_diag walk ~0.5 us per socket in the kernel. 1,000 CLOSE_WAIT fds
/// with 144,000 sockets in the kernel: 15.8 ms by pidfd, 72 ms by sock_diag; 15,000 fds with
/// 103,000-127,000 sockets: 118 ms by pidfd, 109 ms by sock_diag.
pub fn pidfd_fits(target_socket_fds: usize, host_tcp_sockets: Option<u64>) -> bool {
    const SOCKETS_PER_FD: u64 = 10;
    host_tcp_sockets.is_some_and(|h| (target_socket_fds as u64).saturating_mul(SOCKETS_PER_FD) < h)
}

/// [`Backend::Pidfd`]. Not `forced` (from [`Backend::Auto`]): `Ok(None)` whenever pidfd cannot
/// or should not be used — no pidfd_open/pidfd_getfd (Linux < 5.6, seccomp), refused (EPERM),
/// or more socket fds than [`pidfd_fits`] allows — for the caller to take the sock_diag path.
fn resolve_pidfd(q: &Query, forced: bool) -> Result<Option<Resolution>, ResolveError> {
    let me = std::process::id() as i32;
    let mut unreadable = Vec::new();
    let procs = find_processes(&q.targets, me, &mut unreadable)?;
    let explicit: HashSet<i32> = match &q.targets {
        Targets::Listed { pids, .. } => pids.iter().copied().collect(),
        Targets::All => HashSet::new(),
    };
    // pidfds first: where the kernel has none, nothing has been read in vain.
    let mut pidfds = HashMap::new();
    for p in &procs {
        match pidfd::open(p.pid) {
            Ok(fd) => {
                pidfds.insert(p.pid, fd);
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(ResolveError::NoSuchPid { pid: p.pid })
            }
            Err(source) if forced => {
                return Err(ResolveError::Sockets {
                    path: format!("pidfd of pid {}", p.pid),
                    source,
                })
            }
            Err(_) => return Ok(None),
        }
    }
    // Decide before the fd tables are read, so that declining costs no second read: the number
    // of fds (one getdents pass, no readlink) bounds the number of socket fds from above, which
    // errs towards sock_diag for a process with many non-socket fds.
    if !forced {
        let mut fds = 0;
        for p in &procs {
            match std::fs::read_dir(format!("/proc/{}/fd", p.pid)) {
                Ok(d) => fds += d.count(),
                // Unreadable or gone: the sock_diag path reports it as it always has.
                Err(_) => return Ok(None),
            }
        }
        if !pidfd_fits(fds, pidfd::host_tcp_sockets()) {
            return Ok(None);
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let tables = read_tables(procs, true, &explicit, threads, &mut unreadable)?;

    let mut matches = Vec::new();
    for (p, t) in &tables {
        let pidfd = &pidfds[&p.pid];
        let watchers = t.epoll_watchers();
        // A dozen syscalls per fd: spread big tables over the threads, in order.
        let chunk = t.sockets.len().div_ceil(threads).max(256);
        let probed: Vec<io::Result<pidfd::Probed>> = std::thread::scope(|sc| {
            let workers: Vec<_> = t
                .sockets
                .chunks(chunk)
                .map(|part| {
                    sc.spawn(move || {
                        part.iter()
                            .map(|s| pidfd::probe(pidfd, s.fd, s.inode))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        for (s, probed) in t.sockets.iter().zip(probed) {
            let probe = match probed {
                Ok(pidfd::Probed::Tcp(probe)) => probe,
                // Not TCP, or the fd changed since we listed it: not ours to report.
                Ok(_) => continue,
                Err(source) if forced => {
                    return Err(ResolveError::Sockets {
                        path: format!("/proc/{}/fd/{}", p.pid, s.fd),
                        source,
                    })
                }
                Err(_) => return Ok(None),
            };
            let e = pidfd::entry_of(&probe);
            if e.state.kernel_bit() & q.state_mask == 0 {
                continue;
            }
            matches.push(Match {
                pid: p.pid,
                comm: p.comm.clone(),
                fd: Some(s.fd),
                ino: s.inode,
                target: format!("socket:[{}]", s.inode),
                socket: Some(e),
                epoll: watchers.get(&(s.fd, s.inode)).cloned().unwrap_or_default(),
            });
        }
    }
    matches.sort_by_key(|m| (m.pid, m.fd));
    Ok(Some(Resolution {
        processes: tables.into_iter().map(|(p, _)| p).collect(),
        matches,
        orphans: Vec::new(),
        unreadable,
        source: "pidfd",
        orphans_netns: None,
    }))
}

fn dedup_protos(p: &[Proto]) -> Vec<Proto> {
    let mut v: Vec<Proto> = p.iter().copied().filter(|p| *p != Proto::Other).collect();
    v.sort();
    v.dedup();
    v
}

/// Sockets no fd owns, as matches. Request sockets (NEW_SYN_RECV) belong to their listener.
fn orphans_of(table: &NsSockets, mask: u32) -> Vec<Match> {
    table
        .unowned
        .iter()
        .filter(|e| e.proto == Proto::Tcp && e.state != SockState::NewSynRecv)
        .filter(|e| e.state.kernel_bit() & mask != 0)
        .map(|e| Match {
            pid: 0,
            comm: "-".to_string(),
            fd: None,
            ino: 0,
            target: String::new(),
            socket: Some(e.clone()),
            epoll: Vec::new(),
        })
        .collect()
}

/// One namespace's sockets: those with an inode (owned by some fd, maybe not ours) and those
/// without (orphans, time-wait and request sockets).
#[derive(Debug, Default)]
struct NsSockets {
    by_inode: HashMap<u64, SocketEntry>,
    unowned: Vec<SocketEntry>,
}

impl NsSockets {
    fn add(&mut self, e: SocketEntry) {
        if e.inode == 0 {
            self.unowned.push(e);
        } else {
            self.by_inode.insert(e.inode, e);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Source {
    Diag,
    ProcNet,
}

/// One namespace's sockets of the protocols in `need`, each dumped with its state mask: through
/// sock_diag when we can, else from /proc/PID/net of a process in that namespace.
///
/// Processes come and go while we look: the namespace is entered through the first member that
/// still exists, and a namespace whose members have all exited has no sockets of theirs left.
fn dump_namespace(
    plan: &NsPlan,
    own_ns: u64,
    need: &BTreeMap<Proto, u32>,
    backend: Backend,
) -> Result<(NsSockets, Source), ResolveError> {
    let is_own = plan.inode == own_ns;
    let mut out = NsSockets::default();
    let gone = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH));

    let mut sock = None;
    let mut open_err: Option<(String, io::Error)> = None;
    if backend == Backend::ProcNet {
        // Leave `sock` empty: every protocol takes the /proc/PID/net path below.
    } else if is_own {
        sock = diag::DiagSocket::open().ok();
    } else {
        for path in plan.paths() {
            match diag::DiagSocket::open_in(&path) {
                Ok(s) => {
                    sock = Some(s);
                    break;
                }
                Err(e) if gone(&e) => {}
                Err(e) => {
                    open_err = Some((path.0.display().to_string(), e));
                    break;
                }
            }
        }
    }

    let mut source = Source::Diag;
    for (&proto, &mask) in need {
        if let Some(s) = sock.as_mut() {
            let mut got = Vec::new();
            let r = match proto {
                Proto::Tcp => s.inet_sockets(diag::IPPROTO_TCP, mask, |e| got.push(e)),
                Proto::Udp => s.inet_sockets(diag::IPPROTO_UDP, mask, |e| got.push(e)),
                Proto::Unix => s.unix_sockets(mask, |e| got.push(e)),
                Proto::Other => Ok(()),
            };
            match r {
                Ok(()) => {
                    for e in got {
                        if e.state.kernel_bit() & mask != 0 {
                            out.add(e);
                        }
                    }
                    continue;
                }
                // The diag module for this protocol is missing or refuses us: fall back.
                Err(e) if fallback_errno(&e) => {}
                Err(e) => {
                    return Err(ResolveError::Sockets {
                        path: plan.path.0.display().to_string(),
                        source: e,
                    })
                }
            }
        }
        // /proc/PID/net of a member (ours: /proc/self/net).
        source = Source::ProcNet;
        let pids: Vec<Option<i32>> = if is_own && plan.members.is_empty() {
            vec![None]
        } else {
            plan.members.iter().map(|&p| Some(p)).collect()
        };
        let mut read = None;
        for pid in pids {
            match proc_net::read_table(pid, proto) {
                Ok(v) => {
                    read = Some(v);
                    break;
                }
                Err(e) if gone(&e) => {}
                Err(source) => {
                    return Err(ResolveError::Sockets {
                        path: proc_net::table_dir(pid),
                        source,
                    })
                }
            }
        }
        match read {
            Some(entries) => {
                for e in entries {
                    if e.state.kernel_bit() & mask != 0 {
                        out.add(e);
                    }
                }
            }
            // No member left to read through: fatal only for a namespace named by path.
            None => {
                if let Some((path, source)) = open_err.take() {
                    return Err(ResolveError::Netns { path, source });
                }
                if plan.members.is_empty() && !is_own {
                    return Err(ResolveError::Netns {
                        path: plan.path.0.display().to_string(),
                        source: io::Error::from_raw_os_error(libc::ENOENT),
                    });
                }
            }
        }
    }
    Ok((out, source))
}

/// Errors after which /proc/PID/net is worth trying: no sock_diag for this protocol or family
/// (module not loaded), or netlink refused to us.
fn fallback_errno(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT)
            | Some(libc::EPROTONOSUPPORT)
            | Some(libc::EAFNOSUPPORT)
            | Some(libc::EOPNOTSUPP)
            | Some(libc::EACCES)
            | Some(libc::EPERM)
            | Some(libc::EINVAL)
    )
}

/// The namespace orphans are listed in.
struct OrphanNs {
    inode: u64,
    path: netns::NsPath,
}

fn orphan_namespace(q: &Query, procs: &[Process], listed: bool) -> Result<OrphanNs, ResolveError> {
    if let Some(arg) = &q.netns {
        let path = netns::NsPath::parse(arg).map_err(|why| ResolveError::BadNetns {
            arg: arg.clone(),
            why,
        })?;
        let inode = path.inode().map_err(|e| ResolveError::BadNetns {
            arg: arg.clone(),
            why: format!("cannot read {}: {}", path.0.display(), errno_text(&e)),
        })?;
        return Ok(OrphanNs { inode, path });
    }
    if listed {
        if let Some(p) = procs.first() {
            return Ok(OrphanNs {
                inode: p.netns,
                path: netns::NsPath::of_pid(p.pid),
            });
        }
    }
    Ok(OrphanNs {
        inode: netns::own_netns_inode(),
        path: netns::NsPath::own(),
    })
}

/// Target processes, with comm and network namespace.
fn find_processes(
    targets: &Targets,
    me: i32,
    unreadable: &mut Vec<Unreadable>,
) -> Result<Vec<Process>, ResolveError> {
    let _ = unreadable;
    match targets {
        Targets::Listed { pids, comms } => {
            let mut out: Vec<Process> = Vec::new();
            for &pid in pids {
                if out.iter().any(|p| p.pid == pid) {
                    continue;
                }
                if pid <= 0 {
                    return Err(ResolveError::NoSuchPid { pid });
                }
                let info = fds::read_stat(pid).map_err(|e| match e.raw_os_error() {
                    Some(libc::ENOENT) | Some(libc::ESRCH) => ResolveError::NoSuchPid { pid },
                    _ => ResolveError::Unreadable {
                        pid,
                        path: format!("/proc/{pid}/stat"),
                        source: e,
                    },
                })?;
                let netns = netns::netns_inode(pid).map_err(|e| match e.raw_os_error() {
                    Some(libc::ENOENT) | Some(libc::ESRCH) => ResolveError::NoSuchPid { pid },
                    _ => ResolveError::Unreadable {
                        pid,
                        path: format!("/proc/{pid}/ns/net"),
                        source: e,
                    },
                })?;
                out.push(Process {
                    pid,
                    comm: info.comm,
                    netns,
                });
            }
            if !comms.is_empty() {
                let mut seen: HashSet<&str> = HashSet::new();
                for pid in fds::all_pids() {
                    if pid == me || out.iter().any(|p| p.pid == pid) {
                        continue;
                    }
                    let Ok(info) = fds::read_stat(pid) else {
                        continue;
                    };
                    if info.kernel_thread {
                        continue;
                    }
                    if let Some(c) = comms.iter().find(|c| **c == info.comm) {
                        seen.insert(c.as_str());
                        let Ok(netns) = netns::netns_inode(pid) else {
                            continue;
                        };
                        out.push(Process {
                            pid,
                            comm: info.comm,
                            netns,
                        });
                    }
                }
                for c in comms {
                    let by_pid = out.iter().any(|p| &p.comm == c);
                    if !seen.contains(c.as_str()) && !by_pid {
                        return Err(ResolveError::NoSuchComm { comm: c.clone() });
                    }
                }
            }
            out.sort_by_key(|p| p.pid);
            out.dedup_by_key(|p| p.pid);
            Ok(out)
        }
        Targets::All => {
            let mut out = Vec::new();
            for pid in fds::all_pids() {
                if pid == me {
                    continue;
                }
                let Ok(info) = fds::read_stat(pid) else {
                    continue;
                };
                if info.kernel_thread {
                    continue;
                }
                match netns::netns_inode(pid) {
                    Ok(netns) => out.push(Process {
                        pid,
                        comm: info.comm,
                        netns,
                    }),
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => {}
                    Err(e) => unreadable.push(Unreadable {
                        pid,
                        reason: format!("cannot read /proc/{pid}/ns/net: {}", errno_text(&e)),
                    }),
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(inode: u64, state: SockState) -> SocketEntry {
        let mut e = SocketEntry::closed_fd(inode, Proto::Tcp);
        e.state = state;
        e
    }

    #[test]
    fn orphans_are_unowned_tcp_sockets_in_wanted_states() {
        let mut t = NsSockets::default();
        t.add(tcp(10, SockState::CloseWait));
        t.add(tcp(0, SockState::FinWait1));
        t.add(tcp(0, SockState::TimeWait));
        t.add(tcp(0, SockState::NewSynRecv));
        assert_eq!(t.by_inode.len(), 1);
        assert_eq!(t.unowned.len(), 3);
        let mask = SockState::FinWait1.kernel_bit() | SockState::NewSynRecv.kernel_bit();
        let o = orphans_of(&t, mask);
        assert_eq!(o.len(), 1, "request sockets belong to their listener");
        assert_eq!(
            (o[0].pid, o[0].comm.as_str(), o[0].fd, o[0].ino),
            (0, "-", None, 0)
        );
        assert_eq!(o[0].socket.as_ref().unwrap().state, SockState::FinWait1);
        assert_eq!(orphans_of(&t, u32::MAX).len(), 2);
    }

    #[test]
    fn pidfd_only_for_tcp_of_listed_pids_and_fewer_fds_than_host_sockets() {
        let q = Query {
            targets: Targets::Listed {
                pids: vec![812],
                comms: vec![],
            },
            protos: vec![Proto::Tcp, Proto::Tcp],
            state_mask: SockState::CloseWait.kernel_bit(),
            include_fds: vec![],
            orphans: false,
            netns: None,
        };
        assert!(pidfd_query(&q));
        let with = |f: &dyn Fn(&mut Query)| {
            let mut q = q.clone();
            f(&mut q);
            pidfd_query(&q)
        };
        assert!(!with(&|q| q.orphans = true));
        assert!(!with(&|q| q.include_fds = vec![3]));
        assert!(!with(&|q| {
            q.protos.push(Proto::Udp);
            q.state_mask |= SockState::Established.kernel_bit();
        }));
        // Every proto, but states only TCP takes (`--state close-wait` without `--proto`).
        assert!(with(
            &|q| q.protos = vec![Proto::Tcp, Proto::Udp, Proto::Unix, Proto::Other]
        ));
        assert!(!with(&|q| {
            q.protos = vec![Proto::Udp, Proto::Unix];
        }));
        for s in [
            SockState::Listening,
            SockState::Unconnected,
            SockState::Closed,
        ] {
            assert!(!with(&|q| {
                q.protos.push(Proto::Unix);
                q.state_mask |= s.kernel_bit();
            }));
            assert!(
                with(&|q| q.state_mask |= s.kernel_bit()),
                "TCP alone: any state"
            );
        }
        assert!(!with(&|q| q.targets = Targets::All));
        assert!(!with(&|q| q.targets = Targets::Listed {
            pids: vec![812],
            comms: vec!["java".into()]
        }));
        assert!(pidfd_fits(1000, Some(36_000)));
        assert!(
            !pidfd_fits(1000, Some(10_000)),
            "a walk of 10,000 sockets is as cheap"
        );
        assert!(!pidfd_fits(15_000, Some(127_000)));
        assert!(!pidfd_fits(3, None), "sockstat unreadable: sock_diag");
    }

    #[test]
    fn protos_deduplicated_and_other_dropped() {
        assert_eq!(
            dedup_protos(&[Proto::Udp, Proto::Tcp, Proto::Other, Proto::Udp]),
            vec![Proto::Tcp, Proto::Udp]
        );
    }

    #[test]
    fn errno_text_is_lower_case_without_number() {
        let e = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(errno_text(&e), "permission denied");
        let err = ResolveError::Unreadable {
            pid: 812,
            path: "/proc/812/fd".into(),
            source: e,
        };
        assert_eq!(
            err.to_string(),
            "cannot read /proc/812/fd: permission denied (run as root or as the process owner; root is refused only for processes of another user namespace (container))"
        );
        assert_eq!(
            ResolveError::NoSuchPid { pid: 4242 }.to_string(),
            "no process with pid 4242"
        );
    }
}
