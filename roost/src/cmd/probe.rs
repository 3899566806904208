//! `roost probe latency`: the cyclictest-style latency probe, natively or placed by
//! Roost's scheduler in its cgroup tree; `roost probe run`: run any command placed
//! the same way (a native workload, for benchmarks without a container runtime).

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use roost_host_config::{HostPlan, Profile, Topology};
use roost_scheduler::native::NativeWorkload;
use roost_scheduler::probe::{self, ProbeConfig};
use roost_scheduler::{CpuRequest, Request, RtPolicy};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct ProbeArgs {
    #[command(subcommand)]
    pub command: ProbeCmd,
}

#[derive(Debug, Subcommand)]
pub enum ProbeCmd {
    /// Measure wake-up latency and response time of a periodic loop.
    Latency(LatencyArgs),
    /// Run a command as a workload placed by Roost's scheduler (natively, in Roost's
    /// cgroup tree), and clean up when it ends.
    Run(RunArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    Fifo,
    Rr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlaceArg {
    /// On isolated cores with a real-time policy and budget.
    Realtime,
    /// Millicores of the shared pool.
    Shared,
}

/// Where Roost's scheduler should put a native workload.
#[derive(Debug, Args)]
pub struct Placing {
    /// Host profile (TOML) for placement; without it, the default partition.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Name of Roost's cgroup tree (the daemon's is `roost`).
    #[arg(long, default_value = "roost-native")]
    pub cgroup_prefix: String,
    /// Workload name (its cgroup directory).
    #[arg(long, default_value = "probe")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// Pin the loop to this CPU (with --place, the scheduler picks).
    #[arg(long)]
    pub cpu: Option<u32>,
    /// Real-time priority 1–99 (SCHED_FIFO unless --policy rr); absent = SCHED_OTHER.
    #[arg(long)]
    pub priority: Option<u32>,
    /// Real-time policy used with --priority.
    #[arg(long, value_enum, default_value = "fifo")]
    pub policy: PolicyArg,
    /// How long to run, seconds (at most 3600).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Period, µs.
    #[arg(long, default_value_t = 1000)]
    pub period_us: u64,
    /// CPU time to compute each period, µs (a control loop's work).
    #[arg(long, default_value_t = 0)]
    pub work_us: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Do not hold /dev/cpu_dma_latency at 0 during the run (cyclictest holds it).
    #[arg(long)]
    pub no_pm_qos: bool,
    /// Let Roost's scheduler place the probe (admission, cgroup, policy).
    #[arg(long, value_enum)]
    pub place: Option<PlaceArg>,
    /// With --place shared: millicores to ask for.
    #[arg(long, default_value_t = 1000)]
    pub millicores: u32,
    #[command(flatten)]
    pub placing: Placing,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Shared-pool millicores (the default class, 1000 unless given).
    #[arg(long, conflicts_with_all = ["dedicated", "realtime"])]
    pub millicores: Option<u32>,
    /// Whole dedicated cores.
    #[arg(long)]
    pub dedicated: Option<u32>,
    /// Real-time priority on one isolated core (SCHED_FIFO).
    #[arg(long)]
    pub realtime: Option<u32>,
    /// Memory limit, MiB.
    #[arg(long, default_value_t = 0)]
    pub memory_mib: u64,
    /// Stop the command after this many seconds (at most 3600).
    #[arg(long)]
    pub seconds: f64,
    #[command(flatten)]
    pub placing: Placing,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

pub fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ProbeCmd::Latency(a) => latency(a),
        ProbeCmd::Run(a) => run_placed(a),
    }
}

fn policy(p: PolicyArg) -> RtPolicy {
    match p {
        PolicyArg::Fifo => RtPolicy::Fifo,
        PolicyArg::Rr => RtPolicy::Rr,
    }
}

fn plan(profile: Option<&Path>) -> anyhow::Result<HostPlan> {
    let topo = Topology::this_host().context("reading the host's topology")?;
    Ok(match profile {
        Some(p) => HostPlan::resolve(&Profile::load(p)?, topo, &p.display().to_string())?,
        None => HostPlan::default_for(topo)?,
    })
}

fn place(p: &Placing, req: &Request) -> anyhow::Result<NativeWorkload> {
    NativeWorkload::place(plan(p.profile.as_deref())?, &p.cgroup_prefix, &p.name, req)
        .with_context(|| format!("placing `{}`", p.name))
}

fn latency(a: LatencyArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = ProbeConfig {
        cpu: a.cpu,
        priority: a.priority,
        policy: policy(a.policy),
        seconds: a.seconds,
        period_us: a.period_us,
        work_us: a.work_us,
        pm_qos: !a.no_pm_qos,
        lock_memory: true,
    };
    cfg.validate()?;
    let placed = match a.place {
        None => None,
        Some(kind) => {
            let cpu = match kind {
                PlaceArg::Realtime => CpuRequest::Realtime {
                    cpus: 1,
                    policy: cfg.policy,
                    priority: cfg.priority.unwrap_or(80),
                    budget_us: None,
                },
                PlaceArg::Shared => CpuRequest::Shared {
                    millicores: a.millicores,
                },
            };
            let w = place(&a.placing, &Request { cpu, memory_mib: 0 })?;
            w.enter().context("moving the probe into its cgroup")?;
            let alloc = w.allocation();
            if let Some(cpu) = a.cpu {
                if !alloc.cpus.is_empty() && !alloc.cpus.contains(cpu) {
                    anyhow::bail!(
                        "--cpu {cpu}: the scheduler placed the probe on CPU {}; drop --cpu or \
                         change the profile",
                        alloc.cpus
                    );
                }
            }
            cfg.cpu = alloc.cpus.first().or(cfg.cpu);
            if let Some(g) = alloc.rt {
                cfg.priority = Some(g.priority);
            }
            Some(w)
        }
    };
    let report = probe::run(&cfg)?;
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(w), Some(obj)) = (&placed, v.as_object_mut()) {
            obj.insert("cgroup".into(), w.cgroup().into());
            obj.insert("placement".into(), serde_json::to_value(w.allocation())?);
        }
        println!("{v}");
    } else {
        if let Some(w) = &placed {
            println!(
                "placed by Roost: cgroup {}, {:?}",
                w.cgroup(),
                w.allocation().class
            );
        }
        print!("{}", report.text());
    }
    drop(placed);
    Ok(ExitCode::SUCCESS)
}

fn run_placed(a: RunArgs) -> anyhow::Result<ExitCode> {
    if !(a.seconds.is_finite() && (0.1..=3600.0).contains(&a.seconds)) {
        anyhow::bail!("--seconds: {} is out of range; use 0.1 to 3600", a.seconds);
    }
    let cpu = match (a.dedicated, a.realtime) {
        (Some(n), None) => CpuRequest::Dedicated { cpus: n },
        (None, Some(p)) => CpuRequest::Realtime {
            cpus: 1,
            policy: RtPolicy::Fifo,
            priority: p,
            budget_us: None,
        },
        (None, None) => CpuRequest::Shared {
            millicores: a.millicores.unwrap_or(1000),
        },
        (Some(_), Some(_)) => anyhow::bail!("--dedicated and --realtime exclude each other"),
    };
    let w = place(
        &a.placing,
        &Request {
            cpu,
            memory_mib: a.memory_mib,
        },
    )?;
    // The child inherits the cgroup (and policy) of this process at fork; this
    // process leaves right after, so only the command's processes stay.
    w.enter().context("entering the workload's cgroup")?;
    let (prog, rest) = a
        .command
        .split_first()
        .context("no command given after --")?;
    let spawned = std::process::Command::new(prog).args(rest).spawn();
    w.leave().context("leaving the workload's cgroup")?;
    let mut child = spawned.with_context(|| format!("starting `{prog}`"))?;
    eprintln!(
        "roost probe run: `{prog}` (pid {}) placed in {} ({:?}, CPUs {})",
        child.id(),
        w.cgroup(),
        w.allocation().class,
        if w.allocation().cpus.is_empty() {
            "of the shared pool".to_string()
        } else {
            w.allocation().cpus.to_string()
        }
    );
    let deadline = Instant::now() + Duration::from_secs_f64(a.seconds);
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let code = match status {
        Some(st) => st.code().unwrap_or(1),
        None => {
            // Polite first (stress-ng stops its workers on SIGTERM), then forced.
            let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
            // SAFETY: kill with a pid we spawned and have not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let grace = Instant::now() + Duration::from_secs(3);
            while child.try_wait()?.is_none() && Instant::now() < grace {
                std::thread::sleep(Duration::from_millis(50));
            }
            if child.try_wait()?.is_none() {
                child.kill()?;
                child.wait()?;
            }
            0
        }
    };
    // Workers of the command may take a moment to leave the cgroup.
    for _ in 0..40 {
        if roost_scheduler::cgroup::CgroupBackend::read(&cg_reader(&a.placing)?, w.cgroup())
            .map(|s| s.tasks.is_empty())
            .unwrap_or(true)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(w);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

fn cg_reader(p: &Placing) -> anyhow::Result<roost_scheduler::cgroup::v1::V1> {
    Ok(roost_scheduler::cgroup::v1::V1::discover(
        Path::new("/proc"),
        &p.cgroup_prefix,
    )?)
}
