//! Federation, trust: hosts in their own network namespaces enroll into subclouds with
//! one-time join tokens; a wrong, reused or expired token is refused naming which and
//! creates nothing; the link refuses a client without a certificate; a revoked host is
//! cut off at once and refused from then on. On SQLite and (with ROOST_TEST_PG_URL)
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_federation::link::proto::{self, host_link_client::HostLinkClient};
use roost_host::client::Client;
use roost_tests::fed::{
    hold_for, now_ms, wait_for, Backend, CliOut, Fleet, Host, Store, HEARTBEAT, T,
};
use roost_tests::fed_test;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio_rustls::rustls;

fed_test!(enroll: sqlite_enroll, postgres_enroll);
fed_test!(revoke: sqlite_revoke, postgres_revoke);

fn names(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_string())
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The same token with one character of its secret (part 3) changed.
fn mutate_secret(token: &str) -> String {
    let mut parts: Vec<String> = token.trim().split('.').map(String::from).collect();
    assert_eq!(parts.len(), 4, "a join token has 4 parts: {token}");
    let first = parts[2].remove(0);
    parts[2].insert(0, if first == 'a' { 'b' } else { 'a' });
    parts.join(".")
}

/// Central's events from `cursor` on, through `roost central events --cursor N -o json`.
async fn events(f: &Fleet, cursor: u64) -> Vec<Value> {
    let out = f
        .central
        .cli_ok(&["events", "--cursor", &cursor.to_string(), "-o", "json"])
        .await;
    if let Ok(Value::Array(v)) = serde_json::from_str(&out) {
        return v;
    }
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("event line not JSON ({e}): {l}"))
        })
        .collect()
}

/// A refused enrollment: a fresh daemon in h1's namespace must exit non-zero saying
/// `word`, and central must have no host of that name afterwards.
async fn refused(f: &Fleet, name: &str, token: &str, word: &str) {
    let mut h = Host::new(name, &f.net.nss[0].name);
    let url = f.central.url();
    let (st, log) = h.start_fails(Some((&url, token))).await;
    assert!(
        !st.success(),
        "{name}: roost host exited 0 with a bad token; log:\n{log}"
    );
    assert!(
        log.contains(word),
        "{name}: the refusal does not say `{word}`; log:\n{log}"
    );
    assert!(
        log.contains("refused"),
        "{name}: not a refusal by central; log:\n{log}"
    );
    println!("{name}: refused: {}", log.lines().last().unwrap_or(""));
    let hosts = names(&f.central.cli_json(&["host", "ls"]).await);
    assert_eq!(
        hosts,
        set(&["h1", "h2", "h3"]),
        "a refused enrollment created a host"
    );
    let show = f.central.cli(&["host", "show", name]).await;
    assert!(!show.ok(), "host show {name} found a host: {show}");
}

/// A Session call over TLS that trusts central's CA but presents no client certificate.
async fn session_without_client_cert(f: &Fleet) -> tonic::Status {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&f.central.ca_pem()[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tls = Arc::new(cfg);
    let authority = f.central.listen.to_string();
    let name = rustls::pki_types::ServerName::from(f.central.listen.ip());
    let dial = authority.clone();
    let connector = tower::service_fn(move |_: http::Uri| {
        let (tls, dial, name) = (Arc::clone(&tls), dial.clone(), name.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(&dial).await?;
            let s = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
        }
    });
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{authority}"))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .expect("TLS without a client certificate is accepted (the link asks, not requires)");
    let hello = proto::HostMessage {
        protocol: roost_federation::link::PROTOCOL,
        body: Some(proto::host_message::Body::Hello(proto::Hello {
            host: "h1".into(),
            roost_version: "test".into(),
            heartbeat_ms: 500,
            applied_digest: String::new(),
        })),
    };
    match HostLinkClient::new(ch)
        .session(tokio_stream::iter(vec![hello]))
        .await
    {
        Ok(_) => panic!("central opened a host link for a client without a certificate"),
        Err(s) => s,
    }
}

async fn enroll(b: Backend) {
    let mut f = Fleet::new(b, 3).await;
    // First start: CA, operator token (0600) and address in the data dir.
    {
        use std::os::unix::fs::PermissionsExt;
        let dd = f.central.data_dir();
        assert!(dd.join("ca.pem").exists());
        let mode = std::fs::metadata(dd.join("operator.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "operator.token mode {:o}",
            mode & 0o777
        );
        let addr = std::fs::read_to_string(dd.join("address")).unwrap();
        assert_eq!(addr.trim(), f.central.url());
    }
    // /healthz needs no token; the API does.
    let anon =
        Client::remote(&f.central.url(), "not-the-token", Some(&f.central.ca_pem())).unwrap();
    let r = anon
        .request(hyper::Method::GET, "/healthz", None)
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200);
    let r = anon
        .request(hyper::Method::GET, "/v1/hosts", None)
        .await
        .unwrap();
    assert_eq!(
        r.status.as_u16(),
        401,
        "{}",
        String::from_utf8_lossy(&r.body)
    );

    let c = &f.central;
    for g in ["g1", "g2", "g3"] {
        c.cli_ok(&["group", "add", g]).await;
    }
    for (s, g) in [("s1", "g1"), ("s2", "g1"), ("s3", "g2"), ("s9", "g3")] {
        c.cli_ok(&["subcloud", "add", s, "--group", g]).await;
    }
    assert!(names(&c.cli_json(&["group", "ls"]).await).is_superset(&set(&["g1", "g2", "g3"])));
    let subs = c.cli_json(&["subcloud", "ls"]).await;
    assert_eq!(names(&subs), set(&["s1", "s2", "s3", "s9"]));
    for s in subs.as_array().unwrap() {
        let want = match s["name"].as_str().unwrap() {
            "s1" | "s2" => "g1",
            "s3" => "g2",
            _ => "g3",
        };
        assert_eq!(s["group"], want, "{s}");
        assert_eq!(s["management"], "managed", "{s}");
    }
    // An empty group and subcloud go again.
    c.cli_ok(&["subcloud", "rm", "s9"]).await;
    c.cli_ok(&["group", "rm", "g3"]).await;
    assert!(!names(&c.cli_json(&["subcloud", "ls"]).await).contains("s9"));
    assert!(!names(&c.cli_json(&["group", "ls"]).await).contains("g3"));

    // Follow the event log while the hosts enroll.
    let mut follow = tokio::process::Command::new(roost_tests::roost_bin())
        .args(["central", "events", "-f", "--data-dir"])
        .arg(c.data_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(follow.stdout.take().unwrap()).lines();

    // The token verb prints the token alone without -o json.
    let plain = c.cli_ok(&["token", "create", "--subcloud", "s1"]).await;
    let plain = plain.trim().to_string();
    assert!(
        plain.starts_with("roostjoin1.") && !plain.contains(char::is_whitespace),
        "{plain}"
    );
    let t = Instant::now();
    let url = f.central.url();
    f.hosts[0].start_ok(Some((&url, &plain))).await;
    let tok2 = f.token("s2", None).await;
    let tok3 = f.token("s3", None).await;
    assert_eq!(tok2["subcloud"], "s2");
    assert!(tok2["expiresMs"].as_u64().unwrap() > now_ms());
    f.hosts[1]
        .start_ok(Some((&url, tok2["token"].as_str().unwrap())))
        .await;
    f.hosts[2]
        .start_ok(Some((&url, tok3["token"].as_str().unwrap())))
        .await;
    f.wait_online(&["h1", "h2", "h3"]).await;
    f.record("3 hosts enrolled and online", t.elapsed());

    let hosts = f.central.cli_json(&["host", "ls"]).await;
    assert_eq!(names(&hosts), set(&["h1", "h2", "h3"]));
    for h in hosts.as_array().unwrap() {
        let (sc, g) = match h["name"].as_str().unwrap() {
            "h1" => ("s1", "g1"),
            "h2" => ("s2", "g1"),
            _ => ("s3", "g2"),
        };
        assert_eq!(h["subcloud"], sc, "{h}");
        assert_eq!(h["group"], g, "{h}");
        assert_eq!(h["availability"], "online", "{h}");
    }
    let h1 = f.central.cli_json(&["host", "show", "h1"]).await;
    assert_eq!(h1["heartbeatMs"], 500, "{h1}");
    let from = f.net.nss[0].ip.to_string();
    assert!(
        h1["address"]
            .as_str()
            .is_some_and(|a| a.starts_with(&format!("{from}:"))),
        "h1 connects from its namespace's address {from}: {h1}"
    );
    let s1 = f.central.cli_json(&["subcloud", "show", "s1"]).await;
    assert_eq!(
        (s1["hosts"].as_u64(), s1["hostsOnline"].as_u64()),
        (Some(1), Some(1)),
        "{s1}"
    );
    assert_eq!(s1["availability"], "online", "{s1}");
    assert_eq!(names(&s1["hostList"]), set(&["h1"]));
    let st = f.central.cli_json(&["status"]).await;
    assert_eq!(st["hosts"], 3, "{st}");
    assert_eq!(st["hostsOnline"], 3, "{st}");
    assert_eq!(st["subclouds"], 3, "{st}");
    let store = match b.store {
        Store::Sqlite => "sqlite",
        Store::Postgres => "postgres",
    };
    assert_eq!(st["store"], store, "{st}");

    // The follower saw the three enrollments as they happened.
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + T;
    while seen.len() < 3 {
        let line = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            lines.next_line(),
        )
        .await
        .unwrap_or_else(|_| {
            panic!("events -f did not show all 3 enrollments within {T:?}; saw {seen:?}")
        })
        .unwrap()
        .unwrap_or_else(|| panic!("events -f ended; saw {seen:?}"));
        if line.contains("host-enrolled") {
            for h in ["h1", "h2", "h3"] {
                if line.contains(&format!("host/{h}")) {
                    seen.insert(h);
                }
            }
        }
    }
    let _ = follow.kill().await;
    // And the log read from a cursor has them too.
    let all = events(&f, 0).await;
    let enrolled: BTreeSet<&str> = all
        .iter()
        .filter(|e| e["kind"] == "host-enrolled")
        .filter_map(|e| e["subject"].as_str())
        .collect();
    assert_eq!(enrolled, BTreeSet::from(["host/h1", "host/h2", "host/h3"]));
    let cursor = all.iter().filter_map(|e| e["seq"].as_u64()).max().unwrap();
    let later = events(&f, cursor).await;
    assert!(
        later.iter().all(|e| e["seq"].as_u64().unwrap() > cursor),
        "{later:?}"
    );

    // Refusals, each naming why, each creating nothing.
    let wrong = mutate_secret(f.token("s1", None).await["token"].as_str().unwrap());
    refused(&f, "bad-wrong", &wrong, "is wrong").await;
    refused(&f, "bad-reused", &plain, "already used").await;
    let exp = f.token("s1", Some("1s")).await;
    let expires = exp["expiresMs"].as_u64().unwrap();
    // Past its expiry by the clock (central shares it), however long that takes.
    wait_for(
        Duration::from_secs(10),
        "the clock to pass the token's expiry",
        move || async move {
            let now = now_ms();
            if now > expires {
                Ok(())
            } else {
                Err(format!("now {now} <= expiresMs {expires}"))
            }
        },
    )
    .await;
    refused(&f, "bad-expired", exp["token"].as_str().unwrap(), "expired").await;

    // The link refuses a client without a certificate.
    let s = session_without_client_cert(&f).await;
    assert_eq!(s.code(), tonic::Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("client certificate"), "{s:?}");
    // The three real hosts are still online.
    f.wait_online(&["h1", "h2", "h3"]).await;
}

fn count(log: &str, what: &str) -> usize {
    log.matches(what).count()
}

async fn revoke(b: Backend) {
    let f = Fleet::standard(b).await;
    let h2 = f.host("h2");
    let downs = count(&h2.log(), "central link down");
    let log_at = h2.log().len();
    let out: CliOut = f.central.cli(&["host", "revoke", "h2"]).await;
    assert!(out.ok(), "host revoke h2: {out}");
    let t = Instant::now();
    // The observable for "the link is down" is h2's own log line `central link down`:
    // the host writes it when its stream to central ends, and central ends it by
    // dropping the session (its sender) in the revoke. Central's `revoked` is set
    // before the verb returns and proves nothing about the link; the address central
    // keeps is the last one seen, not a sign of a live link. The line is polled every
    // 20 ms, so the time measured is at most 20 ms late.
    wait_for(
        Duration::from_secs(5),
        "h2 logs `central link down` after the revoke",
        || async {
            if count(&h2.log(), "central link down") > downs {
                Ok(())
            } else {
                Err(h2.log()[log_at..].to_string())
            }
        },
    )
    .await;
    let took = t.elapsed();
    f.record("revoke returned -> h2's link down", took);
    assert!(
        took < Duration::from_secs(1),
        "h2's link went down {took:?} after the revoke"
    );
    let v = f.central.cli_json(&["host", "show", "h2"]).await;
    assert_eq!(v["availability"], "revoked", "{v}");

    // Its reconnects are refused as revoked.
    let t = Instant::now();
    wait_for(T, "h2's reconnect refused as revoked", || async {
        let l = h2.log()[log_at..].to_string();
        if l.contains("was revoked") {
            Ok(())
        } else {
            Err(l)
        }
    })
    .await;
    f.record(
        "h2's first reconnect refused (after its link went down)",
        t.elapsed(),
    );
    // And central never shows it online again, over the next 3 heartbeats.
    hold_for(3 * HEARTBEAT, "h2 stays revoked in `host ls`", || async {
        let hosts = f.central.get("/v1/hosts").await;
        let h = hosts
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == "h2")
            .cloned()
            .ok_or("h2 missing from the host list")?;
        if h["availability"] == "revoked" {
            Ok(())
        } else {
            Err(h.to_string())
        }
    })
    .await;
    let hosts = f.central.cli_json(&["host", "ls"]).await;
    for h in hosts.as_array().unwrap() {
        let want = if h["name"] == "h2" {
            "revoked"
        } else {
            "online"
        };
        assert_eq!(h["availability"], want, "{h}");
    }
    let st = f.central.cli_json(&["status"]).await;
    assert_eq!(
        (st["hosts"].as_u64(), st["hostsOnline"].as_u64()),
        (Some(2), Some(2)),
        "{st}"
    );
    assert!(
        count(&h2.log()[log_at..], "was revoked") >= 1,
        "no refusal logged:\n{}",
        &h2.log()[log_at..]
    );
}
