//! The daemon's API and CLI with the mock driver: create / list / inspect / stop /
//! start / rm, errors, socket permissions, config refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::daemon::{mock_spec, write_file, Daemon};
use roost_tests::roost_bin;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(15);

#[test]
fn lifecycle_through_the_cli() {
    let d = Daemon::start();
    let spec = "apiVersion: roost.dev/v1\nkind: Workload\nmetadata:\n  name: web\n  labels: {tier: front}\n\
                spec:\n  driver: mock\n  stopGraceSeconds: 5\n";
    let f = write_file(d.dir.path(), "web.yaml", spec);
    let out = d.cli(&["apply", "-f", f.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "workload/web created"
    );
    // Applying the same file again changes nothing.
    let out = d.cli(&["apply", "-f", f.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "workload/web unchanged"
    );
    d.wait_phase("web", "running", T);
    assert_eq!(d.mock_instances().get("web").map(Vec::len), Some(1));

    let ps = d.cli(&["ps"]);
    let text = String::from_utf8_lossy(&ps.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("web") && l.contains("running")),
        "{text}"
    );
    let ps = d.cli(&["ps", "-o", "json"]);
    let v: Value = serde_json::from_slice(&ps.stdout).unwrap();
    assert_eq!(v[0]["workload"]["metadata"]["labels"]["tier"], "front");
    let ins = d.cli(&["inspect", "web", "-o", "json"]);
    let v: Value = serde_json::from_slice(&ins.stdout).unwrap();
    assert_eq!(v["status"]["phase"], "running");
    assert_eq!(v["status"]["instance"], 1);

    let out = d.cli(&["stop", "web"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(d.get("web")["status"]["phase"], "stopped");
    assert!(
        !d.mock_instances().contains_key("web"),
        "stopped workload still has a process"
    );

    let out = d.cli(&["start", "web"]);
    assert!(out.status.success(), "{out:?}");
    let v = d.wait_phase("web", "running", T);
    assert_eq!(v["status"]["instance"], 2);

    let out = d.cli(&["rm", "web"]);
    assert!(out.status.success(), "{out:?}");
    let (s, _) = d.api("GET", "/v1/workloads/web", None);
    assert_eq!(s, 404);
    assert!(d.mock_instances().is_empty());

    // Errors: one clear line, exit 1.
    let out = d.cli(&["inspect", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("`nope` not found"), "{e}");
    // Usage errors exit 2.
    let out = d.cli(&["stop"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn api_status_codes_and_error_bodies() {
    let d = Daemon::start();
    let spec = mock_spec("a", json!({}), json!({}));
    let (s, v) = d.api("POST", "/v1/workloads", Some(&spec));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["workload"]["metadata"]["name"], "a");
    let (s, v) = d.api("POST", "/v1/workloads", Some(&spec));
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("already exists"));
    assert!(v["details"].is_array());

    let (s, v) = d.api("GET", "/v1/workloads", None);
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 1);
    for (m, p, want) in [
        ("GET", "/v1/workloads/zzz", 404),
        ("POST", "/v1/workloads/zzz/stop", 404),
        ("DELETE", "/v1/workloads/zzz", 404),
        ("GET", "/v1/nothing", 404),
        ("PUT", "/v1/workloads", 405),
        ("GET", "/v1/workloads/a/logs?tail=x", 400),
        ("GET", "/v1/events?cursor=-1", 400),
    ] {
        let (s, v) = d.api(m, p, None);
        assert_eq!(s, want, "{m} {p}: {v}");
        assert!(v["error"].is_string(), "{m} {p}: error body {v}");
    }
    // Not JSON, not YAML.
    let (s, v) = d.api("POST", "/v1/workloads", Some("{not json"));
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["details"][0]["field"], "(document)");
    // Too large: refused with a JSON error.
    {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
        write!(
            s,
            "POST /v1/workloads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        // Send the body too (the server reads up to the limit, then answers); the
        // writes past that may fail once it has answered.
        let zeros = vec![b' '; 64 * 1024];
        for _ in 0..32 {
            if s.write_all(&zeros).is_err() {
                break;
            }
        }
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // Read until the server has answered (it may keep the connection open).
        while let Ok(n) = s.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&buf).contains("}") {
                break;
            }
        }
        let resp = String::from_utf8_lossy(&buf).to_string();
        assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
        let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
        let v: Value = serde_json::from_str(body.trim()).unwrap();
        assert!(v["error"].as_str().unwrap().contains("larger than"), "{v}");
    }
    // Not admitted: more memory than the host has.
    let huge = mock_spec(
        "huge",
        json!({}),
        json!({"resources": {"memoryMiB": 1u64 << 40}}),
    );
    let (s, v) = d.api("POST", "/v1/workloads", Some(&huge));
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not admitted"), "{v}");
    // A driver this daemon lacks is a clear 503/422, not a crash.
    let (s, _) = d.api("GET", "/healthz", None);
    assert_eq!(s, 200);
    let (s, v) = d.api("GET", "/v1/host", None);
    assert_eq!(s, 200);
    assert!(v["capacity"]["cpus"].as_u64().unwrap() >= 1);
    let (s, b) = d.api_raw("GET", "/metrics", None);
    assert_eq!(s, 200);
    let m = String::from_utf8_lossy(&b);
    assert!(m.contains("roost_workloads{phase=\"running\"}"), "{m}");
}

#[test]
fn apply_a_whole_set_is_idempotent_and_prunes() {
    let d = Daemon::start();
    let set = |names: &[&str], code: i32| {
        let ws: Vec<Value> = names
            .iter()
            .map(|n| {
                serde_json::from_str(&mock_spec(n, json!({"exitCode": code}), json!({}))).unwrap()
            })
            .collect();
        json!({"workloads": ws, "prune": true}).to_string()
    };
    let (s, v) = d.api("POST", "/v1/apply", Some(&set(&["a", "b", "c"], 0)));
    assert_eq!(s, 200, "{v}");
    let actions: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["created", "created", "created"]);
    let (_, v) = d.api("POST", "/v1/apply", Some(&set(&["a", "b", "c"], 0)));
    let actions: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["unchanged", "unchanged", "unchanged"]);
    d.wait_phase("b", "running", T);
    // Change b's spec, drop c.
    let (_, v) = d.api("POST", "/v1/apply", Some(&set(&["a", "b"], 4)));
    let r: Vec<(String, String)> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(r.contains(&("a".into(), "updated".into())), "{r:?}");
    assert!(r.contains(&("c".into(), "deleted".into())), "{r:?}");
    let v = d.wait_phase("b", "running", T);
    assert_eq!(v["generation"], 2);
    assert_eq!(v["workload"]["spec"]["mock"]["exitCode"], 4);
    let (s, _) = d.api("GET", "/v1/workloads/c", None);
    assert_eq!(s, 404);
    // One bad spec in a set changes nothing.
    let mut bad: Value = serde_json::from_str(&set(&["a", "z"], 0)).unwrap();
    bad["workloads"][1]["spec"]["driver"] = json!("docker");
    let (s, v) = d.api("POST", "/v1/apply", Some(&bad.to_string()));
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["details"][0]["field"], "workloads[1].spec.driver");
    let (s, _) = d.api("GET", "/v1/workloads/z", None);
    assert_eq!(s, 404);
}

#[test]
fn socket_is_private_and_tcp_needs_tls_and_token() {
    let d = Daemon::start();
    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second daemon on the same socket refuses.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(roost_bin())
        .args(["host", "--state-dir"])
        .arg(dir.path())
        .arg("--socket")
        .arg(d.socket())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already listening"),
        "{out:?}"
    );
    // TCP without TLS and token: config error, exit 64, nothing bound.
    let out = Command::new(roost_bin())
        .args(["host", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("--tls-cert") && e.contains("--token-file"),
        "{e}"
    );
    // A relative state dir is refused the same way.
    let out = Command::new(roost_bin())
        .args(["host", "--state-dir", "rel/dir"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    // A config file with an unknown key names it.
    let cfg = write_file(dir.path(), "host.toml", "state-dirr = \"/tmp/x\"\n");
    let out = Command::new(roost_bin())
        .args(["host", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("state-dirr"),
        "{out:?}"
    );
}

#[test]
fn cli_without_a_daemon_says_how_to_fix_it() {
    let out = Command::new(roost_bin())
        .args(["ps", "--socket", "/tmp/roost-no-such.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("/tmp/roost-no-such.sock") && e.contains("roost host"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
}

/// The daemon raises its descriptor limit (about one descriptor per workload) and
/// grows its descriptor table before its threads start, so no create waits for the
/// kernel to swap a shared table (an RCU grace period, ~10 ms here).
#[test]
fn daemon_has_descriptor_headroom() {
    let d = Daemon::start();
    let pid = d.child.as_ref().unwrap().id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let nofile: Vec<u64> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let (soft, hard) = (nofile[0], nofile[1]);
    assert!(soft >= hard.min(roost_host::fds::SOFT_LIMIT), "{limits}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let fd_size: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        fd_size >= roost_host::fds::TABLE.min(soft),
        "FDSize {fd_size}, soft limit {soft}"
    );
}

/// `openssl` makes a CA and a server certificate for 127.0.0.1 in `dir`; returns
/// (ca.pem, server.pem, server.key), or None when openssl is missing.
fn test_pki(dir: &std::path::Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
        Some(())
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=roost-test-ca",
        ],
    ]
    .concat())?;
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat())?;
    write_file(
        dir,
        "ext.cnf",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    );
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ])?;
    Some((dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key")))
}

/// Exit 1 with `needle` in the one line on stderr.
fn fails_with(out: &std::process::Output, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains(needle), "wanted `{needle}` in: {e}");
}

/// The CLI drives a daemon over its TCP listener: TLS verified against the given CA,
/// the bearer token sent; a wrong token, an unknown CA, plain HTTP and a bad address
/// each fail with a line that says what to fix.
#[test]
fn the_cli_works_over_tcp_with_tls_and_token() {
    let pki = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = test_pki(pki.path()) else {
        eprintln!("SKIPPED: needs the openssl command to make test certificates");
        return;
    };
    let token = write_file(pki.path(), "token", "0123456789abcdef-roost-test\n");
    let wrong = write_file(pki.path(), "wrong", "fedcba9876543210-not-it\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&[
        "--listen",
        &listen,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--token-file",
        token.to_str().unwrap(),
    ]);
    let url = format!("https://{listen}");
    let remote = |token: &std::path::Path, ca: Option<&std::path::Path>, args: &[&str]| {
        let mut c = Command::new(roost_bin());
        c.args(args)
            .args(["--addr", &url, "--token-file"])
            .arg(token)
            // The socket the daemon also serves must not be what answers.
            .env("ROOST_SOCKET", "/nonexistent/roost.sock");
        if let Some(ca) = ca {
            c.arg("--ca-file").arg(ca);
        }
        c.output().unwrap()
    };
    let spec = write_file(
        pki.path(),
        "w.yaml",
        &mock_spec("remote1", json!({}), json!({})),
    );
    let out = remote(&token, Some(&ca), &["apply", "-f", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    d.wait_phase("remote1", "running", Duration::from_secs(30));
    // Clients that connect and say nothing (each given 10 s to finish its TLS
    // handshake) hold up nobody else.
    let silent: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(&listen).unwrap())
        .collect();
    let t = std::time::Instant::now();
    let out = remote(&token, Some(&ca), &["ps", "-o", "json"]);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "a request waited {:?} behind silent connections",
        t.elapsed()
    );
    drop(silent);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let ps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ps[0]["workload"]["metadata"]["name"], "remote1", "{ps}");
    // Wrong token: refused by the daemon.
    let out = remote(&wrong, Some(&ca), &["ps"]);
    fails_with(&out, "bearer token");
    // A CA that did not sign the daemon's certificate (the system bundle).
    let out = remote(&token, None, &["ps"]);
    fails_with(&out, "TLS handshake failed");
    fails_with(&out, "--ca-file");
    // Not https.
    let out = Command::new(roost_bin())
        .args(["ps", "--addr", &format!("http://{listen}"), "--token-file"])
        .arg(&token)
        .output()
        .unwrap();
    fails_with(&out, "https://");
    // No token file.
    let out = Command::new(roost_bin())
        .args(["ps", "--addr", &url])
        .env_remove("ROOST_TOKEN_FILE")
        .output()
        .unwrap();
    fails_with(&out, "--token-file");
    // Plain HTTP on the TLS port gets no HTTP answer.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET /v1/workloads HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        !String::from_utf8_lossy(&buf).starts_with("HTTP/"),
        "plain HTTP was answered: {}",
        String::from_utf8_lossy(&buf)
    );
}
