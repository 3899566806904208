//! `roost vmm` (not built yet).

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct VmmArgs {
    /// Arguments (not interpreted yet).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: VmmArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`roost vmm` is not built yet")
}
