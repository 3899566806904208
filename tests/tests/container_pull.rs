//! Pull from a real registry on loopback (Debian's docker-registry, pushed to with
//! skopeo): success with progress, a wrong digest and a corrupted blob each fail
//! clearly and leave nothing behind; the `roost image` CLI end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_container::image::{ImportOptions, PullOptions, PullProgress};
use roost_tests::container::{busybox_layout, socket, Ns, Registry};
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

#[tokio::test]
async fn roost_image_cli_import_pull_ls_rm() {
    let Some(sock) = socket() else { return };
    let Some(reg) = Registry::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    busybox_layout(&layout, "roost.test/busybox:1");
    reg.push(&layout, "cli:1");
    let ns = Ns::new(&sock, "cli").await;
    let tarball = t.path().join("img.tar");
    roost_tests::container::tar_dir(&layout, &tarball);
    let roost = |args: &[&str]| {
        let out = std::process::Command::new(roost_tests::roost_bin())
            .arg("image")
            .args(args)
            .env("ROOST_CONTAINERD_SOCKET", &sock)
            .env("ROOST_CONTAINERD_NAMESPACE", &ns.name)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = roost(&["import", tarball.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "roost.test/busybox:1");
    let (ok, out, err) = roost(&["pull", &format!("{}/cli:1", reg.addr)]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("{}/cli:1", reg.addr));
    let (ok, out, _) = roost(&["ls"]);
    assert!(
        ok && out.contains("roost.test/busybox:1") && out.contains("/cli:1"),
        "{out}"
    );
    let (ok, _, err) = roost(&["rm", "roost.test/busybox:1", &format!("{}/cli:1", reg.addr)]);
    assert!(ok, "{err}");
    let (ok, _, err) = roost(&["rm", "roost.test/busybox:1"]);
    assert!(!ok && err.contains("not in containerd"), "{err}");
    // An unreachable containerd: the error names the socket and the fix.
    let out = std::process::Command::new(roost_tests::roost_bin())
        .args(["image", "ls", "--containerd-socket", "/nonexistent/c.sock"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("/nonexistent/c.sock")
            && err.contains("ci/containerd.sh"),
        "{err}"
    );
    // Import from a directory needs a name when the index only has a tag.
    let _ = ImportOptions::default();
    ns.finish().await;
}
