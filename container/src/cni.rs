//! Container networking through the real CNI plugins (Debian's
//! `containernetworking-plugins`): a network namespace per container, bind-mounted
//! under `netns_dir` so it outlives the daemon; `loopback` for `lo`, `bridge` with
//! `host-local` IPAM for `eth0`, and `portmap` for published ports. The plugins are
//! run the way libcni runs a conflist: ADD in order with each result passed on as
//! `prevResult`, DEL in reverse. IPAM state lives in `ipam_dir`, so a sweep at
//! daemon start can find every address and release the ones no container holds.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The CNI spec version Roost speaks (plugins 1.1 support it).
const CNI_VERSION: &str = "1.0.0";
/// Where Debian installs the plugins.
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/lib/cni";
/// The plugins Roost runs.
const PLUGINS: [&str; 4] = ["loopback", "bridge", "host-local", "portmap"];

/// Errors setting up or tearing down a container's network.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// A plugin is not installed.
    #[error("CNI plugin {path} is missing; install Debian's containernetworking-plugins (ci/deps.sh does), or use `network: host`")]
    Missing {
        /// The plugin's path.
        path: String,
    },
    /// A plugin failed.
    #[error("CNI {plugin} {command} for {id}: {message}")]
    Plugin {
        /// The plugin.
        plugin: String,
        /// ADD or DEL.
        command: &'static str,
        /// Container id.
        id: String,
        /// What it said.
        message: String,
    },
    /// The network namespace could not be made or removed.
    #[error("network namespace {path}: {source}")]
    Netns {
        /// Its bind-mount path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Host port.
    pub host_port: u16,
    /// Container port.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// The host's container network.
#[derive(Debug, Clone)]
pub struct Cni {
    /// Where the plugin binaries are.
    pub plugin_dir: PathBuf,
    /// CNI network name (names the iptables chains and the IPAM directory).
    pub network: String,
    /// The Linux bridge (made by the bridge plugin on first use).
    pub bridge: String,
    /// The subnet addresses come from, e.g. `10.88.0.0/16`.
    pub subnet: String,
    /// host-local IPAM's data directory.
    pub ipam_dir: PathBuf,
    /// Where each container's namespace is bind-mounted (`<dir>/<container id>`).
    pub netns_dir: PathBuf,
}

/// A container attached to the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The namespace to put in the OCI spec.
    pub netns: PathBuf,
    /// Its address (CIDR form), as IPAM gave it.
    pub address: Option<String>,
}

impl Cni {
    /// Every plugin Roost runs is installed.
    pub fn check(&self) -> Result<(), CniError> {
        for p in PLUGINS {
            let path = self.plugin_dir.join(p);
            if !path.is_file() {
                return Err(CniError::Missing {
                    path: path.display().to_string(),
                });
            }
        }
        Ok(())
    }

    /// The namespace path of container `id`.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.netns_dir.join(id)
    }

    fn bridge_conf(&self) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": CNI_VERSION, "name": self.network, "type": "bridge",
            "bridge": self.bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": self.subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.ipam_dir,
            },
        })
    }

    fn portmap_conf(&self, ports: &[PortMapping]) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": CNI_VERSION, "name": self.network, "type": "portmap",
            "capabilities": {"portMappings": true}, "snat": true,
            "runtimeConfig": {"portMappings": ports},
        })
    }

    /// Make container `id`'s namespace and attach it (publishing `ports`); on any
    /// failure everything done so far is undone.
    pub async fn add(&self, id: &str, ports: &[PortMapping]) -> Result<Attached, CniError> {
        self.check()?;
        let netns = self.netns_path(id);
        make_netns(&netns)?;
        // portmap's DEL needs the mappings it was given: kept beside the IPAM state
        // so a DEL after a daemon crash has them too.
        if !ports.is_empty() {
            let f = self.ports_file(id);
            let written = std::fs::create_dir_all(self.ipam_dir.join("ports"))
                .and_then(|()| std::fs::write(&f, serde_json::to_vec(ports).unwrap_or_default()));
            if let Err(source) = written {
                let _ = remove_netns(&netns);
                return Err(CniError::Netns {
                    path: f.display().to_string(),
                    source,
                });
            }
        }
        match self.add_in(id, &netns, ports).await {
            Ok(address) => Ok(Attached { netns, address }),
            Err(e) => {
                if let Err(d) = self.del(id).await {
                    tracing::warn!(container = %id, error = %d, "undoing a failed network set-up");
                }
                Err(e)
            }
        }
    }

    async fn add_in(
        &self,
        id: &str,
        netns: &Path,
        ports: &[PortMapping],
    ) -> Result<Option<String>, CniError> {
        let lo = serde_json::json!({"cniVersion": CNI_VERSION, "name": self.network, "type": "loopback"});
        self.run("loopback", "ADD", id, netns, "lo", &lo).await?;
        let result = self
            .run("bridge", "ADD", id, netns, "eth0", &self.bridge_conf())
            .await?;
        let address = result["ips"][0]["address"].as_str().map(str::to_string);
        if !ports.is_empty() {
            let mut pm = self.portmap_conf(ports);
            pm["prevResult"] = result;
            self.run("portmap", "ADD", id, netns, "eth0", &pm).await?;
        }
        Ok(address)
    }

    /// Detach container `id` and remove its namespace: idempotent, and it releases the
    /// address also when the namespace is already gone.
    pub async fn del(&self, id: &str) -> Result<(), CniError> {
        let netns = self.netns_path(id);
        let ports_file = self.ports_file(id);
        let ports: Vec<PortMapping> = std::fs::read(&ports_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut first = None;
        for (plugin, ifname, conf) in [
            ("portmap", "eth0", self.portmap_conf(&ports)),
            ("bridge", "eth0", self.bridge_conf()),
        ] {
            if let Err(e) = self.run(plugin, "DEL", id, &netns, ifname, &conf).await {
                first.get_or_insert(e);
            }
        }
        remove_netns(&netns)?;
        match first {
            Some(e) => Err(e),
            None => {
                let _ = std::fs::remove_file(&ports_file);
                Ok(())
            }
        }
    }

    fn ports_file(&self, id: &str) -> PathBuf {
        self.ipam_dir.join("ports").join(format!("{id}.json"))
    }

    /// Container ids that hold an address or a namespace here (for the sweep).
    pub fn holders(&self) -> Vec<String> {
        let mut ids = std::collections::BTreeSet::new();
        if let Ok(dir) = std::fs::read_dir(self.ipam_dir.join(&self.network)) {
            for f in dir.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.starts_with("last_reserved_ip") || name == "lock" {
                    continue;
                }
                // host-local's file per address: "<container id>\r\n<ifname>".
                if let Ok(text) = std::fs::read_to_string(f.path()) {
                    if let Some(id) = text.lines().next().map(str::trim) {
                        if !id.is_empty() {
                            ids.insert(id.to_string());
                        }
                    }
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir(&self.netns_dir) {
            for f in dir.flatten() {
                ids.insert(f.file_name().to_string_lossy().into_owned());
            }
        }
        if let Ok(dir) = std::fs::read_dir(self.ipam_dir.join("ports")) {
            for f in dir.flatten() {
                if let Some(id) = f.file_name().to_string_lossy().strip_suffix(".json") {
                    ids.insert(id.to_string());
                }
            }
        }
        ids.into_iter().collect()
    }

    async fn run(
        &self,
        plugin: &str,
        command: &'static str,
        id: &str,
        netns: &Path,
        ifname: &str,
        conf: &serde_json::Value,
    ) -> Result<serde_json::Value, CniError> {
        let fail = |message: String| CniError::Plugin {
            plugin: plugin.to_string(),
            command,
            id: id.to_string(),
            message,
        };
        let mut child = tokio::process::Command::new(self.plugin_dir.join(plugin))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.plugin_dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("cannot run it: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let body = serde_json::to_vec(conf).unwrap_or_default();
            stdin
                .write_all(&body)
                .await
                .map_err(|e| fail(format!("writing its config: {e}")))?;
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .map_err(|_| fail("no answer within 60 s".into()))?
            .map_err(|e| fail(e.to_string()))?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if !out.status.success() {
            // A CNI error is JSON: {code, msg, details}.
            let msg = v["msg"].as_str().map(str::to_string).unwrap_or_else(|| {
                String::from_utf8_lossy(if out.stdout.is_empty() {
                    &out.stderr
                } else {
                    &out.stdout
                })
                .trim()
                .to_string()
            });
            let details = v["details"].as_str().unwrap_or("");
            return Err(fail(if details.is_empty() {
                msg
            } else {
                format!("{msg}: {details}")
            }));
        }
        Ok(v)
    }
}

/// A new network namespace, bind-mounted at `path` (so it lives without a process).
fn make_netns(path: &Path) -> Result<(), CniError> {
    let err = |source| CniError::Netns {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    // A leftover of a crash: start afresh.
    remove_netns(path)?;
    std::fs::File::create(path).map_err(err)?;
    let target = cstring(path).map_err(err)?;
    // A thread of its own: unshare changes only the calling thread's namespace, and
    // the thread ends right after, leaving the namespace held by the bind mount.
    let made = std::thread::spawn(move || -> std::io::Result<()> {
        // SAFETY: unshare has no memory preconditions; it affects this thread only.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let src = c"/proc/thread-self/ns/net";
        // SAFETY: both paths are valid NUL-terminated strings; no fs type or data.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")));
    if let Err(e) = made {
        let _ = std::fs::remove_file(path);
        return Err(err(e));
    }
    Ok(())
}

/// Unmount and remove a namespace's bind mount (nothing there is fine).
fn remove_netns(path: &Path) -> Result<(), CniError> {
    let err = |source| CniError::Netns {
        path: path.display().to_string(),
        source,
    };
    if !path.exists() {
        return Ok(());
    }
    let c = cstring(path).map_err(err)?;
    // SAFETY: a valid NUL-terminated path; a path that is no mount point only fails.
    let _ = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(e)),
    }
}

fn cstring(path: &Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))
}
