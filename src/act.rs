//! Carry out a plan and say what happened to each step.
//!
//! One `match` on the plan's action picks the way: close, shutdown and replace run inside the
//! process through the ptrace engine, one attach per process for all of its fds.

use crate::engine::{self, EngineError, EngineOptions, Op, Surgery};
use crate::journal::Journal;
use crate::model::Match;
use crate::plan::{Action, Outcome, Plan};
use serde::Serialize;

#[derive(Clone, Debug, Default)]
pub struct ActOptions {
    pub engine: EngineOptions,
    /// Never stop a process with ptrace.
    pub no_ptrace: bool,
}

/// One step of the plan and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepResult {
    pub step: Match,
    pub outcome: Outcome,
}

/// Execute every step of `plan`, in plan order. Never stops early: a process that cannot be
/// worked on turns into a `Failed` outcome (with the reason) for each of its steps.
pub fn execute(plan: &Plan, opts: &ActOptions, journal: &mut Journal) -> Vec<StepResult> {
    match plan.action {
        Action::Close => by_ptrace(plan, Op::Close, opts, journal),
        Action::Shutdown { how } => by_ptrace(plan, Op::Shutdown(how), opts, journal),
        Action::Replace => by_ptrace(plan, Op::Replace, opts, journal),
        Action::Destroy => plan
            .steps
            .iter()
            .map(|m| failed(m, "destroy is not available in this build of fdclose", None))
            .collect(),
    }
}

fn failed(m: &Match, error: &str, errno: Option<i32>) -> StepResult {
    StepResult {
        step: m.clone(),
        outcome: Outcome::Failed {
            error: error.to_string(),
            errno,
        },
    }
}

/// The ptrace actions: one engine run per process, carrying all of that process's fds.
fn by_ptrace(plan: &Plan, op: Op, opts: &ActOptions, journal: &mut Journal) -> Vec<StepResult> {
    let mut results: Vec<Option<StepResult>> = vec![None; plan.steps.len()];
    for pid in plan.pids() {
        // Indices of this process's steps that name an fd; orphans (no fd) cannot be reached
        // from inside any process.
        let mut idx = Vec::new();
        for (i, m) in plan.steps.iter().enumerate().filter(|(_, m)| m.pid == pid) {
            if opts.no_ptrace {
                results[i] = Some(failed(
                    m,
                    &format!(
                        "--no-ptrace: {} needs to stop the process with ptrace",
                        op.name()
                    ),
                    None,
                ));
            } else if m.fd.is_none() {
                results[i] = Some(failed(
                    m,
                    "this socket is owned by no fd (an orphan): only --action destroy reaches it",
                    None,
                ));
            } else {
                idx.push(i);
            }
        }
        if idx.is_empty() {
            continue;
        }
        let surgeries: Vec<Surgery> = idx
            .iter()
            .map(|&i| Surgery {
                fd: plan.steps[i].fd.unwrap_or(-1),
                expect_ino: plan.steps[i].ino,
                op,
            })
            .collect();
        let outcomes = engine::check_target(pid, &opts.engine)
            .and_then(|()| engine::operate(pid, &surgeries, &opts.engine, journal));
        match outcomes {
            Ok(outs) if outs.len() == idx.len() => {
                for (&i, o) in idx.iter().zip(outs) {
                    results[i] = Some(StepResult {
                        step: plan.steps[i].clone(),
                        outcome: o,
                    });
                }
            }
            Ok(outs) => {
                let msg = format!(
                    "internal error: the engine returned {} outcomes for {} fds of process {pid}",
                    outs.len(),
                    idx.len()
                );
                for &i in &idx {
                    results[i] = Some(failed(&plan.steps[i], &msg, None));
                }
            }
            Err(e) => {
                let gone = matches!(
                    e,
                    EngineError::NoSuchProcess { .. } | EngineError::Exited { .. }
                );
                for &i in &idx {
                    results[i] = Some(StepResult {
                        step: plan.steps[i].clone(),
                        outcome: if gone {
                            Outcome::Gone {
                                what: e.to_string(),
                            }
                        } else {
                            Outcome::Failed {
                                error: e.to_string(),
                                errno: e.errno(),
                            }
                        },
                    });
                }
            }
        }
    }
    results.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pid: i32, fd: Option<i32>) -> Match {
        Match {
            pid,
            comm: "x".into(),
            fd,
            ino: 1,
            target: "socket:[1]".into(),
            socket: None,
            epoll: vec![],
        }
    }

    #[test]
    fn no_ptrace_and_orphans_fail_without_touching_anything() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(Some(&dir.path().join("j"))).unwrap();
        let plan = Plan::new(Action::Close, vec![m(999_999_999, Some(3))], None);
        let opts = ActOptions {
            no_ptrace: true,
            ..Default::default()
        };
        let r = execute(&plan, &opts, &mut j);
        assert_eq!(r.len(), 1);
        assert!(
            matches!(&r[0].outcome, Outcome::Failed { error, .. } if error.contains("--no-ptrace"))
        );

        let plan = Plan::new(Action::Close, vec![m(999_999_999, None)], None);
        let r = execute(&plan, &ActOptions::default(), &mut j);
        assert!(matches!(&r[0].outcome, Outcome::Failed { error, .. } if error.contains("orphan")));
    }

    #[test]
    fn a_missing_process_is_gone_for_each_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(Some(&dir.path().join("j"))).unwrap();
        let plan = Plan::new(
            Action::Replace,
            vec![m(999_999_999, Some(3)), m(999_999_999, Some(4))],
            None,
        );
        let r = execute(&plan, &ActOptions::default(), &mut j);
        assert_eq!(r.len(), 2);
        for s in &r {
            assert!(
                matches!(&s.outcome, Outcome::Gone { .. }),
                "{:?}",
                s.outcome
            );
        }
        assert_eq!(
            std::fs::read_to_string(j.path()).unwrap(),
            "",
            "nothing journaled"
        );
    }
}
