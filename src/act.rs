//! Carry out a plan and say what happened to each step.
//!
//! One `match` on the plan's action picks the way: close, shutdown and replace run inside the
//! process through the ptrace engine, one attach per process for all of its fds.

use crate::engine::{self, EngineError, EngineOptions, Op, Surgery};
use crate::journal::{Entry, Event, Journal};
use crate::model::Match;
use crate::plan::{Action, How, Outcome, Plan};
use serde::Serialize;

#[derive(Clone, Debug, Default)]
pub struct ActOptions {
    pub engine: EngineOptions,
    /// Never stop a process with ptrace.
    pub no_ptrace: bool,
    /// Namespace the orphans were listed in, where SOCK_DESTROY must run for them (`--netns`,
    /// `Resolution::orphans_netns`); `None` = ours.
    pub orphans_netns: Option<std::path::PathBuf>,
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
        Action::Shutdown { how } => shutdown(plan, how, opts, journal),
        Action::Replace => by_ptrace(plan, Op::Replace, opts, journal),
        Action::Destroy => destroy(plan, opts, journal),
    }
}

// ---- pidfd and sock_diag paths (no process is stopped) ---------------------------------------

/// Shutdown without stopping anyone: through pidfd_getfd when the kernel has it, else (unless
/// --no-ptrace) through the ptrace engine. Steps pidfd could not reach for lack of kernel support
/// go to the engine too.
fn shutdown(plan: &Plan, how: How, opts: &ActOptions, journal: &mut Journal) -> Vec<StepResult> {
    if let Err(why) = crate::pidfd::probe() {
        if opts.no_ptrace {
            let msg = crate::pidfd::no_ptrace_refusal().unwrap_or_else(|| why.to_string());
            return plan.steps.iter().map(|m| failed(m, &msg, None)).collect();
        }
        return by_ptrace(plan, Op::Shutdown(how), opts, journal);
    }
    let mut results: Vec<Option<StepResult>> = vec![None; plan.steps.len()];
    let mut fallback = Vec::new();
    for (i, m) in plan.steps.iter().enumerate() {
        match crate::pidfd::shutdown_journaled(m, how, journal) {
            Ok(outcome) => {
                results[i] = Some(StepResult {
                    step: m.clone(),
                    outcome,
                })
            }
            Err(why) if opts.no_ptrace => {
                results[i] = Some(failed(m, &format!("--no-ptrace: {why}"), None))
            }
            Err(_) => fallback.push(i),
        }
    }
    if !fallback.is_empty() {
        let rest = Plan {
            action: plan.action,
            steps: fallback.iter().map(|&i| plan.steps[i].clone()).collect(),
            left_out: 0,
        };
        for (r, &i) in by_ptrace(&rest, Op::Shutdown(how), opts, journal)
            .into_iter()
            .zip(&fallback)
        {
            results[i] = Some(r);
        }
    }
    results.into_iter().flatten().collect()
}

/// SOCK_DESTROY each socket in its namespace; one socket's failure never stops the others.
fn destroy(plan: &Plan, opts: &ActOptions, journal: &mut Journal) -> Vec<StepResult> {
    let mut d = crate::destroy::Destroyer::new(opts.orphans_netns.clone());
    plan.steps
        .iter()
        .map(|m| StepResult {
            step: m.clone(),
            outcome: d.destroy_journaled(m, journal),
        })
        .collect()
}

// ---- ptrace engine ---------------------------------------------------------------------------

fn failed(m: &Match, error: &str, errno: Option<i32>) -> StepResult {
    StepResult {
        step: m.clone(),
        outcome: Outcome::Failed {
            error: error.to_string(),
            errno,
        },
    }
}

fn planned_entry(m: &Match, op: Op) -> Entry {
    let sock = m.socket.as_ref();
    Entry::new(Event::Planned {
        pid: m.pid,
        fd: m.fd.unwrap_or(-1),
        inode: m.ino,
        target: m.target.clone(),
        action: op.name().into(),
        proto: sock.map(|s| s.proto.name().to_string()),
        local: sock.and_then(|s| s.local_display()).map(|a| a.to_string()),
        peer: sock.and_then(|s| s.peer_display()).map(|a| a.to_string()),
        state: sock.map(|s| s.state.name().to_string()),
    })
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
        // The connections as planned go to the journal first, so it names what each fd was.
        let planned: Vec<Entry> = idx
            .iter()
            .map(|&i| planned_entry(&plan.steps[i], op))
            .collect();
        let outcomes = engine::check_target(pid, &opts.engine)
            .and_then(|()| journal.record_all(&planned).map_err(EngineError::from))
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
