//! Where central is and how to prove we are its operator: `--addr`, `--token-file`,
//! `--ca-file` (as for a remote host), or `--data-dir` for all three at once.

use super::CliError;
use clap::Args;
use roost_host::client::{Client, ClientError};
use std::path::{Path, PathBuf};

/// Connection flags of every `roost central` verb.
#[derive(Debug, Args, Clone)]
pub struct Conn {
    /// Central's URL, e.g. https://10.0.0.1:7443; with replicas, several (repeat the flag
    /// or separate with commas): the first that answers is used [env: ROOST_CENTRAL_ADDR,
    /// ROOST_ADDR; default: from --data-dir].
    #[arg(long, global = true, value_name = "URL", value_delimiter = ',')]
    pub addr: Vec<String>,
    /// The operator token, in a file [env: ROOST_CENTRAL_TOKEN_FILE, ROOST_TOKEN_FILE; default: DATA_DIR/operator.token].
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Central's CA certificate (PEM) [env: ROOST_CENTRAL_CACERT, ROOST_CACERT; default: DATA_DIR/ca.pem].
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Central's data dir, on central's machine: takes the address, token and CA from it [env: ROOST_CENTRAL_DATA_DIR].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// A client bound to central, with its own runtime.
pub struct Remote {
    pub(super) client: Client,
    url: String,
    rt: tokio::runtime::Runtime,
}

fn env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Read {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl Conn {
    /// Resolve the flags, environment and data dir into a client.
    pub fn remote(&self) -> Result<Remote, CliError> {
        let data = self
            .data_dir
            .clone()
            .or_else(|| env(&["ROOST_CENTRAL_DATA_DIR"]).map(PathBuf::from));
        let given = if self.addr.is_empty() {
            env(&["ROOST_CENTRAL_ADDR", "ROOST_ADDR"])
        } else {
            Some(self.addr.join(","))
        };
        let url = match given {
            Some(u) => first_answering(&u),
            None => match &data {
                Some(d) => String::from_utf8_lossy(&read("central's address file", &d.join("address"))?)
                    .trim()
                    .to_string(),
                None => {
                    return Err(CliError::Setting(
                        "where is central? give --addr https://CENTRAL:PORT (or ROOST_CENTRAL_ADDR), or --data-dir DIR on central's machine".into(),
                    ))
                }
            },
        };
        let token_file = self
            .token_file
            .clone()
            .or_else(|| env(&["ROOST_CENTRAL_TOKEN_FILE", "ROOST_TOKEN_FILE"]).map(PathBuf::from))
            .or_else(|| data.as_ref().map(|d| d.join("operator.token")))
            .ok_or_else(|| {
                CliError::Setting(
                    "--token-file FILE is needed: the operator token central made (DATA_DIR/operator.token), or give --data-dir".into(),
                )
            })?;
        let token = String::from_utf8_lossy(&read("the operator token file", &token_file)?)
            .trim()
            .to_string();
        let ca_file = self
            .ca_file
            .clone()
            .or_else(|| env(&["ROOST_CENTRAL_CACERT", "ROOST_CACERT"]).map(PathBuf::from))
            .or_else(|| data.as_ref().map(|d| d.join("ca.pem")));
        let ca = match &ca_file {
            Some(f) => Some(read("central's CA file", f)?),
            None => None,
        };
        let client = Client::remote(&url, &token, ca.as_deref())
            .map_err(|e| CliError::Setting(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Runtime(e.to_string()))?;
        Ok(Remote { client, url, rt })
    }
}

/// Of comma-separated URLs, the first whose port accepts a connection (central
/// replicas: any of them serves every verb); the first when none does (its error is
/// then reported).
fn first_answering(urls: &str) -> String {
    let list: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if list.len() > 1 {
        for u in &list {
            let authority = u.trim_start_matches("https://").trim_end_matches('/');
            let Ok(mut addrs) = std::net::ToSocketAddrs::to_socket_addrs(authority) else {
                continue;
            };
            if addrs.any(|a| {
                std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok()
            }) {
                return (*u).to_string();
            }
        }
    }
    list.first().map_or_else(String::new, |u| (*u).to_string())
}

impl Remote {
    /// Central's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Run one client future; transport errors become [`CliError`]s naming central.
    pub(super) fn block_on<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, CliError> {
        self.rt.block_on(f).map_err(|e| match e {
            ClientError::Http(reason) => CliError::Http {
                addr: self.url.clone(),
                reason,
            },
            other => CliError::Connect {
                addr: self.url.clone(),
                reason: other.to_string(),
            },
        })
    }
}
