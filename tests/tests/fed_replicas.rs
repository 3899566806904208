//! Central replicas: three `roost central` processes on one private PostgreSQL (started
//! here with `ci/postgres.sh`, since the test restarts it), and 30 simulated hosts (the
//! real link client, one certificate each, on loopback) that know every replica's
//! address from their Welcome.
//!
//! - The leader is SIGKILLed right after acknowledging a deploy: another replica leads
//!   within 10 s, every host is linked again within 10 s, the deploy completes, and
//!   the workload the deploy did not change never restarts on any host.
//! - The leader is SIGKILLed in the middle of a strategy: the new leader finishes it.
//! - PostgreSQL itself is restarted: replicas and hosts carry on by themselves.
//! - Over the whole test no two replicas lead at once: each leadership (from the
//!   replicas' logs: term and start time) begins after the previous leader died.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hyper::Method;
use roost_host::client::Client;
use roost_tests::central::{call, sim_command, wait_sim_linked};
use roost_tests::roost_bin;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HOSTS: usize = 30;
const SUBCLOUDS: usize = 3;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Pg(PathBuf);

impl Pg {
    fn script(&self, verb: &str) -> String {
        let out = Command::new(repo().join("ci/postgres.sh"))
            .arg(verb)
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ci/postgres.sh {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("ci/postgres.sh"))
            .arg("stop")
            .arg(&self.0)
            .output();
    }
}

struct Replica {
    child: Option<Child>,
    url: String,
    data: PathBuf,
    log: PathBuf,
}

impl Replica {
    fn start(dir: &Path, i: usize, db: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.join(format!("r{i}"));
        let log = dir.join(format!("r{i}.log"));
        let mut r = Self {
            child: None,
            url: format!("https://127.0.0.1:{port}"),
            data,
            log,
        };
        r.spawn(db, dir);
        r
    }

    fn spawn(&mut self, db: &str, dir: &Path) {
        let port = self.url.rsplit(':').next().unwrap().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(roost_bin())
            .args(["central", "--data-dir"])
            .arg(&self.data)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--db", db])
            .arg("--key-file")
            .arg(dir.join("replica.key"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL it; returns the time just before the signal (it was leading until
    /// then at least).
    fn kill(&mut self) -> u64 {
        let mut c = self.child.take().unwrap();
        let at = now_ms();
        c.kill().unwrap();
        c.wait().unwrap();
        at
    }

    fn client(&self) -> Client {
        let token = std::fs::read_to_string(self.data.join("operator.token")).unwrap();
        let ca = std::fs::read(self.data.join("ca.pem")).unwrap();
        Client::remote(&self.url, token.trim(), Some(&ca)).unwrap()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn field(l: &str, k: &str) -> Option<u64> {
    l.split(&format!("{k}="))
        .nth(1)?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse::<u64>()
        .ok()
}

/// Every `replica: leading` line of a log: (term, since_ms).
fn leaderships(log: &str) -> Vec<(u64, u64)> {
    log.lines()
        .filter(|l| l.contains("replica: leading"))
        .filter_map(|l| Some((field(l, "term")?, field(l, "since_ms")?)))
        .collect()
}

/// Every `stopped leading` line of a log: (term, at_ms).
fn stepdowns(log: &str) -> Vec<(u64, u64)> {
    log.lines()
        .filter(|l| l.contains("stopped leading"))
        .filter_map(|l| Some((field(l, "term")?, field(l, "at_ms")?)))
        .collect()
}

fn set(keep: u64, app: u64) -> Value {
    let w = |name: &str, v: u64| {
        json!({"apiVersion": "roost.dev/v1", "kind": "Workload", "metadata": {"name": name},
               "spec": {"driver": "mock", "mock": {"runSeconds": v}}})
    };
    json!({"apiVersion": "roost.dev/v1", "kind": "WorkloadSet", "metadata": {"name": "app"},
           "spec": {"workloads": [w("keep", keep), w("app", app)]}})
}

/// Poll `f` through any live replica until it holds (at most `limit`).
async fn until(
    replicas: &[Replica],
    what: &str,
    limit: Duration,
    f: impl Fn(&Value) -> bool,
    path: &str,
) -> Duration {
    let t = Instant::now();
    let mut last = String::new();
    loop {
        for r in replicas.iter().filter(|r| r.child.is_some()) {
            match r.client().request(Method::GET, path, None).await {
                Ok(resp) if resp.status.is_success() => {
                    let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
                    if f(&v) {
                        return t.elapsed();
                    }
                    last = v.to_string();
                }
                Ok(resp) => {
                    last = format!("{} {}", resp.status, String::from_utf8_lossy(&resp.body))
                }
                Err(e) => last = e.to_string(),
            }
        }
        assert!(
            t.elapsed() < limit,
            "{what}: not within {limit:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn leader_index(replicas: &[Replica]) -> usize {
    // The highest term any live replica's log shows.
    replicas
        .iter()
        .enumerate()
        .filter(|(_, r)| r.child.is_some())
        .filter_map(|(i, r)| leaderships(&r.log()).last().map(|l| (l.0, i)))
        .max()
        .map(|(_, i)| i)
        .expect("no replica leads")
}

/// Every host's instance of workload `name`.
async fn instances(c: &Client, name: &str) -> Vec<(String, u64, u64)> {
    let hosts = call(c, Method::GET, "/v1/hosts", None).await;
    let mut out = Vec::new();
    for h in hosts.as_array().unwrap() {
        let host = h["name"].as_str().unwrap();
        let v = call(c, Method::GET, &format!("/v1/hosts/{host}"), None).await;
        for w in v["workloads"].as_array().unwrap() {
            if w["name"] == name {
                out.push((
                    host.to_string(),
                    w["instance"].as_u64().unwrap_or(0),
                    w["restarts"].as_u64().unwrap_or(0),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Every host online and in sync with `what`, and workload `keep` on each host still
/// the instance it was (`keep0`): it never restarted.
async fn in_sync_and_kept(replicas: &[Replica], what: &str, keep0: &[(String, u64, u64)]) {
    until(
        replicas,
        &format!("every host in sync with {what}"),
        Duration::from_secs(30),
        |s| s["hostsOnline"] == HOSTS as u64 && s["subcloudsInSync"] == SUBCLOUDS as u64,
        "/v1/status",
    )
    .await;
    let live = replicas.iter().position(|r| r.child.is_some()).unwrap();
    assert_eq!(
        keep0,
        instances(&replicas[live].client(), "keep").await.as_slice(),
        "the unchanged workload restarted"
    );
}

#[test]
fn replicas_fail_over_without_losing_or_restarting_anything() {
    if !repo().join("ci/postgres.sh").exists()
        || std::fs::read_dir("/usr/lib/postgresql").map_or(true, |mut d| d.next().is_none())
    {
        eprintln!("SKIP: needs PostgreSQL's server binaries (Debian package postgresql; ci/deps.sh installs it)");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("roost-rep")
        .tempdir_in("/tmp")
        .unwrap();
    // PostgreSQL runs as user postgres, which must reach its dir.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let pg = Pg(dir.path().join("pg"));
    let db = pg.script("start");
    let mut replicas: Vec<Replica> = (0..3).map(|i| Replica::start(dir.path(), i, &db)).collect();
    let t = Instant::now();
    while !replicas.iter().all(|r| r.log().contains("ready on")) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "replicas did not start: {}",
            replicas.iter().map(Replica::log).collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Hosts join through a replica that does not lead (then learn all three).
    let first = leader_index(&replicas);
    let entry = (first + 1) % 3;
    let sim_log = dir.path().join("sim.log");
    let mut sim = sim_command(
        &replicas[entry].url,
        &replicas[entry].data,
        HOSTS,
        SUBCLOUDS,
    )
    .args(["--heartbeat", "1", "--apply-seconds", "1"])
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&sim_log).unwrap())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    wait_sim_linked(&sim_log);
    // (replica, killed at ms).
    let mut kills: Vec<(usize, u64)> = Vec::new();
    rt.block_on(async {
        let c = replicas[entry].client();
        call(
            &c,
            Method::POST,
            "/v1/deploy",
            Some(json!({"set": set(1, 1), "target": "group/sim"})),
        )
        .await;
        let in_sync = |s: &Value| {
            s["hostsOnline"] == HOSTS as u64 && s["subcloudsInSync"] == SUBCLOUDS as u64
        };
        until(
            &replicas,
            "every host in sync",
            Duration::from_secs(60),
            in_sync,
            "/v1/status",
        )
        .await;
        let keep0 = instances(&c, "keep").await;
        assert_eq!(keep0.len(), HOSTS);

        // 1. The leader dies right after acknowledging a deploy.
        let l = leader_index(&replicas);
        let c = replicas[(l + 1) % 3].client();
        let d = call(
            &c,
            Method::POST,
            "/v1/deploy",
            Some(json!({"set": set(1, 2), "target": "group/sim"})),
        )
        .await;
        assert_eq!(d["generation"], 2, "{d}");
        kills.push((l, replicas[l].kill()));
        let killed = Instant::now();
        let took = until(
            &replicas,
            "another replica leads",
            Duration::from_secs(10),
            |_| true,
            "/v1/status",
        )
        .await;
        println!("after the leader's kill: a replica answers in {took:?}");
        until(
            &replicas,
            "every host linked again",
            Duration::from_secs(10),
            |s| s["hostsOnline"] == HOSTS as u64,
            "/v1/status",
        )
        .await;
        println!(
            "every host linked again {:?} after the kill",
            killed.elapsed()
        );
        until(
            &replicas,
            "the deploy acknowledged before the kill completes",
            Duration::from_secs(30),
            |v| {
                v.as_array()
                    .is_some_and(|a| a.iter().any(|d| d["set"] == "app" && d["generation"] == 2))
            },
            "/v1/deployments",
        )
        .await;
        until(
            &replicas,
            "every host in sync with generation 2",
            Duration::from_secs(30),
            in_sync,
            "/v1/status",
        )
        .await;
        let live = replicas.iter().position(|r| r.child.is_some()).unwrap();
        let keep1 = instances(&replicas[live].client(), "keep").await;
        assert_eq!(keep0, keep1, "the unchanged workload restarted somewhere");

        // 2. The leader dies in the middle of a strategy.
        let l = leader_index(&replicas);
        let c = replicas
            .iter()
            .enumerate()
            .find(|(i, r)| *i != l && r.child.is_some())
            .unwrap()
            .1
            .client();
        let req = json!({"name": "roll", "set": set(1, 3), "group": "sim", "maxParallel": 1});
        call(&c, Method::POST, "/v1/strategies", Some(req)).await;
        call(&c, Method::POST, "/v1/strategies/roll/apply", None).await;
        until(
            &replicas,
            "the strategy's first step done",
            Duration::from_secs(30),
            |v| v["progress"]["complete"].as_u64().unwrap_or(0) >= 1,
            "/v1/strategies/roll",
        )
        .await;
        // Restart the first victim so three replicas remain for the rest.
        let victim = replicas.iter().position(|r| r.child.is_none()).unwrap();
        replicas[victim].spawn(&db, dir.path());
        kills.push((l, replicas[l].kill()));
        let done = until(
            &replicas,
            "the new leader finishes the strategy",
            Duration::from_secs(60),
            |v| v["state"] == "complete",
            "/v1/strategies/roll",
        )
        .await;
        println!("strategy complete {done:?} after its leader's kill");
        in_sync_and_kept(&replicas, "the strategy's set", &keep0).await;

        // The operator CLI takes every replica's address and uses one that answers.
        let dead = replicas.iter().find(|r| r.child.is_none()).unwrap();
        let live = replicas.iter().find(|r| r.child.is_some()).unwrap();
        let out = Command::new(roost_bin())
            .args([
                "central",
                "status",
                "--addr",
                &format!("{},{}", dead.url, live.url),
            ])
            .arg("--token-file")
            .arg(live.data.join("operator.token"))
            .arg("--ca-file")
            .arg(live.data.join("ca.pem"))
            .output()
            .unwrap();
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains(&format!("{HOSTS} online")),
            "roost central status --addr DEAD,LIVE: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        // 3. PostgreSQL restarts: everyone carries on by themselves.
        pg.script("stop");
        let down = now_ms();
        pg.script("start");
        println!("PostgreSQL down for {} ms", now_ms() - down);
        let back = until(
            &replicas,
            "a leader again after PostgreSQL's restart",
            Duration::from_secs(30),
            in_sync,
            "/v1/status",
        )
        .await;
        println!("after PostgreSQL's restart: in sync again in {back:?}");
        let c = replicas
            .iter()
            .find(|r| r.child.is_some())
            .unwrap()
            .client();
        let d = call(
            &c,
            Method::POST,
            "/v1/deploy",
            Some(json!({"set": set(1, 4), "target": "group/sim"})),
        )
        .await;
        assert_eq!(d["generation"], 4, "nothing acknowledged was lost: {d}");
        in_sync_and_kept(&replicas, "the next deploy", &keep0).await;
    });
    let _ = sim.kill();
    let _ = sim.wait();

    // No two leaders at once: terms grow by one, and each leadership began only after
    // the one before it ended (its replica killed, or stepped down on losing the
    // database when PostgreSQL restarted).
    let mut all: Vec<(u64, u64, usize)> = replicas
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            leaderships(&r.log())
                .into_iter()
                .map(move |(t, s)| (t, s, i))
        })
        .collect();
    all.sort();
    let downs: Vec<(u64, u64)> = replicas.iter().flat_map(|r| stepdowns(&r.log())).collect();
    println!(
        "leaderships (term, since_ms, replica): {all:?}; kills {kills:?}; step-downs {downs:?}"
    );
    assert!(
        all.len() >= 3,
        "expected at least three leaderships: {all:?}"
    );
    for w in all.windows(2) {
        let ((term, since, who), (next_term, next_since, _)) = (w[0], w[1]);
        assert_eq!(next_term, term + 1, "terms skip or repeat: {all:?}");
        let ended = kills
            .iter()
            .filter(|(r, at)| *r == who && *at >= since)
            .map(|k| k.1)
            .chain(downs.iter().filter(|d| d.0 == term).map(|d| d.1))
            .min()
            .unwrap_or_else(|| {
                panic!("term {term} never ended, yet term {next_term} began: {all:?}")
            });
        assert!(
            ended <= next_since,
            "term {next_term} began at {next_since} before term {term} ended at {ended}"
        );
    }
}
