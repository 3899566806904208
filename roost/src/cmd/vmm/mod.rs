//! `roost vmm`: one VM's monitor process. One-shot with `--kernel` (the console on
//! stdout, exit 0 when the guest shuts down, 3 when it crashes) or API mode with
//! `--api-sock` (HTTP/JSON on a Unix socket; see `api.rs`).
//!
//! This process stays lean on purpose (no async runtime): its memory outside guest RAM
//! is part of every VM's cost.

mod api;
mod http;

use anyhow::Context;
use clap::Args;
use roost_vmm::virtio::block::DiskConfig;
use roost_vmm::{config, BootProtocol, RtPolicy, Vm, VmConfig, VmEnd};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code when the guest crashed.
pub const EXIT_CRASHED: u8 = 3;
/// Exit code when the VM was stopped from outside.
pub const EXIT_STOPPED: u8 = 4;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["kernel", "api_sock"])))]
pub struct VmmArgs {
    /// One-shot: the kernel to boot (ELF vmlinux, with or without a PVH note, or bzImage).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// One-shot: an initrd.
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// One-shot: the kernel command line.
    #[arg(long, value_name = "STR", default_value = "", requires = "kernel")]
    pub cmdline: String,
    /// One-shot: number of vCPUs (1-64).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "kernel")]
    pub vcpus: u32,
    /// One-shot: guest memory in MiB.
    #[arg(long, value_name = "M", default_value_t = 128, requires = "kernel")]
    pub memory_mib: u64,
    /// One-shot: host CPUs for the vCPUs (`0,2-3`); vCPU i runs on the i-th (round robin).
    #[arg(long, value_name = "LIST", requires = "kernel")]
    pub cpus: Option<String>,
    /// One-shot: real-time priority (1-99) of the vCPU threads.
    #[arg(long, value_name = "P", requires = "kernel")]
    pub rt_priority: Option<u32>,
    /// One-shot: real-time policy (`fifo` or `rr`) when --rt-priority is given.
    #[arg(long, value_name = "POLICY", default_value = "fifo", value_parser = parse_policy, requires = "kernel")]
    pub rt_policy: RtPolicy,
    /// One-shot: boot protocol: `auto` (PVH if the ELF has the note) or `linux` (64-bit).
    #[arg(long, value_name = "PROTO", default_value = "auto", value_parser = parse_boot, requires = "kernel")]
    pub boot: BootProtocol,
    /// One-shot: a virtio-blk disk, `PATH[,ro][,root][,direct][,id=ID][,bps=N][,iops=N]`
    /// (repeatable; bps/iops are rate limits in bytes and operations per second).
    #[arg(long = "disk", value_name = "SPEC", value_parser = parse_disk, requires = "kernel")]
    pub disks: Vec<DiskConfig>,
    /// API mode: serve the API on this Unix socket (removed on exit).
    #[arg(long, value_name = "PATH", conflicts_with = "kernel")]
    pub api_sock: Option<PathBuf>,
    /// A label for finding this process again (the daemon's VM driver sets it); unused.
    #[arg(long, value_name = "TAG", hide = true)]
    pub tag: Option<String>,
    /// API mode: write how the VM ended (JSON) to this file when it ends.
    #[arg(long, value_name = "PATH", requires = "api_sock")]
    pub state_file: Option<PathBuf>,
}

fn parse_policy(s: &str) -> Result<RtPolicy, String> {
    match s {
        "fifo" => Ok(RtPolicy::Fifo),
        "rr" => Ok(RtPolicy::Rr),
        _ => Err(format!("{s:?}: expected `fifo` or `rr`")),
    }
}

fn parse_disk(s: &str) -> Result<DiskConfig, String> {
    let mut parts = s.split(',');
    let path = parts
        .next()
        .filter(|p| !p.is_empty())
        .ok_or("give a path first")?;
    let mut d = DiskConfig::new(path);
    let num = |k: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| format!("{k}={v:?}: expected a whole number"))
    };
    for p in parts {
        match p.split_once('=') {
            None if p == "ro" => d.read_only = true,
            None if p == "root" => d.root = true,
            None if p == "direct" => d.direct = true,
            Some(("id", v)) => d.id = Some(v.to_string()),
            Some(("bps", v)) => {
                d.rate_limit
                    .get_or_insert_with(Default::default)
                    .bytes_per_sec = Some(num("bps", v)?)
            }
            Some(("iops", v)) => {
                d.rate_limit
                    .get_or_insert_with(Default::default)
                    .ops_per_sec = Some(num("iops", v)?)
            }
            _ => {
                return Err(format!(
                    "{p:?}: expected ro, root, direct, id=ID, bps=N or iops=N"
                ))
            }
        }
    }
    Ok(d)
}

fn parse_boot(s: &str) -> Result<BootProtocol, String> {
    match s {
        "auto" => Ok(BootProtocol::Auto),
        "linux" => Ok(BootProtocol::Linux),
        _ => Err(format!("{s:?}: expected `auto` or `linux`")),
    }
}

pub fn run(args: VmmArgs) -> anyhow::Result<ExitCode> {
    init_tracing();
    if let Some(sock) = args.api_sock {
        return api::serve(&sock, args.state_file.as_deref());
    }
    let Some(kernel) = args.kernel else {
        anyhow::bail!("give --kernel PATH (one-shot) or --api-sock PATH (API mode)");
    };
    let mut cfg = VmConfig::new(kernel);
    cfg.initrd = args.initrd;
    cfg.cmdline = args.cmdline;
    cfg.vcpus = args.vcpus;
    cfg.memory_mib = args.memory_mib;
    if let Some(list) = &args.cpus {
        cfg.cpus = config::parse_cpu_list(list)?;
    }
    cfg.rt_priority = args.rt_priority;
    cfg.rt_policy = args.rt_policy;
    cfg.boot = args.boot;
    cfg.disks = args.disks;
    cfg.seccomp = seccomp_on();

    let vm = Vm::create(cfg, Box::new(std::io::stdout())).context("cannot create the VM")?;
    vm.start().context("cannot start the VM")?;
    trim();
    if seccomp_on() {
        roost_vmm::seccomp::install(roost_vmm::seccomp::ThreadKind::Api)
            .context("cannot lock down the monitor")?;
    }
    let end = vm.wait();
    let m = vm.metrics();
    let e = m.exits;
    eprintln!(
        "roost vmm: {} after {} ms{}; exits: io_in={} io_out={} mmio_read={} mmio_write={} internal_error={} shutdown={}; unhandled_io={} unhandled_mmio={}",
        end.status(),
        m.uptime_ms,
        match &end {
            VmEnd::Crashed(r) => format!(" ({r})"),
            _ => String::new(),
        },
        e.io_in,
        e.io_out,
        e.mmio_read,
        e.mmio_write,
        e.internal_error,
        e.shutdown,
        m.unhandled_io,
        m.unhandled_mmio,
    );
    Ok(exit_code(&end))
}

/// Seccomp filters on every thread unless `ROOST_VMM_NO_SECCOMP=1` (to debug a
/// monitor under a tracer, or on a kernel without seccomp).
pub(crate) fn seccomp_on() -> bool {
    std::env::var_os("ROOST_VMM_NO_SECCOMP").is_none_or(|v| v != "1")
}

/// The API kind's filter on the calling thread (when filters are on).
pub(crate) fn seccomp_api_thread() {
    if seccomp_on() {
        if let Err(e) = roost_vmm::seccomp::install(roost_vmm::seccomp::ThreadKind::Api) {
            tracing::error!(error = %e, "monitor thread runs without its seccomp filter");
        }
    }
}

/// Unmap start-up code once the VM runs (see `roost_vmm::trim`); `ROOST_VMM_NO_TRIM=1`
/// keeps it (to measure the difference).
pub(crate) fn trim() {
    if std::env::var_os("ROOST_VMM_NO_TRIM").is_none() {
        if let Err(e) = roost_vmm::trim::trim_startup_pages() {
            tracing::debug!(error = %e, "cannot trim start-up pages");
        }
    }
}

/// Logs to stderr: `RUST_LOG` when set, else warnings only through a plain level filter
/// (no env-filter machinery: the monitor's RSS is part of every VM's cost).
fn init_tracing() {
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let _ = if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .try_init()
    } else {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .try_init()
    };
}

/// 0 = shutdown, 3 = crashed, 4 = stopped.
pub fn exit_code(end: &VmEnd) -> ExitCode {
    match end {
        VmEnd::Shutdown => ExitCode::SUCCESS,
        VmEnd::Crashed(_) => ExitCode::from(EXIT_CRASHED),
        VmEnd::Stopped => ExitCode::from(EXIT_STOPPED),
    }
}
