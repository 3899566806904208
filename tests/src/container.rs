//! Helpers for the container integration tests: the private containerd's socket, a
//! busybox image built here (no registry on the internet), a loopback registry, and
//! leak checks on a containerd namespace.

use roost_container::Client;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The private containerd's socket, or None (with a message saying what is needed).
pub fn socket() -> Option<PathBuf> {
    let Ok(s) = std::env::var("ROOST_TEST_CONTAINERD_SOCKET") else {
        eprintln!(
            "SKIP: needs a private containerd: set ROOST_TEST_CONTAINERD_SOCKET \
             (`ci/containerd.sh start DIR` prints one; `make test` does this)"
        );
        return None;
    };
    let p = PathBuf::from(s);
    if !p.exists() {
        eprintln!(
            "SKIP: ROOST_TEST_CONTAINERD_SOCKET={} does not exist",
            p.display()
        );
        return None;
    }
    Some(p)
}

/// A fresh containerd namespace for one test, removed (after a leak check) by
/// [`Ns::finish`].
pub struct Ns {
    /// Connected client.
    pub client: Client,
    /// Namespace name.
    pub name: String,
    /// Socket.
    pub socket: PathBuf,
}

impl Ns {
    /// Connect in a namespace unique to this test.
    pub async fn new(socket: &Path, test: &str) -> Ns {
        let name = format!("roost-test-{test}-{}", std::process::id());
        let client = Client::connect_in(socket, &name)
            .await
            .expect("connect")
            .with_log_helper(crate::roost_bin());
        Ns {
            client,
            name,
            socket: socket.to_path_buf(),
        }
    }

    /// What is left in the namespace, as (kind, id).
    pub async fn leftovers(&self) -> Vec<(String, String)> {
        self.client.inventory().await.expect("inventory")
    }

    /// Remove every image, wait for GC, then assert nothing is left and drop the
    /// namespace.
    ///
    /// What is left can take a while to go: snapshots are removed by containerd's
    /// garbage collector, and a driver's `destroy` of an instance that had already
    /// ended deletes in the background. A fixed 5 s wait here failed on a fresh
    /// machine; this polls the namespace for up to a minute instead: a real leak
    /// stays and is named, a slow collector only makes the wait longer.
    pub async fn finish(self) {
        for img in self.client.image_list().await.expect("image list") {
            self.client.image_remove(&img.name).await.expect("image rm");
        }
        crate::wait_until_async(
            &format!(
                "containerd's garbage collection emptying namespace {}",
                self.name
            ),
            std::time::Duration::from_secs(60),
            std::time::Duration::from_millis(100),
            || async {
                let left = self.leftovers().await;
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("still there (a leak?): {left:?}"))
                }
            },
        )
        .await;
        // runc leaves parent cgroups behind (ours under /roost-test, `ctr run`'s under
        // /<namespace>); drop the empty ones.
        remove_empty_cgroups("roost-test");
        remove_empty_cgroups(&self.name);
        let _ = Command::new("ctr")
            .args(["--address"])
            .arg(&self.socket)
            .args(["namespaces", "rm", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Remove the empty cgroup directories under `/sys/fs/cgroup/<controller>/<top>`,
/// depth-first, in every v1 controller (best effort: busy ones stay).
pub fn remove_empty_cgroups(top: &str) {
    fn rm(dir: &Path) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    rm(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for c in rd.flatten() {
            let d = c.path().join(top);
            if d.is_dir() {
                rm(&d);
            }
        }
    }
}

fn sha(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

fn put_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let d = sha(bytes);
    let hex = d.trim_start_matches("sha256:");
    std::fs::write(layout.join("blobs/sha256").join(hex), bytes).unwrap();
    (d, bytes.len())
}

/// The busybox layer: /bin/busybox (Debian's busybox-static) with applet links,
/// /etc/passwd with `root` and `app` (1000:1000), /tmp, and a /bin/exit3 script.
pub fn busybox_layer() -> Vec<u8> {
    let bb = std::fs::read("/bin/busybox").expect("busybox-static is installed (/bin/busybox)");
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, p: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, p, std::io::empty()).unwrap();
    };
    for (p, m) in [
        ("bin/", 0o755),
        ("etc/", 0o755),
        ("tmp/", 0o1777),
        ("root/", 0o700),
        ("data/", 0o755),
    ] {
        dir(&mut b, p, m);
    }
    let file = |b: &mut tar::Builder<Vec<u8>>, p: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, p, data).unwrap();
    };
    file(&mut b, "bin/busybox", 0o755, &bb);
    file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\n",
    );
    file(&mut b, "etc/group", 0o644, b"root:x:0:\napp:x:1000:\n");
    file(
        &mut b,
        "bin/exit3",
        0o755,
        b"#!/bin/sh\necho to-stdout\necho to-stderr >&2\nexit 3\n",
    );
    for applet in [
        "sh", "sleep", "echo", "cat", "true", "false", "id", "ls", "dd", "head", "tail", "trap",
        "kill", "yes", "stty", "nc", "wc", "ip", "hostname",
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    b.into_inner().unwrap()
}

/// Write an OCI image layout of the busybox image named `name` into `dir`; returns
/// the manifest digest.
pub fn busybox_layout(dir: &Path, name: &str) -> String {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let layer = busybox_layer();
    let (ld, ls) = put_blob(dir, &layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [ld]},
    });
    let (cd, cs) = put_blob(dir, &serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}],
    });
    let (md, ms) = put_blob(dir, &serde_json::to_vec(&manifest).unwrap());
    let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    md
}

/// Tar up a directory (the layout) into `out`.
pub fn tar_dir(dir: &Path, out: &Path) {
    let f = std::fs::File::create(out).unwrap();
    let mut b = tar::Builder::new(f);
    b.append_dir_all(".", dir).unwrap();
    b.finish().unwrap();
}

/// Import the busybox image as `name` into the namespace (built in a temp dir).
pub async fn import_busybox(client: &Client, name: &str) {
    let t = tempfile::tempdir().unwrap();
    busybox_layout(t.path(), name);
    client
        .image_import(t.path(), &roost_container::image::ImportOptions::default())
        .await
        .expect("import busybox");
}

/// A loopback OCI registry (Debian's docker-registry), killed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Its storage directory.
    pub root: tempfile::TempDir,
}

impl Registry {
    /// Start one on a free port; None (with a message) when docker-registry is missing.
    pub fn start() -> Option<Registry> {
        if Command::new("docker-registry")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIP: needs Debian's docker-registry (apt-get install docker-registry)");
            return None;
        }
        let root = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cfg = root.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                root.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reg = Registry { child, addr, root };
        crate::wait_until(
            &format!("docker-registry listening on {}", reg.addr),
            std::time::Duration::from_secs(60),
            std::time::Duration::from_millis(50),
            || std::net::TcpStream::connect(&reg.addr).map_err(|e| e.to_string()),
        );
        Some(reg)
    }

    /// Push an OCI layout into the registry as `repo:tag` with skopeo.
    pub fn push(&self, layout: &Path, repo_tag: &str) {
        let st = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.addr))
            .status()
            .expect("skopeo is installed");
        assert!(st.success(), "skopeo copy failed");
    }

    /// The registry's file holding blob `digest`.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `RunSpec` for the busybox image with a command.
pub fn run_spec(
    id: &str,
    image: &str,
    command: &[&str],
    log: &Path,
) -> roost_container::spec::RunSpec {
    roost_container::spec::RunSpec {
        id: id.to_string(),
        image: image.to_string(),
        command: command.iter().map(|s| s.to_string()).collect(),
        cgroup_path: format!("/roost-test/{id}"),
        log_path: log.to_path_buf(),
        ..Default::default()
    }
}

/// A containerd of the test's own (own root/state/socket under a temp dir), for tests
/// that kill and restart the daemon. Stopped and removed on drop.
pub struct OwnContainerd {
    /// Its directory.
    pub dir: tempfile::TempDir,
    /// Its socket.
    pub socket: PathBuf,
}

impl OwnContainerd {
    /// Start one with `ci/containerd.sh`; None (with a message) without containerd.
    pub fn start() -> Option<OwnContainerd> {
        if Command::new("containerd")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("SKIP: needs containerd (apt-get install containerd runc)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("roost-ctd-")
            .tempdir_in("/tmp")
            .unwrap();
        let socket = Self::run_script("start", dir.path());
        Some(OwnContainerd { dir, socket })
    }

    fn run_script(cmd: &str, dir: &Path) -> PathBuf {
        let out = Command::new(crate::workspace_root().join("ci/containerd.sh"))
            .arg(cmd)
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "containerd.sh {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    }

    /// SIGKILL the daemon (its shims and containers keep running).
    pub fn kill9(&self) {
        let pid: i32 = std::fs::read_to_string(self.dir.path().join("containerd.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: kill(2) with a pid we started; no memory is shared.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        crate::wait_until(
            &format!("the SIGKILLed containerd (pid {pid}) ending"),
            std::time::Duration::from_secs(60),
            std::time::Duration::from_millis(20),
            || {
                // A zombie has ended too (its reaper is not us).
                if crate::vmm::alive(pid as u32) {
                    Err("still running".into())
                } else {
                    Ok(())
                }
            },
        );
        let _ = std::fs::remove_file(self.dir.path().join("containerd.pid"));
    }

    /// Start it again on the same root and socket.
    pub fn restart(&self) {
        let _ = std::fs::remove_file(&self.socket);
        let s = Self::run_script("start", self.dir.path());
        assert_eq!(s, self.socket);
    }
}

impl Drop for OwnContainerd {
    fn drop(&mut self) {
        let _ = Command::new(crate::workspace_root().join("ci/containerd.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
        // Overlay mounts of leftover containers would make the temp dir undeletable.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.dir.path().join("state"))
            .stderr(Stdio::null())
            .status();
    }
}

/// Write an OCI image layout named `name` into `dir`: the busybox layer of
/// [`busybox_layout`] under a second layer that holds each `(host path, path in the
/// image)` of `files` and every shared library `ldd` lists for them, at the paths ldd
/// prints (`/lib/x86_64-linux-gnu/libc.so.6`, `/lib64/ld-linux-x86-64.so.2`, …) with
/// the content of the file each resolves to. Modes are kept, mtimes are 0. `PATH` is
/// `/usr/local/bin:/usr/bin:/bin`. Returns the manifest digest.
pub fn busybox_layout_with(
    dir: &Path,
    name: &str,
    files: &[(PathBuf, String)],
) -> anyhow::Result<String> {
    use anyhow::Context;
    use std::collections::{BTreeMap, BTreeSet};
    use std::os::unix::fs::PermissionsExt;

    // Image path (relative, no leading '/') -> host file.
    let mut wanted: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut add = |image: &str, host: &Path| -> anyhow::Result<()> {
        let rel = image.trim_start_matches('/');
        if rel.is_empty()
            || rel.ends_with('/')
            || rel
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            anyhow::bail!("`{image}` is not a usable file path in the image");
        }
        wanted.insert(rel.to_string(), host.to_path_buf());
        Ok(())
    };
    for (host, image) in files {
        anyhow::ensure!(
            host.is_file(),
            "{} is not a file on this host",
            host.display()
        );
        add(image, host)?;
        for lib in ldd_paths(host)? {
            add(&lib, Path::new(&lib))?;
        }
    }

    // The busybox layer already has these directories (with their own modes).
    let base: BTreeSet<&str> = ["bin", "etc", "tmp", "root", "data"].into();
    let mut dirs = BTreeSet::new();
    for rel in wanted.keys() {
        let mut acc = String::new();
        let parts: Vec<&str> = rel.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            if !base.contains(acc.as_str()) {
                dirs.insert(format!("{acc}/"));
            }
        }
    }
    let mut b = tar::Builder::new(Vec::new());
    for d in &dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, d, std::io::empty())?;
    }
    for (rel, host) in &wanted {
        let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        let mode = std::fs::metadata(host)?.permissions().mode() & 0o7777;
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, rel, data.as_slice())?;
    }
    let extra = b.into_inner()?;

    std::fs::create_dir_all(dir.join("blobs/sha256"))?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let (bd, bs) = put_blob(dir, &busybox_layer());
    let (xd, xs) = put_blob(dir, &extra);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [bd, xd]},
    });
    let (cd, cs) = put_blob(dir, &serde_json::to_vec(&config)?);
    let layer = "application/vnd.oci.image.layer.v1.tar";
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [
            {"mediaType": layer, "digest": bd, "size": bs},
            {"mediaType": layer, "digest": xd, "size": xs},
        ],
    });
    let (md, ms) = put_blob(dir, &serde_json::to_vec(&manifest)?);
    let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(md)
}

/// The shared libraries (and the program interpreter) `ldd` lists for `bin`, as the
/// absolute paths it prints; empty for a static executable.
fn ldd_paths(bin: &Path) -> anyhow::Result<Vec<String>> {
    use anyhow::Context;
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd (Debian package libc-bin)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    if text.contains("not a dynamic executable") || err.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    anyhow::ensure!(
        out.status.success(),
        "ldd {} failed: {}",
        bin.display(),
        err.trim()
    );
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("=> not found") {
            anyhow::bail!("ldd {}: {line}", bin.display());
        }
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
        // `/lib64/ld-linux-x86-64.so.2 (0x...)`; `linux-vdso.so.1 (0x...)` has no file.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(p.to_string());
        }
    }
    Ok(libs)
}

/// Serialises setting `ROOST_CONTAINERD_NAMESPACE` and spawning the daemon that
/// inherits it: under `cargo test` the tests of one binary share one environment.
pub fn env_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A real `roost host` on the private containerd, in a containerd namespace of the
/// test's own holding the busybox image: the set-up every daemon-level container
/// test shares.
pub struct ContainerDaemon {
    /// A runtime for the test's own containerd calls.
    pub rt: tokio::runtime::Runtime,
    /// The test's namespace (taken by [`ContainerDaemon::finish`]).
    pub ns: Option<Ns>,
    /// The daemon.
    pub d: crate::daemon::Daemon,
}

impl ContainerDaemon {
    /// Start one (None, with a SKIP line, without a private containerd); `flags` are
    /// added to the daemon's own.
    pub fn start(test: &str, image: &str, flags: &[&str]) -> Option<Self> {
        let sock = socket()?;
        let rt = tokio::runtime::Runtime::new().unwrap();
        let ns = rt.block_on(async {
            let ns = Ns::new(&sock, test).await;
            import_busybox(&ns.client, image).await;
            ns
        });
        let guard = env_lock();
        std::env::set_var("ROOST_CONTAINERD_NAMESPACE", &ns.name);
        let mut all = vec![
            "--containerd-socket",
            sock.to_str().unwrap(),
            "--restart-backoff-ms",
            "100",
            "--restart-backoff-max-ms",
            "2000",
        ];
        all.extend_from_slice(flags);
        let d = crate::daemon::Daemon::start_with(&all);
        drop(guard);
        Some(Self {
            rt,
            ns: Some(ns),
            d,
        })
    }

    /// Restart a daemon that was killed, in the same namespace.
    pub fn respawn(&mut self) {
        let _guard = env_lock();
        std::env::set_var(
            "ROOST_CONTAINERD_NAMESPACE",
            &self.ns.as_ref().unwrap().name,
        );
        self.d.spawn();
    }

    /// `roost apply` of a container workload (restart policy `never` unless `extra`
    /// says otherwise; `extra` is merged into the spec).
    pub fn apply(
        &self,
        name: &str,
        container: serde_json::Value,
        extra: serde_json::Value,
    ) -> std::process::Output {
        let mut spec = serde_json::json!({"driver": "container", "container": container, "restartPolicy": "never"});
        if let (Some(s), serde_json::Value::Object(e)) = (spec.as_object_mut(), extra) {
            s.extend(e);
        }
        let doc = serde_json::json!({"apiVersion": "roost.dev/v1", "kind": "Workload", "metadata": {"name": name}, "spec": spec});
        let f =
            crate::daemon::write_file(self.d.dir.path(), &format!("{name}.json"), &doc.to_string());
        self.d.cli(&["apply", "-f", f.to_str().unwrap()])
    }

    /// The containers and tasks left in the namespace.
    pub fn containers(&self) -> Vec<(String, String)> {
        let ns = self.ns.as_ref().unwrap();
        self.rt
            .block_on(ns.leftovers())
            .into_iter()
            .filter(|(k, _)| k == "container" || k == "task")
            .collect()
    }

    /// Remove the workloads, check no container or task is left, drop the namespace.
    pub fn finish(mut self, names: &[&str]) {
        for n in names {
            let out = self.d.cli(&["rm", n]);
            assert!(out.status.success(), "rm {n}: {out:?}");
        }
        crate::wait_until(
            "every container and task of the test removed",
            std::time::Duration::from_secs(30),
            std::time::Duration::from_millis(100),
            || {
                let left = self.containers();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{left:?}"))
                }
            },
        );
        let ns = self.ns.take().unwrap();
        self.rt.block_on(ns.finish());
    }
}
