//! `roost image` (not built yet).

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// Arguments (not interpreted yet).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: ImageArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`roost image` is not built yet")
}
