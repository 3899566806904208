//! Containers on their own network through the real CNI plugins (bridge, host-local,
//! portmap): a connection from the host to a published port reaches the container;
//! its address, namespace and port rules are released when it stops, and by the
//! sweep at daemon start when it vanished while the daemon was SIGKILLed. Needs root,
//! a private containerd and Debian's containernetworking-plugins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::container::ContainerDaemon;
use roost_tests::wait_until;
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

const IMG: &str = "roost.test/busybox:1";
const T: Duration = Duration::from_secs(30);

fn skip() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root for network namespaces");
        return true;
    }
    for p in ["bridge", "host-local", "portmap", "loopback"] {
        if !Path::new("/usr/lib/cni").join(p).exists() {
            eprintln!("SKIPPED: needs /usr/lib/cni/{p} (Debian's containernetworking-plugins; ci/deps.sh installs it)");
            return true;
        }
    }
    false
}

/// Addresses host-local holds, as (address, container id).
fn addresses(state: &Path) -> Vec<(String, String)> {
    let Ok(dir) = std::fs::read_dir(state.join("cni/roost")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|f| {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with("last_reserved") || name == "lock" {
                return None;
            }
            let id = std::fs::read_to_string(f.path()).ok()?;
            Some((name, id.lines().next()?.trim().to_string()))
        })
        .collect()
}

/// NAT rules that name container `id` (bridge masquerade, portmap DNAT).
fn nat_rules(id: &str) -> Vec<String> {
    let out = std::process::Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("id: \\\"{id}")))
        .map(str::to_string)
        .collect()
}

fn released(state: &Path, id: &str) -> Result<(), String> {
    let held: Vec<_> = addresses(state)
        .into_iter()
        .filter(|(_, i)| i == id)
        .collect();
    let netns = state.join("netns").join(id);
    let rules = nat_rules(id);
    if held.is_empty() && !netns.exists() && rules.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "addresses {held:?}, netns there: {}, nat rules {rules:?}",
            netns.exists()
        ))
    }
}

fn greeting(port: u16) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    if text.contains("hello-from-web") {
        Ok(text)
    } else {
        Err(format!("read {text:?}"))
    }
}

#[test]
fn a_published_port_answers_from_the_host_and_addresses_are_released_on_every_path() {
    if skip() {
        return;
    }
    let pid = std::process::id();
    let bridge = format!("rtb{}", pid % 100_000);
    let subnet = format!("10.{}.{}.0/24", 200 + pid % 50, pid % 250);
    let Some(mut s) = ContainerDaemon::start(
        "net",
        IMG,
        &["--bridge", &bridge, "--bridge-subnet", &subnet],
    ) else {
        return;
    };
    let state: PathBuf = s.d.state_dir();
    let port = 20_000 + (pid % 20_000) as u16;
    let web = json!({
        "image": IMG,
        "command": ["sh", "-c", "while true; do echo hello-from-web | nc -l -p 8080; done"],
        "network": "bridge",
        "ports": [{"hostPort": port, "containerPort": 8080}],
    });

    // Published ports need the bridge; a port given twice is refused; every field named.
    let mut bad = web.clone();
    bad["network"] = json!("host");
    bad["ports"] = json!([{"hostPort": port, "containerPort": 1}, {"hostPort": port, "containerPort": 2, "protocol": "tcp"}, {"hostPort": 0, "containerPort": 1}]);
    let out = s.apply("bad", bad, json!({}));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for f in [
        "spec.container.ports[0]",
        "spec.container.ports[1].hostPort",
        "spec.container.ports[2].hostPort",
    ] {
        assert!(err.contains(f), "{f} in {err}");
    }
    // The served OpenAPI document carries the new fields and their ranges.
    let (_, doc) = s.d.api("GET", "/v1/openapi.json", None);
    let port_schema = &doc["components"]["schemas"]["PortSpec"]["properties"]["hostPort"];
    assert_eq!(port_schema["maximum"], 65535, "{port_schema}");
    let modes = doc["components"]["schemas"]["NetworkMode"].to_string();
    assert!(
        modes.contains("\"host\"") && modes.contains("\"bridge\""),
        "{modes}"
    );

    let out = s.apply("web", web, json!({}));
    assert!(out.status.success(), "{out:?}");
    s.d.wait_phase("web", "running", T);
    let text = wait_until(
        "a connection to the published port answered by the container",
        T,
        Duration::from_millis(200),
        || greeting(port),
    );
    assert!(text.contains("hello-from-web"));
    let held = addresses(&state);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].1, "web-1");
    assert!(state.join("netns/web-1").exists());
    assert!(!nat_rules("web-1").is_empty());

    // Stopped: address, namespace and rules released.
    assert!(s.d.cli(&["stop", "web"]).status.success());
    s.d.wait_phase("web", "stopped", T);
    wait_until(
        "web-1's network released after stop",
        T,
        Duration::from_millis(100),
        || released(&state, "web-1"),
    );

    // Started again, then the daemon is SIGKILLed and the container vanishes while no
    // daemon watches: the sweep at the next start releases what it held.
    assert!(s.d.cli(&["start", "web"]).status.success());
    s.d.wait_phase("web", "running", T);
    wait_until(
        "the second instance answers",
        T,
        Duration::from_millis(200),
        || greeting(port),
    );
    let held = addresses(&state);
    assert_eq!(held.len(), 1, "{held:?}");
    let old = held[0].0.clone();
    s.d.kill9();
    let ns = s.ns.as_ref().unwrap();
    s.rt.block_on(
        ns.client
            .delete("web-2", &roost_container::cgroup::CgroupV1::default()),
    )
    .unwrap();
    assert!(
        addresses(&state).iter().any(|(a, _)| *a == old),
        "still held while no daemon runs"
    );
    s.respawn();
    // The sweep runs before the daemon answers, so this is a check, not a wait. (The
    // daemon may then start the workload afresh, under a new address: the instance
    // it lost was still running when it died.)
    let held = addresses(&state);
    assert!(
        !held.iter().any(|(a, _)| *a == old),
        "{old} released by the sweep: {held:?}"
    );
    let stale = nat_rules("web-2")
        .into_iter()
        .filter(|r| r.contains(&format!("-s {old}/32")))
        .collect::<Vec<_>>();
    assert!(stale.is_empty(), "{stale:?}");
    // Removed: whatever instance the restarted daemon ran is released too (the
    // release of an ended container runs after its delete, in the background).
    assert!(s.d.cli(&["rm", "web"]).status.success());
    wait_until(
        "every address and rule released after rm",
        T,
        Duration::from_millis(100),
        || {
            let held = addresses(&state);
            let rules = nat_rules("web-");
            if held.is_empty() && rules.is_empty() {
                Ok(())
            } else {
                Err(format!("{held:?} {rules:?}"))
            }
        },
    );
    s.finish(&[]);
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &bridge])
        .status();
}
