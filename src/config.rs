//! Flags (`cli::Args`, as typed) → `Config` (what the program uses), ripgrep's lowargs → hiargs.
//! Pure: no system calls, so every refusal of malformed input is unit-tested.

use crate::cli::{ActionArg, Args, HowArg};
use crate::plan::{Action, How};
use crate::resolve::{Query, Targets};
use crate::select::{SelectError, Selection};
use std::path::PathBuf;
use thiserror::Error;

/// Malformed or contradictory flags. One sentence each, saying what to type instead.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error("--pid {pid} is not a process id: type a number 1 or larger (see `ps -e`)")]
    BadPid { pid: i32 },
    #[error("--max 0 would act on nothing: type --max 1 or more, or --dry-run to only look")]
    MaxZero,
    #[error("--tid names a thread of one process: give exactly one --pid with it")]
    TidNeedsOnePid,
    #[error("--json already ends with a summary object: drop --summary, or drop --json for the summary table")]
    JsonAndSummary,
    #[error("--how only applies to --action shutdown: drop --how or add --action shutdown")]
    HowWithoutShutdown,
    #[error("--netns only names where to look for --orphans: add --orphans or drop --netns")]
    NetnsWithoutOrphans,
    #[error("orphans have no fd to {action}: only --action destroy reaches them (drop --action to get it)")]
    OrphansNeedDestroy { action: &'static str },
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Summary,
    Json,
}

/// Everything the pipeline needs, decided from the flags.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub targets: Targets,
    pub selection: Selection,
    pub action: Action,
    pub max: Option<usize>,
    pub dry_run: bool,
    pub yes: bool,
    pub output: Output,
    pub journal: Option<PathBuf>,
    /// Freeze every thread while injecting (the default); `--no-freeze` stops only one.
    pub freeze: bool,
    pub tid: Option<i32>,
    pub allow_pid1: bool,
    pub no_ptrace: bool,
}

impl Config {
    pub fn from_args(a: &Args) -> Result<Config, ConfigError> {
        let selection = Selection::from_args(a)?;
        if let Some(&pid) = a.pid.iter().find(|&&p| p <= 0) {
            return Err(ConfigError::BadPid { pid });
        }
        if a.max == Some(0) {
            return Err(ConfigError::MaxZero);
        }
        if a.tid.is_some() && a.pid.len() != 1 {
            return Err(ConfigError::TidNeedsOnePid);
        }
        if a.json && a.summary {
            return Err(ConfigError::JsonAndSummary);
        }
        let action_arg = match (a.action, a.orphans) {
            (Some(ActionArg::Destroy), _) | (None, true) => ActionArg::Destroy,
            (Some(other), true) => {
                return Err(ConfigError::OrphansNeedDestroy {
                    action: match other {
                        ActionArg::Shutdown => "shut down",
                        ActionArg::Replace => "replace",
                        _ => "close",
                    },
                })
            }
            (Some(other), false) => other,
            (None, false) => ActionArg::Close,
        };
        if a.how != HowArg::Rdwr && action_arg != ActionArg::Shutdown {
            return Err(ConfigError::HowWithoutShutdown);
        }
        if a.netns.is_some() && !a.orphans {
            return Err(ConfigError::NetnsWithoutOrphans);
        }
        let targets = if a.pid.is_empty() && a.comm.is_empty() {
            Targets::All
        } else {
            let mut pids = a.pid.clone();
            pids.sort();
            pids.dedup();
            Targets::Listed {
                pids,
                comms: a.comm.clone(),
            }
        };
        let action = match action_arg {
            ActionArg::Close => Action::Close,
            ActionArg::Shutdown => Action::Shutdown {
                how: match a.how {
                    HowArg::Rd => How::Rd,
                    HowArg::Wr => How::Wr,
                    HowArg::Rdwr => How::Rdwr,
                },
            },
            ActionArg::Replace => Action::Replace,
            ActionArg::Destroy => Action::Destroy,
        };
        let output = if a.json {
            Output::Json
        } else if a.summary {
            Output::Summary
        } else {
            Output::Table
        };
        Ok(Config {
            targets,
            selection,
            action,
            max: a.max,
            dry_run: a.dry_run,
            yes: a.yes,
            output,
            journal: a.journal.clone(),
            freeze: !a.no_freeze,
            tid: a.tid,
            allow_pid1: a.force,
            no_ptrace: a.no_ptrace,
        })
    }

    /// What the resolver is asked for.
    pub fn query(&self) -> Query {
        self.selection.query(self.targets.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cfg(args: &[&str]) -> Result<Config, ConfigError> {
        let mut v = vec!["fdclose"];
        v.extend_from_slice(args);
        Config::from_args(&Args::try_parse_from(v).unwrap())
    }

    #[test]
    fn targets_and_action() {
        let c = cfg(&["--pid", "9", "--pid", "3", "--pid", "9", "-s", "close-wait"]).unwrap();
        assert_eq!(
            c.targets,
            Targets::Listed {
                pids: vec![3, 9],
                comms: vec![]
            }
        );
        assert_eq!(c.action, Action::Close);
        assert!(c.freeze && !c.dry_run && !c.yes);
        assert_eq!(c.output, Output::Table);
        let q = c.query();
        assert_eq!(q.state_mask, 1 << 8);
        assert_eq!(q.protos, vec![crate::model::Proto::Tcp]);
        assert!(!q.orphans);

        let all = cfg(&["--summary", "-a", "shutdown", "--how", "wr", "--no-freeze"]).unwrap();
        assert_eq!(all.targets, Targets::All);
        assert_eq!(all.action, Action::Shutdown { how: How::Wr });
        assert_eq!(all.output, Output::Summary);
        assert!(!all.freeze);

        let o = cfg(&["--orphans", "--netns", "/run/netns/x", "-a", "destroy"]).unwrap();
        let q = o.query();
        assert!(q.orphans);
        assert_eq!(q.netns.as_deref(), Some("/run/netns/x"));
        assert_eq!(o.action, Action::Destroy);

        // Orphans have no fd: destroy is their default, and the only action that reaches them.
        let d = cfg(&["--orphans"]).unwrap();
        assert_eq!(d.action, Action::Destroy);
        let fw = (1 << 4) | (1 << 5) | (1 << 9) | (1 << 11);
        assert_eq!(
            d.query().state_mask,
            fw,
            "queue-holding orphan states by default"
        );
        assert_eq!(
            cfg(&["--orphans", "-a", "close"]).unwrap_err(),
            ConfigError::OrphansNeedDestroy { action: "close" }
        );
    }

    #[test]
    fn contradictions_are_refused_in_one_sentence() {
        let cases: [(&[&str], ConfigError); 6] = [
            (&["--pid", "0"], ConfigError::BadPid { pid: 0 }),
            (&["--pid", "1", "--max", "0"], ConfigError::MaxZero),
            (&["--tid", "5"], ConfigError::TidNeedsOnePid),
            (&["--json", "--summary"], ConfigError::JsonAndSummary),
            (&["--how", "rd"], ConfigError::HowWithoutShutdown),
            (&["--netns", "1"], ConfigError::NetnsWithoutOrphans),
        ];
        for (args, want) in cases {
            let e = cfg(args).unwrap_err();
            assert_eq!(e, want);
            let msg = e.to_string();
            assert!(!msg.contains('\n') && msg.contains(':'), "{msg}");
        }
        assert!(matches!(
            cfg(&["--state", "bogus"]).unwrap_err(),
            ConfigError::Select(SelectError::UnknownState { .. })
        ));
    }
}
