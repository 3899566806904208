//! `roost central`: alone it runs the central controller (`serve`); with a verb it is
//! the operator's client (`cli`). The HTTP front end of central's API is `api`; the
//! controller itself is `roost_federation::central`.

mod api;
mod cli;
mod console;
mod serve;

use clap::Args;
use std::process::ExitCode;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CentralArgs {
    #[command(subcommand)]
    pub command: Option<cli::CentralCmd>,
    #[command(flatten)]
    pub server: serve::ServeArgs,
}

pub fn run(args: CentralArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(c) => cli::run(c),
        None => serve::run(args.server),
    }
}
