//! `roost probe` (not built yet).

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Arguments (not interpreted yet).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: ProbeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`roost probe` is not built yet")
}
