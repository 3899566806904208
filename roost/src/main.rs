//! `roost`: the one binary. Every role is a subcommand; each subcommand module parses
//! its flags and hands a typed request to a library core.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cmd;

/// Roost: a host runtime for edge sites — KVM microVMs and containerd containers
/// under one real-time-aware scheduler, managed centrally.
#[derive(Debug, Parser)]
#[command(name = "roost", version, about, propagate_version = true)]
#[command(infer_subcommands = false, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the per-host daemon (`roost host`), or ask it about the host (`roost host info`).
    Host(Box<cmd::host::HostArgs>),
    /// Run the central controller that manages subclouds of hosts.
    Central(cmd::central::CentralArgs),
    /// Run one VM's monitor process (one-shot with --kernel, or API mode with --api-sock).
    Vmm(cmd::vmm::VmmArgs),
    /// Simulate many hosts against a central (real link protocol, in-memory runtimes).
    Sim(cmd::sim::SimArgs),
    /// Measure wake-up latency and response time (a cyclictest-style probe).
    Probe(cmd::probe::ProbeArgs),
    /// Create or update workloads from a spec file (YAML or JSON).
    Apply(cmd::client::ApplyArgs),
    /// List workloads.
    Ps(cmd::client::PsArgs),
    /// Show one workload in full.
    Inspect(cmd::client::InspectArgs),
    /// Print a workload's output.
    Logs(cmd::client::LogsArgs),
    /// Stop a workload (polite stop, grace period, then kill).
    Stop(cmd::client::NameArgs),
    /// Start a stopped or ended workload.
    Start(cmd::client::NameArgs),
    /// Stop and remove a workload.
    Rm(cmd::client::NameArgs),
    /// Print the host's event log (resumable with --cursor).
    Events(cmd::client::EventsArgs),
    /// Manage the daemon's container images (import, pull, ls, rm, prune).
    Image(cmd::image::ImageArgs),
    /// Run a command inside a container workload's running instance (`roost exec NAME -- CMD`).
    Exec(cmd::exec::ExecArgs),
}

/// `--socket PATH` is global (`roost --socket S ps` as well as `roost ps --socket S`):
/// clap's global args only flow down into subcommands, so one given before the
/// subcommand is moved just after it.
fn hoist_socket(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let Some(i) = args
        .iter()
        .skip(1)
        .position(|a| a == "--socket" || a.to_string_lossy().starts_with("--socket="))
        .map(|i| i + 1)
    else {
        return args;
    };
    // Only when it comes before the subcommand.
    if args[1..i]
        .iter()
        .any(|a| !a.to_string_lossy().starts_with('-'))
    {
        return args;
    }
    let n = if args[i] == "--socket" { 2 } else { 1 };
    if i + n > args.len() {
        return args;
    }
    let flag: Vec<_> = args.drain(i..i + n).collect();
    let Some(sub) = (i..args.len()).find(|&j| !args[j].to_string_lossy().starts_with('-')) else {
        args.splice(i..i, flag);
        return args;
    };
    args.splice(sub + 1..sub + 1, flag);
    args
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `roost container-log FILE` is run by containerd's shim for every container start
    // (the log copier), so it skips building the CLI parser: it is hidden, not for users.
    if args
        .get(1)
        .is_some_and(|a| a == roost_container::logcopy::SUBCOMMAND)
    {
        return container_log(&args[2..]);
    }
    let cli = Cli::parse_from(hoist_socket(args));
    let result = match cli.command {
        Command::Host(a) => cmd::host::run(*a),
        Command::Central(a) => cmd::central::run(a),
        Command::Vmm(a) => cmd::vmm::run(a),
        Command::Probe(a) => cmd::probe::run(a),
        Command::Sim(a) => cmd::sim::run(a),
        Command::Image(a) => cmd::image::run(a),
        Command::Exec(a) => cmd::exec::run(a),
        Command::Apply(a) => cmd::client::apply(a),
        Command::Ps(a) => cmd::client::ps(a),
        Command::Inspect(a) => cmd::client::inspect(a),
        Command::Logs(a) => cmd::client::logs(a),
        Command::Stop(a) => cmd::client::stop(a),
        Command::Start(a) => cmd::client::start(a),
        Command::Rm(a) => cmd::client::rm(a),
        Command::Events(a) => cmd::client::events(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One clear line (plus its causes) on stderr; exit 1 = the command failed.
            eprintln!("error: {}", cmd::chain(&e));
            ExitCode::from(1)
        }
    }
}

fn container_log(args: &[std::ffi::OsString]) -> ExitCode {
    let [file] = args else {
        eprintln!(
            "usage: roost {} FILE (run by containerd's shim through a binary:// log URI)",
            roost_container::logcopy::SUBCOMMAND
        );
        return ExitCode::from(2);
    };
    match roost_container::logcopy::run(std::path::Path::new(file)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}: {e}", roost_container::logcopy::SUBCOMMAND);
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hoist_socket;

    /// clap's own consistency checks (e.g. a `--version` of a verb clashing with the
    /// propagated version flag) over every subcommand.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    fn run(a: &[&str]) -> Vec<String> {
        hoist_socket(a.iter().map(Into::into).collect())
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn socket_before_the_subcommand_moves_after_it() {
        assert_eq!(
            run(&["roost", "--socket", "/s", "ps", "-o", "json"]),
            ["roost", "ps", "--socket", "/s", "-o", "json"]
        );
        assert_eq!(
            run(&["roost", "--socket=/s", "rm", "x"]),
            ["roost", "rm", "--socket=/s", "x"]
        );
        assert_eq!(
            run(&["roost", "ps", "--socket", "/s"]),
            ["roost", "ps", "--socket", "/s"]
        );
        // Missing value or subcommand: left for clap to report.
        assert_eq!(run(&["roost", "--socket"]), ["roost", "--socket"]);
        assert_eq!(
            run(&["roost", "--socket", "/s"]),
            ["roost", "--socket", "/s"]
        );
    }
}
