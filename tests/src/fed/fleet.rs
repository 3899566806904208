//! A fleet: central plus hosts.

use super::*;

/// Central plus hosts `h1..hN`, host `hI` in namespace `I-1`. Dropped in field order:
/// hosts, central, network, database.
#[derive(Debug)]
pub struct Fleet {
    /// The hosts (not started by [`Fleet::new`]).
    pub hosts: Vec<Host>,
    /// Central (started).
    pub central: Central,
    /// The network.
    pub net: Net,
    /// The test's PostgreSQL database (dropped last).
    pub db: Option<PgDb>,
    /// What it runs on.
    pub backend: Backend,
}

/// A WorkloadSet of mock workloads `NAME-0..` (run until stopped, restart always).
pub fn mock_set(set: &str, names: &[String]) -> Value {
    let workloads: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({
                "apiVersion": "roost.dev/v1",
                "kind": "Workload",
                "metadata": {"name": n},
                "spec": {"driver": "mock", "mock": {}, "restartPolicy": "always"}
            })
        })
        .collect();
    set_of(set, workloads)
}

/// A WorkloadSet of the given Workload specs.
pub fn set_of(set: &str, workloads: Vec<Value>) -> Value {
    json!({
        "apiVersion": "roost.dev/v1",
        "kind": "WorkloadSet",
        "metadata": {"name": set},
        "spec": {"workloads": workloads}
    })
}

impl Fleet {
    /// A network of `n` namespaces, a central on the bridge (reconcile every 1 s) on
    /// the backend's store, and `n` hosts not started yet.
    pub async fn new(backend: Backend, n: usize) -> Self {
        let net = Net::new(n);
        let db = match backend.store {
            Store::Sqlite => None,
            Store::Postgres => Some(PgDb::create().await),
        };
        let listen = SocketAddr::new(net.gateway.into(), free_port(net.gateway));
        let mut central = Central::new(
            listen,
            db.as_ref().map(|d| d.url.clone()),
            &["--reconcile", "1s"],
        );
        central.start().await;
        let hosts = (0..n)
            .map(|i| Host::new(&format!("h{}", i + 1), &net.nss[i].name))
            .collect();
        Self {
            hosts,
            central,
            net,
            db,
            backend,
        }
    }

    /// The usual fleet: groups g1 (subclouds s1, s2) and g2 (s3); h1 in s1, h2 in s2,
    /// h3 in s3, each enrolled and online.
    pub async fn standard(backend: Backend) -> Self {
        let mut f = Self::new(backend, 3).await;
        for g in ["g1", "g2"] {
            f.central.cli_ok(&["group", "add", g]).await;
        }
        for (s, g) in [("s1", "g1"), ("s2", "g1"), ("s3", "g2")] {
            f.central
                .cli_ok(&["subcloud", "add", s, "--group", g])
                .await;
        }
        for (i, s) in ["s1", "s2", "s3"].iter().enumerate() {
            f.enroll(i, s).await;
        }
        f.wait_online(&["h1", "h2", "h3"]).await;
        f
    }

    /// `roost central token create --subcloud S [--ttl TTL] -o json`.
    pub async fn token(&self, subcloud: &str, ttl: Option<&str>) -> Value {
        let mut a = vec!["token", "create", "--subcloud", subcloud];
        if let Some(t) = ttl {
            a.extend(["--ttl", t]);
        }
        self.central.cli_json(&a).await
    }

    /// Enroll host `i` into `subcloud` with a fresh token (first start).
    pub async fn enroll(&mut self, i: usize, subcloud: &str) {
        let tok = self.token(subcloud, None).await;
        let token = tok["token"]
            .as_str()
            .expect("token create gives a token")
            .to_string();
        let url = self.central.url();
        self.hosts[i].start_ok(Some((&url, &token))).await;
    }

    /// Host by name.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .expect("a host of the fleet")
    }

    /// Host by name, mutable.
    pub fn host_mut(&mut self, name: &str) -> &mut Host {
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .expect("a host of the fleet")
    }

    /// The namespace index of a host.
    pub fn index(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .expect("a host of the fleet")
    }

    /// Central's view of a host (`GET /v1/hosts/NAME`).
    pub async fn host_view(&self, name: &str) -> Result<Value, String> {
        self.central.try_get(&format!("/v1/hosts/{name}")).await
    }

    /// Wait until central shows every host in `names` online.
    pub async fn wait_online(&self, names: &[&str]) -> Duration {
        let t = Instant::now();
        for n in names {
            let n: &str = n;
            wait_for(T, &format!("{n} online at central"), move || async move {
                let v = self.host_view(n).await?;
                if v["availability"] == "online" {
                    Ok(())
                } else {
                    Err(format!("{v}\nhost log:\n{}", tail(&self.host(n).log(), 15)))
                }
            })
            .await;
        }
        t.elapsed()
    }

    /// Wait until central shows every host in `names` online and in sync; returns the
    /// time it took.
    pub async fn wait_in_sync(&self, names: &[&str], timeout: Duration) -> Duration {
        let t = Instant::now();
        for n in names {
            let n: &str = n;
            wait_for(
                timeout.saturating_sub(t.elapsed()),
                &format!("{n} online and in sync"),
                move || async move {
                    let v = self.host_view(n).await?;
                    if v["availability"] == "online" && v["sync"]["state"] == "in-sync" {
                        Ok(())
                    } else {
                        Err(v.to_string())
                    }
                },
            )
            .await;
        }
        t.elapsed()
    }

    /// Wait until `host` runs exactly the central workloads `names`, each running.
    pub async fn wait_running(&self, host: &str, names: &BTreeSet<String>, timeout: Duration) {
        let h = self.host(host);
        wait_for(
            timeout,
            &format!("{host} runs exactly {names:?}"),
            move || async move {
                let owned = h.owned().await?;
                let have: BTreeSet<String> = owned.keys().cloned().collect();
                let not_running: Vec<&String> = owned
                    .iter()
                    .filter(|(_, s)| s.phase != "running")
                    .map(|(n, _)| n)
                    .collect();
                if &have == names && not_running.is_empty() {
                    Ok(())
                } else {
                    Err(format!("has {have:?}, not running: {not_running:?}"))
                }
            },
        )
        .await;
    }

    /// Write `set` as YAML into central's test dir as `TAG.yaml`; its path.
    pub fn set_file(&self, tag: &str, set: &Value) -> String {
        let file = self.central.p.dir.path().join(format!("{tag}.yaml"));
        std::fs::write(&file, serde_saphyr::to_string(set).unwrap()).unwrap();
        file.to_str().unwrap().to_string()
    }

    /// `roost central deploy -f FILE --target TARGET` of `set` (written as YAML).
    pub async fn deploy(&self, set: &Value, target: &str) -> String {
        let name = set["metadata"]["name"].as_str().unwrap();
        let file = self.set_file(name, set);
        self.central
            .cli_ok(&["deploy", "-f", &file, "--target", target])
            .await
    }

    /// Print and keep a measured time.
    pub fn record(&self, what: &str, d: Duration) {
        record(self.backend.test, what, d);
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- central log (tail):\n{}",
                tail(&self.central.log(), 80)
            );
            for h in &self.hosts {
                eprintln!("---- {} log (tail):\n{}", h.name, tail(&h.log(), 40));
            }
        }
        // Then field order drops the hosts, central, the network and last the
        // database (central must be gone before its database is dropped).
    }
}
