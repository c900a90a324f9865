//! Flags as the operator types them (clap derive). `Config::from_args` turns them into what the
//! program uses; nothing here touches the OS.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;

/// Relieve socket and fd leaks in a running process without restarting it.
///
/// Selectors of different kinds AND together; a repeated selector ORs. Without --pid/--comm every
/// process is searched, as `ss -p` does.
#[derive(Parser, Debug, Clone)]
#[command(name = "fdclose", version, about, long_about = None)]
pub struct Args {
    /// Target process id (repeatable).
    #[arg(long, short = 'p', value_name = "PID")]
    pub pid: Vec<i32>,

    /// Target every process whose command name (/proc/PID/comm) is exactly NAME (repeatable).
    #[arg(long, value_name = "NAME")]
    pub comm: Vec<String>,

    /// Socket state, as ss names it: established, syn-sent, syn-recv, fin-wait-1, fin-wait-2,
    /// time-wait, close-wait, last-ack, listening, closing, closed; groups: connected,
    /// synchronized, all (repeatable).
    #[arg(long, short = 's', value_name = "STATE")]
    pub state: Vec<String>,

    /// Peer address: ADDR[/PREFIX][:PORT], IPv6 in brackets when a port follows (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub peer: Vec<String>,

    /// Local address: ADDR[/PREFIX][:PORT] (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub local: Vec<String>,

    /// Peer port or range N-M (repeatable).
    #[arg(long, value_name = "PORT")]
    pub peer_port: Vec<String>,

    /// Local port or range N-M (repeatable).
    #[arg(long, value_name = "PORT")]
    pub local_port: Vec<String>,

    /// File descriptor number, socket or not (repeatable).
    #[arg(long, value_name = "FD")]
    pub fd: Vec<i32>,

    /// Socket inode, the N of socket:[N] (repeatable).
    #[arg(long, value_name = "INODE")]
    pub inode: Vec<u64>,

    /// Protocol: tcp, udp, unix (repeatable; tcp when not given).
    #[arg(long, value_name = "PROTO")]
    pub proto: Vec<String>,

    /// Only sockets that received no data for at least this long (e.g. 90s, 10m, 2h).
    #[arg(long, value_name = "DURATION")]
    pub idle: Option<String>,

    /// Select sockets owned by no fd (orphans, e.g. FIN-WAIT-1 holding Send-Q). Without --state:
    /// the states where orphans hold queues (fin-wait-1, fin-wait-2, closing, last-ack).
    #[arg(long)]
    pub orphans: bool,

    /// Network namespace for --orphans without --pid: a path (/run/netns/NAME) or a PID.
    #[arg(long, value_name = "PATH|PID")]
    pub netns: Option<String>,

    /// What to do with each selected fd or socket [default: close; destroy with --orphans, which
    /// have no fd].
    #[arg(long, short = 'a', value_enum)]
    pub action: Option<ActionArg>,

    /// For --action shutdown: which direction to shut.
    #[arg(long, value_enum, default_value_t = HowArg::Rdwr)]
    pub how: HowArg,

    /// Show what would be done and touch nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,

    /// Act without asking (required when standard input is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Act on at most N fds or sockets.
    #[arg(long, value_name = "N")]
    pub max: Option<usize>,

    /// Stop only the injection thread instead of freezing every thread (see SAFETY.md).
    #[arg(long)]
    pub no_freeze: bool,

    /// Inject through this thread instead of the one fdclose picks.
    #[arg(long, value_name = "TID")]
    pub tid: Option<i32>,

    /// Never stop the process with ptrace; fail when that is the only way (shutdown via pidfd only).
    #[arg(long)]
    pub no_ptrace: bool,

    /// Allow acting on pid 1.
    #[arg(long)]
    pub force: bool,

    /// Journal file (JSON Lines) recording every change before and after it is made.
    #[arg(long, value_name = "PATH")]
    pub journal: Option<PathBuf>,

    /// Print JSON Lines instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Print counts and queue bytes grouped by state, peer and process.
    #[arg(long)]
    pub summary: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionArg {
    /// close(2) the fd inside the process.
    Close,
    /// shutdown(2) the connection, keeping the fd.
    Shutdown,
    /// dup2 a dead socket over the fd: connection released, fd number stays taken.
    Replace,
    /// SOCK_DESTROY the socket in the kernel (orphans, or owned sockets).
    Destroy,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HowArg {
    Rd,
    Wr,
    Rdwr,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn repeated_selectors_collect() {
        let a = Args::try_parse_from([
            "fdclose",
            "--pid",
            "1",
            "--pid",
            "2",
            "--state",
            "close-wait",
            "--peer",
            "10.0.0.5",
        ])
        .unwrap();
        assert_eq!(a.pid, vec![1, 2]);
        assert_eq!(a.state, vec!["close-wait"]);
        assert_eq!(a.action, None);
    }
}
