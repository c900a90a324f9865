//! fdclose: select → resolve → plan → act → report. Errors end here as one sentence on stderr
//! (`fdclose: error: ...`) and exit code 2; nothing is touched before the plan is confirmed.

use clap::Parser;
use color_eyre::eyre::{eyre, Result, WrapErr};
use fdclose::act::{self, ActOptions};
use fdclose::cli::Args;
use fdclose::config::{Config, Output};
use fdclose::engine::{self, EngineOptions};
use fdclose::journal::Journal;
use fdclose::model::{Match, Unreadable};
use fdclose::plan::{Action, Outcome, Plan};
use fdclose::report;
use fdclose::resolve::{self, ResolveError};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Exit codes, as ripgrep's: found/acted, nothing matched, error.
const FOUND: u8 = 0;
const NOTHING: u8 = 1;
const ERROR: u8 = 2;

fn main() -> ExitCode {
    // Errors here are sentences for an operator, never worth a backtrace; with RUST_BACKTRACE=1
    // eyre would capture one per error (seconds in a debug build). Panics still honour it.
    // Set before any thread exists.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    // Panics get color-eyre's report; ordinary errors are printed as one sentence below.
    let _ = color_eyre::install();
    let args = Args::parse();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("fdclose: error: {}", one_sentence(&e));
            ExitCode::from(ERROR)
        }
    }
}

/// The error and its causes, leaving out a cause the sentence already says (our errors spell out
/// the errno text themselves: "permission denied", not "Permission denied (os error 13)").
fn one_sentence(e: &color_eyre::Report) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        let bare = text
            .split(" (os error")
            .next()
            .unwrap_or(&text)
            .to_lowercase();
        if !out.to_lowercase().contains(&bare) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

fn run(args: &Args) -> Result<u8> {
    let cfg = Config::from_args(args)?;
    let res = resolve::resolve(&cfg.query()).map_err(with_hint)?;

    let found: Vec<Match> = res
        .matches
        .into_iter()
        .chain(res.orphans)
        .filter(|m| cfg.selection.matches(m))
        .collect();
    let plan = Plan::new(cfg.action, found, cfg.max);

    if plan.steps.is_empty() {
        if cfg.output == Output::Json {
            print(&report::plan_json_lines(&plan, res.unreadable.len()));
        } else {
            eprintln!(
                "fdclose: nothing matched in {}",
                match res.processes.len() {
                    1 => "1 process".to_string(),
                    n => format!("{n} processes"),
                }
            );
        }
        if cfg.selection.idle.is_some() && res.source == "/proc/net" {
            eprintln!("fdclose: note: /proc/net does not report idle times, so --idle matched nothing here");
        }
        report_unreadable(&res.unreadable);
        return Ok(NOTHING);
    }

    if cfg.dry_run {
        print_plan(&cfg, &plan, res.unreadable.len());
        let listening = listeners(&plan);
        if listening > 0 && !cfg.selection.listening_named {
            eprintln!(
                "fdclose: note: {listening} listening {} listed; acting on listeners needs --state listening",
                if listening == 1 { "socket is" } else { "sockets are" }
            );
        }
        report_unreadable(&res.unreadable);
        return Ok(FOUND);
    }

    let code = act(&cfg, &plan, res.unreadable.len(), res.orphans_netns);
    report_unreadable(&res.unreadable);
    code
}

/// How many of the plan's sockets are listeners (acting on one is an outage).
fn listeners(plan: &Plan) -> usize {
    plan.steps
        .iter()
        .filter(|m| report::is_listening(m))
        .count()
}

/// Refuse what would be an outage or a surprise, confirm, then execute the plan.
fn act(
    cfg: &Config,
    plan: &Plan,
    unreadable: usize,
    orphans_netns: Option<std::path::PathBuf>,
) -> Result<u8> {
    if cfg.selection.is_empty() {
        return Err(eyre!(
            "fdclose will not act on every socket of a process: name --state, --peer, --local, \
             --peer-port, --local-port, --idle, --fd or --inode (or add --dry-run to only look)"
        ));
    }
    let listening = listeners(plan);
    if listening > 0 && !cfg.selection.listening_named {
        return Err(eyre!(
            "{} listening, and acting on a listener stops the service from accepting connections: \
             add --state listening if that is what you mean, or narrow the selection (e.g. --state \
             close-wait)",
            if listening == 1 {
                "1 selected socket is".to_string()
            } else {
                format!("{listening} selected sockets are")
            }
        ));
    }
    precheck_targets(cfg, plan)?;

    print_plan(cfg, plan, unreadable);
    if !cfg.yes {
        if !std::io::stdin().is_terminal() {
            return Err(eyre!(
                "standard input is not a terminal and --yes was not given, so nothing was touched: \
                 add --yes to carry out the plan above, or --dry-run to only look"
            ));
        }
        if !confirm(plan)? {
            eprintln!("fdclose: nothing was touched");
            return Ok(NOTHING);
        }
    }
    execute(cfg, plan, orphans_netns)
}

/// Ask the engine whether each target can be acted on at all, before asking the operator, so a
/// refusal (pid 1, a traced process, a kernel thread...) comes before the question.
fn precheck_targets(cfg: &Config, plan: &Plan) -> Result<()> {
    // Shutdown goes through pidfd_getfd when the kernel has it (no stop, so no ptrace checks);
    // without it, --no-ptrace leaves no way at all: refuse before asking.
    if let Action::Shutdown { .. } = plan.action {
        match fdclose::pidfd::probe() {
            Ok(()) => return Ok(()),
            Err(_) if cfg.no_ptrace => {
                return Err(eyre!(
                    fdclose::pidfd::no_ptrace_refusal().unwrap_or_default()
                ))
            }
            Err(_) => {}
        }
    }
    if cfg.no_ptrace || plan.action == Action::Destroy {
        return Ok(());
    }
    let opts = act_options(cfg);
    for pid in plan.pids().into_iter().filter(|&p| p > 0) {
        engine::check_target(pid, &opts.engine)?;
    }
    Ok(())
}

fn act_options(cfg: &Config) -> ActOptions {
    ActOptions {
        engine: EngineOptions {
            freeze: cfg.freeze,
            tid: cfg.tid,
            allow_pid1: cfg.allow_pid1,
            ..EngineOptions::default()
        },
        no_ptrace: cfg.no_ptrace,
        ..ActOptions::default()
    }
}

/// Carry out the confirmed plan, print what happened to each step and where the journal is.
fn execute(cfg: &Config, plan: &Plan, orphans_netns: Option<std::path::PathBuf>) -> Result<u8> {
    let mut journal = Journal::open(cfg.journal.as_deref())?;
    let opts = ActOptions {
        orphans_netns,
        ..act_options(cfg)
    };
    let results = act::execute(plan, &opts, &mut journal);
    let pairs: Vec<(&Match, &Outcome)> = results.iter().map(|r| (&r.step, &r.outcome)).collect();
    match cfg.output {
        Output::Json => print(&report::results_json_lines(plan.action, &pairs)),
        Output::Table | Output::Summary => print(&report::results_text(plan.action, &pairs)),
    }
    eprintln!("fdclose: journal: {}", journal.path().display());
    let failed = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
        .count();
    if failed > 0 || results.len() != plan.steps.len() {
        eprintln!(
            "fdclose: error: {failed} of {} steps failed (reasons above)",
            plan.steps.len()
        );
        return Ok(ERROR);
    }
    Ok(FOUND)
}

/// `Close 12 sockets in 1 process? [y/N]` on the terminal.
fn confirm(plan: &Plan) -> Result<bool> {
    let n = plan.steps.len();
    let pids = plan.pids().len();
    eprint!(
        "{} {n} {} in {pids} {}? [y/N] ",
        capitalize(&report::action_words(plan.action)),
        if n == 1 { "fd" } else { "fds" },
        if pids == 1 { "process" } else { "processes" },
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .wrap_err("cannot read the answer from the terminal")?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn print_plan(cfg: &Config, plan: &Plan, unreadable: usize) {
    match cfg.output {
        Output::Json => print(&report::plan_json_lines(plan, unreadable)),
        Output::Table => print(&report::plan_text(plan)),
        Output::Summary => {
            print(&report::summary(&plan.steps));
            if plan.left_out > 0 {
                print(&format!(
                    "{} more matched but are left out by --max.\n",
                    plan.left_out
                ));
            }
        }
    }
}

/// Write to stdout; a closed pipe (`| head`) is not an error worth a message.
fn print(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes()).and_then(|_| out.flush());
}

/// Processes the all-process search could not read: counted once, never fatal.
fn report_unreadable(u: &[Unreadable]) {
    if u.is_empty() {
        return;
    }
    let shown: Vec<String> = u
        .iter()
        .take(3)
        .map(|x| format!("pid {}: {}", x.pid, x.reason))
        .collect();
    let more = if u.len() > 3 {
        format!("; and {} more", u.len() - 3)
    } else {
        String::new()
    };
    eprintln!(
        "fdclose: {} {} could not be read and {} skipped ({}{more})",
        u.len(),
        if u.len() == 1 { "process" } else { "processes" },
        if u.len() == 1 { "was" } else { "were" },
        shown.join("; ")
    );
}

/// Resolver errors with what the operator can do about them.
fn with_hint(e: ResolveError) -> color_eyre::Report {
    match e {
        ResolveError::NoSuchPid { pid } => eyre!(
            "no process with pid {pid}: check the number with `ps -p {pid}` or select by name with --comm"
        ),
        ResolveError::NoSuchComm { comm } => eyre!(
            "no process is named '{comm}': names are matched exactly against /proc/PID/comm (see `ps -eo pid,comm`)"
        ),
        other => eyre!(other),
    }
}
