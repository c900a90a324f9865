//! A plan is a plain value: what will be done to which fd of which process. `--dry-run` prints it;
//! executing takes only a plan.

use crate::model::Match;
use serde::Serialize;

/// Which direction `shutdown(2)` shuts (SHUT_RD / SHUT_WR / SHUT_RDWR).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    Rd,
    Wr,
    Rdwr,
}

impl How {
    /// The `how` argument of shutdown(2) (same value on every Linux architecture).
    pub fn raw(self) -> i32 {
        match self {
            How::Rd => libc::SHUT_RD,
            How::Wr => libc::SHUT_WR,
            How::Rdwr => libc::SHUT_RDWR,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Action {
    /// close(2) the fd inside the process.
    Close,
    /// shutdown(2) the connection; the fd stays open.
    Shutdown { how: How },
    /// dup2 a dead socket over the fd: connection released, number stays taken.
    Replace,
    /// SOCK_DESTROY through sock_diag; an owned socket's fd stays open in its program.
    Destroy,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Close => "close",
            Action::Shutdown { .. } => "shutdown",
            Action::Replace => "replace",
            Action::Destroy => "destroy",
        }
    }
}

/// What will be done, to what, in the order it will be done (by pid, then fd).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub action: Action,
    pub steps: Vec<Match>,
    /// Matches left out because of `--max`.
    pub left_out: usize,
}

impl Plan {
    pub fn new(action: Action, mut matches: Vec<Match>, max: Option<usize>) -> Plan {
        matches.sort_by_key(|m| (m.pid, m.fd, m.inode()));
        let left_out = match max {
            Some(n) if matches.len() > n => {
                let extra = matches.len() - n;
                matches.truncate(n);
                extra
            }
            _ => 0,
        };
        Plan {
            action,
            steps: matches,
            left_out,
        }
    }

    /// Distinct pids in plan order.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self.steps.iter().map(|m| m.pid).collect();
        pids.dedup();
        pids
    }
}

/// What happened to one step.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Done; `verified` says the effect was checked afterwards (fd gone, connection ended...).
    Done {
        verified: bool,
        note: Option<String>,
    },
    /// The fd no longer held the planned object right before acting: left alone.
    Changed { now: String },
    /// The socket or process was already gone (not an error).
    Gone { what: String },
    /// Not done: why, with the errno when a syscall said no.
    Failed { error: String, errno: Option<i32> },
}

impl Outcome {
    pub fn is_done(&self) -> bool {
        matches!(self, Outcome::Done { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pid: i32, fd: i32) -> Match {
        Match {
            pid,
            comm: "x".into(),
            fd: Some(fd),
            ino: fd as u64,
            target: format!("socket:[{fd}]"),
            socket: None,
            epoll: vec![],
        }
    }

    #[test]
    fn plan_orders_by_pid_then_fd_and_caps() {
        let p = Plan::new(Action::Close, vec![m(2, 5), m(1, 9), m(1, 3)], Some(2));
        let order: Vec<_> = p.steps.iter().map(|s| (s.pid, s.fd)).collect();
        assert_eq!(order, vec![(1, Some(3)), (1, Some(9))]);
        assert_eq!(p.left_out, 1);
        assert_eq!(p.pids(), vec![1]);
    }
}
