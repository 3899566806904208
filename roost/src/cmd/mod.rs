//! Front ends: each module parses one subcommand's flags and calls a library core.

pub mod central;
pub mod client;
pub mod exec;
pub mod host;
pub mod host_config;
pub mod image;
pub mod probe;
pub mod sim;
mod tty;
pub mod vmm;

/// An error and its causes on one line: `what failed: because: because`.
pub fn chain(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for (i, c) in e.chain().enumerate() {
        if i > 0 {
            s.push_str(": ");
        }
        s.push_str(&c.to_string());
    }
    s
}

/// Set up `tracing` for a long-running role; `RUST_LOG` overrides the default level.
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
