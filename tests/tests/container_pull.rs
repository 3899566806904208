//! Pull from a real registry on loopback (Debian's docker-registry, pushed to with
//! skopeo): success with progress, a wrong digest and a corrupted blob each fail
//! clearly and leave nothing behind; the `roost image` CLI end to end through the
//! daemon's API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_container::image::{PullOptions, PullProgress};
use roost_tests::container::{busybox_layout, socket, Ns, Registry};
use roost_tests::daemon::Daemon;
use std::sync::{Arc, Mutex};

fn layer_digest(layout: &std::path::Path, manifest_digest: &str) -> String {
    let hex = manifest_digest.trim_start_matches("sha256:");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    m["layers"][0]["digest"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn pull_verifies_digests_and_cleans_up_on_failure() {
    let Some(sock) = socket() else { return };
    let Some(reg) = Registry::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let manifest = busybox_layout(&layout, "roost.test/busybox:1");
    reg.push(&layout, "busybox:1");
    reg.push(&layout, "corrupt:1");

    // A good pull, with progress reported.
    let ns = Ns::new(&sock, "pull").await;
    let seen: Arc<Mutex<Vec<PullProgress>>> = Arc::default();
    let s2 = seen.clone();
    let opts = PullOptions {
        progress: Some(Arc::new(move |p| s2.lock().unwrap().push(p))),
        ..Default::default()
    };
    let name = ns
        .client
        .image_pull(&format!("{}/busybox:1", reg.addr), &opts)
        .await
        .unwrap();
    assert_eq!(name, format!("{}/busybox:1", reg.addr));
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.done, last.total);
    assert!(last.total > 500_000, "{last:?}");
    let r = ns.client.image_resolve(&name).await.unwrap();
    // skopeo may re-encode the manifest; the layer's diffID is what must survive.
    assert_eq!(
        r.config.rootfs.diff_ids[0],
        layer_digest(&layout, &manifest)
    );
    let layer = r.manifest.layers[0].digest.clone();
    let files = ns.client.image_files(&r.chain_id).await.unwrap();
    assert!(files.find_executable("sh", "/bin").is_some());
    ns.finish().await;

    // A digest the registry does not have: a clear error, nothing left.
    let ns = Ns::new(&sock, "pullbad").await;
    let wrong = format!("{}/busybox@sha256:{}", reg.addr, "0".repeat(64));
    let e = ns
        .client
        .image_pull(&wrong, &PullOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&wrong) || e.contains("busybox@sha256:000"),
        "{e}"
    );
    assert!(e.to_lowercase().contains("manifest"), "{e}");
    eprintln!("wrong digest: {e}");
    assert!(
        ns.leftovers().await.is_empty(),
        "{:?}",
        ns.leftovers().await
    );

    // A blob whose bytes do not match its digest (corrupted in the registry's store).
    let f = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&f).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&f, &bytes).unwrap();
    let e = ns
        .client
        .image_pull(&format!("{}/corrupt:1", reg.addr), &PullOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&layer) && e.to_lowercase().contains("digest"),
        "{e}"
    );
    eprintln!("corrupt blob: {e}");
    let left = ns.leftovers().await;
    assert!(left.is_empty(), "a failed pull left {left:?}");
    ns.finish().await;
}

/// `roost image` goes through the daemon's API like every other verb: the CLI is
/// given only the daemon's socket (no containerd socket, no namespace), and the
/// daemon uses the containerd and namespace its container driver runs from.
#[test]
fn roost_image_cli_import_pull_ls_rm_prune_through_the_daemon() {
    let Some(sock) = socket() else { return };
    let Some(reg) = Registry::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    busybox_layout(&layout, "roost.test/busybox:1");
    reg.push(&layout, "cli:1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ns = rt.block_on(Ns::new(&sock, "cli"));
    // The daemon inherits the namespace from this process's environment.
    std::env::set_var("ROOST_CONTAINERD_NAMESPACE", &ns.name);
    let d = Daemon::start_with(&["--containerd-socket", sock.to_str().unwrap()]);
    std::env::remove_var("ROOST_CONTAINERD_NAMESPACE");
    let roost = |args: &[&str]| {
        let out = std::process::Command::new(roost_tests::roost_bin())
            .arg("--socket")
            .arg(d.socket())
            .arg("image")
            .args(args)
            .env_remove("ROOST_CONTAINERD_SOCKET")
            .env_remove("ROOST_CONTAINERD_NAMESPACE")
            .env_remove("ROOST_SOCKET")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = roost(&["ls"]);
    assert!(ok && !out.contains("busybox"), "{out}{err}");
    // A layout directory (the CLI packs it) and a tarball.
    let (ok, out, err) = roost(&["import", layout.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "roost.test/busybox:1");
    let tarball = t.path().join("img.tar");
    roost_tests::container::tar_dir(&layout, &tarball);
    let (ok, out, err) = roost(&["import", tarball.to_str().unwrap()]);
    assert!(ok && out.trim() == "roost.test/busybox:1", "{out}{err}");
    let (ok, out, err) = roost(&["pull", &format!("{}/cli:1", reg.addr)]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("{}/cli:1", reg.addr));
    // Both are in the namespace the daemon's driver uses.
    let names: Vec<String> = rt
        .block_on(ns.client.image_list())
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // A workload that uses one of them.
    let spec = serde_json::json!({"apiVersion": "roost.dev/v1", "kind": "Workload",
        "metadata": {"name": "user"},
        "spec": {"driver": "container", "restartPolicy": "never",
                 "container": {"image": "roost.test/busybox:1", "command": ["true"]}}});
    let (s, v) = d.api("POST", "/v1/workloads", Some(&spec.to_string()));
    assert_eq!(s, 201, "{v}");
    let (ok, out, err) = roost(&["ls"]);
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("roost.test/busybox:1"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(row.trim_end().ends_with("user"), "{out}");
    assert!(out.lines().next().unwrap().contains("USED BY"), "{out}");
    let (ok, out, err) = roost(&["ls", "--json"]);
    assert!(ok, "{err}");
    let list: Vec<roost_host::images::ImageInfo> = serde_json::from_str(&out).unwrap();
    assert_eq!(list.len(), 2, "{out}");
    // In use: refused with who uses it (409), and prune keeps it.
    let (ok, _, err) = roost(&["rm", "roost.test/busybox:1"]);
    assert!(!ok && err.contains("used by user"), "{err}");
    let (s, v) = d.api("DELETE", "/v1/images/roost.test/busybox:1", None);
    assert_eq!(s, 409, "{v}");
    let (ok, out, err) = roost(&["prune"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("removed {}/cli:1", reg.addr));
    // Once the workload is gone, it goes too; a second rm is a 404 naming it.
    assert!(d.cli(&["rm", "user"]).status.success());
    // Its instance had already ended, so the driver deletes its container in the
    // background: wait for that before the daemon is stopped.
    roost_tests::wait_until(
        "the ended workload's container being deleted",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(50),
        || {
            let left: Vec<_> = rt
                .block_on(ns.leftovers())
                .into_iter()
                .filter(|(k, _)| k == "container")
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    );
    let (ok, out, err) = roost(&["rm", "roost.test/busybox:1"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "removed roost.test/busybox:1");
    let (ok, _, err) = roost(&["rm", "roost.test/busybox:1"]);
    assert!(!ok && err.contains("not in containerd"), "{err}");
    let (s, v) = d.api("DELETE", "/v1/images/roost.test/busybox:1", None);
    assert_eq!(s, 404, "{v}");
    // Bad requests: not an archive (422), an empty pull reference (422), a pull
    // body that is not JSON (400).
    let junk = t.path().join("junk.tar");
    std::fs::write(&junk, b"not a tarball").unwrap();
    let (ok, _, err) = roost(&["import", junk.to_str().unwrap()]);
    assert!(!ok, "{err}");
    let (s, v) = d.api("POST", "/v1/images/pull", Some(r#"{"reference": ""}"#));
    assert_eq!(s, 422, "{v}");
    let (s, v) = d.api("POST", "/v1/images/pull", Some(r#"{"reference": "#));
    assert_eq!(s, 400, "{v}");
    drop(d);
    rt.block_on(ns.finish());
}

/// A daemon without containerd answers the image API with 503 and says why.
#[test]
fn images_without_containerd_say_why() {
    let d = Daemon::start_with(&["--containerd-socket", "/nonexistent/c.sock"]);
    let (s, v) = d.api("GET", "/v1/images", None);
    assert_eq!(s, 503, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(e.contains("/nonexistent/c.sock"), "{e}");
    let out = d.cli(&["image", "ls"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/nonexistent/c.sock"),
        "{err}"
    );
}
