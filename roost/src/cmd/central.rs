//! `roost central`: the central controller (not built yet).

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CentralArgs {
    /// State directory for the controller's store.
    #[arg(long, env = "ROOST_HOME")]
    pub state_dir: Option<std::path::PathBuf>,
}

pub fn run(_args: CentralArgs) -> anyhow::Result<ExitCode> {
    eprintln!("roost central: {}", roost_federation::STATUS);
    // 69 = EX_UNAVAILABLE: the role exists in the CLI but not yet in the code.
    Ok(ExitCode::from(69))
}
