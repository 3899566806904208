//! `roost host`: the per-host daemon (not built yet).

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct HostArgs {
    /// State directory (store, logs, sockets).
    #[arg(long, env = "ROOST_HOME")]
    pub state_dir: Option<std::path::PathBuf>,
}

pub fn run(_args: HostArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`roost host` is not built yet")
}
