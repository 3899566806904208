//! `roost host config check [FILE]`: the effective CPU partition of a host profile on
//! this machine, with warnings and their fixes. The checks live in roost-host-config.

use roost_host_config::{HostPlan, Profile, ProfileError, Topology};
use std::path::PathBuf;
use std::process::ExitCode;

/// EX_CONFIG: the profile cannot be used here.
const EXIT_CONFIG: u8 = 64;

/// Print the effective partition for `file` (or the built-in default) on this host.
/// Exit 0 when usable (warnings included), 64 when not, with every problem listed.
pub fn check(file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let topo = Topology::this_host()?;
    let result = match &file {
        Some(p) => Profile::load(p)
            .and_then(|prof| HostPlan::resolve(&prof, topo, &p.display().to_string())),
        None => HostPlan::default_for(topo),
    };
    match result {
        Ok(plan) => {
            print!("{}", plan.describe());
            if plan.warnings.is_empty() {
                println!("ok: no warnings");
            } else {
                println!("ok: usable, {} warning(s)", plan.warnings.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ProfileError::Invalid { origin, problems }) => {
            eprintln!("host profile {origin} is not usable on this host:");
            for p in &problems {
                eprintln!("  error: {p}");
            }
            Ok(ExitCode::from(EXIT_CONFIG))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EXIT_CONFIG))
        }
    }
}
