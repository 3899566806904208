//! Headless Chromium for the console tests: Debian's `/usr/bin/chromium`, driven by
//! playwright-core (`tests/console/driver.mjs`, installed by `ci/console-driver.sh`)
//! over a JSON line protocol. One browser at a time on the machine: [`Browser::launch`]
//! holds an exclusive lock on `target/console-driver/.lock` until the browser is
//! dropped. Chromium trusts central's self-signed server certificate by its SPKI hash
//! (`--ignore-certificate-errors-spki-list`), so the page is a secure context and
//! `Secure` cookies behave as in production.

use crate::fed::target_dir;
use crate::workspace_root;
use serde_json::{json, Value};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// How long one driver call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// Why this machine cannot run the browser tests, if it cannot.
pub fn missing() -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!(
            "needs Debian's chromium at {CHROMIUM} (ci/deps.sh installs chromium and chromium-driver)"
        ));
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("needs Node.js (`node`) to run playwright-core (ci/deps.sh)".into());
    }
    None
}

/// Where screenshots go: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let d = target_dir().join("screenshots");
    let _ = std::fs::create_dir_all(&d);
    d
}

/// The SPKI SHA-256 (base64) of a PEM certificate, as Chromium's
/// `--ignore-certificate-errors-spki-list` takes it.
pub fn spki_sha256(cert_pem: &Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -pubkey -noout -in \"$0\" | openssl pkey -pubin -outform der \
             | openssl dgst -sha256 -binary | base64",
        )
        .arg(cert_pem)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A browser with one page.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    next: u64,
    _profile: tempfile::TempDir,
    _lock: std::fs::File,
}

impl Browser {
    /// Install the driver if needed, take the machine's browser lock, start Chromium
    /// (1440×900, a fresh profile) trusting the certificate with this SPKI hash.
    pub async fn launch(spki: &str) -> Browser {
        Self::launch_in(spki, None).await
    }

    /// [`Browser::launch`], the browser in network namespace `netns` if given: there
    /// it sees none of the veths and bridges other tests on this machine add and
    /// remove, each of which Chromium takes for a network change that aborts its
    /// requests in flight.
    pub async fn launch_in(spki: &str, netns: Option<&str>) -> Browser {
        let st = std::process::Command::new(workspace_root().join("ci/console-driver.sh"))
            .status()
            .expect("run ci/console-driver.sh");
        assert!(st.success(), "ci/console-driver.sh failed");
        let modules = target_dir().join("console-driver");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(modules.join(".lock"))
            .unwrap();
        let fd = lock.as_raw_fd();
        // flock(2) blocks this thread until no other test holds a browser; run it off
        // the async threads.
        tokio::task::spawn_blocking(move || {
            // SAFETY: flock on a descriptor we own for the call's duration.
            let r = unsafe { libc::flock(fd, libc::LOCK_EX) };
            assert_eq!(r, 0, "flock {}", std::io::Error::last_os_error());
        })
        .await
        .unwrap();
        let profile = tempfile::Builder::new()
            .prefix("roost-chromium")
            .tempdir_in("/tmp")
            .unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", ns, "node"]);
                c
            }
            None => tokio::process::Command::new("node"),
        };
        let mut child = cmd
            .arg(workspace_root().join("tests/console/driver.mjs"))
            .env("ROOST_DRIVER_MODULES", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start node");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut b = Browser {
            child,
            stdin,
            lines,
            next: 0,
            _profile: profile,
            _lock: lock,
        };
        let dir = b._profile.path().to_string_lossy().into_owned();
        let v = b
            .call(json!({
                "op": "launch", "executable": CHROMIUM, "userDataDir": dir, "spki": spki,
                "width": 1440, "height": 900, "timeout": 30000
            }))
            .await
            .unwrap_or_else(|e| panic!("launch chromium: {e}"));
        println!("browser: {v}");
        b
    }

    /// One driver call: its value, or the driver's error.
    pub async fn call(&mut self, mut req: Value) -> Result<Value, String> {
        self.next += 1;
        req["id"] = json!(self.next);
        let line = format!("{req}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("write to the driver: {e}"))?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, self.lines.next_line())
            .await
            .map_err(|_| format!("the driver did not answer {req} within {CALL_TIMEOUT:?}"))?
            .map_err(|e| format!("read from the driver: {e}"))?
            .ok_or_else(|| format!("the driver exited during {req}"))?;
        let v: Value =
            serde_json::from_str(&answer).map_err(|e| format!("driver said {answer}: {e}"))?;
        if v["ok"] == json!(true) {
            Ok(v["value"].clone())
        } else {
            Err(format!("{}: {}", req["op"], v["error"]))
        }
    }

    async fn must(&mut self, req: Value) -> Value {
        let what = req.to_string();
        match self.call(req).await {
            Ok(v) => v,
            Err(e) => {
                // What the page showed then, to tell a slow page from a wrong one.
                let page = self
                    .call(json!({"op": "eval", "expr": "location.href + '\\n' + document.body.innerText"}))
                    .await
                    .unwrap_or_else(|e| json!(e));
                let page = page.as_str().unwrap_or("").to_string();
                panic!("browser {what}: {e}\n---- the page:\n{page}")
            }
        }
    }

    /// Load a URL; (HTTP status, final URL).
    pub async fn goto(&mut self, url: &str) -> (u16, String) {
        let v = self.must(json!({"op": "goto", "url": url})).await;
        (
            v["status"].as_u64().unwrap_or(0) as u16,
            v["url"].as_str().unwrap_or("").to_string(),
        )
    }

    /// The page's URL.
    pub async fn url(&mut self) -> String {
        self.must(json!({"op": "url"}))
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Wait (at most `timeout`) until `selector` is visible.
    pub async fn wait(&mut self, selector: &str, timeout: Duration) {
        self.must(
            json!({"op": "wait", "selector": selector, "timeout": timeout.as_millis() as u64}),
        )
        .await;
    }

    /// Wait (at most `timeout`) until `selector` is in the page (visible or not).
    pub async fn wait_attached(&mut self, selector: &str, timeout: Duration) {
        self.must(json!({"op": "wait", "selector": selector, "state": "attached", "timeout": timeout.as_millis() as u64}))
            .await;
    }

    /// Wait (at most `timeout`) until the JS expression is truthy.
    pub async fn wait_fn(&mut self, expr: &str, timeout: Duration) {
        self.must(json!({"op": "waitFn", "expr": expr, "timeout": timeout.as_millis() as u64}))
            .await;
    }

    /// Wait (at most `timeout`) until the page's path is `path`.
    pub async fn wait_path(&mut self, path: &str, timeout: Duration) {
        self.must(json!({"op": "waitUrl", "path": path, "timeout": timeout.as_millis() as u64}))
            .await;
    }

    /// Click.
    pub async fn click(&mut self, selector: &str) {
        self.must(json!({"op": "click", "selector": selector}))
            .await;
    }

    /// Fill an input.
    pub async fn fill(&mut self, selector: &str, value: &str) {
        self.must(json!({"op": "fill", "selector": selector, "value": value}))
            .await;
    }

    /// Focus an element.
    pub async fn focus(&mut self, selector: &str) {
        self.must(json!({"op": "focus", "selector": selector}))
            .await;
    }

    /// Press a key (`Tab`, `Enter`, …).
    pub async fn press(&mut self, key: &str) {
        self.must(json!({"op": "press", "key": key})).await;
    }

    /// Press Tab until every focusable control of the page has had the focus (at most
    /// `max` presses): (controls, reached, the ones never reached).
    pub async fn tab_walk(&mut self, max: u32) -> (u64, u64, Vec<String>) {
        let v = self.must(json!({"op": "tabWalk", "max": max})).await;
        let missed = v["missed"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default();
        (
            v["total"].as_u64().unwrap_or(0),
            v["reached"].as_u64().unwrap_or(0),
            missed,
        )
    }

    /// Type text with the keyboard.
    pub async fn type_text(&mut self, text: &str) {
        self.must(json!({"op": "type", "text": text})).await;
    }

    /// Evaluate a JS expression (a promise is awaited); its JSON value.
    pub async fn eval(&mut self, expr: &str) -> Value {
        self.must(json!({"op": "eval", "expr": expr})).await
    }

    /// A `fetch` from the page (same origin, its cookies): (status, body text).
    pub async fn fetch(&mut self, method: &str, path: &str, headers: Value) -> (u16, String) {
        let expr = format!(
            "fetch({}, {{method: {}, headers: {}, body: {}}}).then(async r => [r.status, await r.text()])",
            json!(path),
            json!(method),
            headers,
            if method == "GET" { "undefined".to_string() } else { json!("{\"name\":\"csrf-probe\"}").to_string() }
        );
        let v = self.eval(&expr).await;
        (
            v[0].as_u64().unwrap_or(0) as u16,
            v[1].as_str().unwrap_or("").to_string(),
        )
    }

    /// Save a 1440×900 screenshot as `target/screenshots/NAME.png`.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let p = screenshot_dir().join(format!("{name}.png"));
        self.must(json!({"op": "screenshot", "path": p.to_string_lossy()}))
            .await;
        println!("screenshot: {}", p.display());
        p
    }

    /// Forget every cookie (a browser with no session).
    pub async fn clear_cookies(&mut self) {
        self.must(json!({"op": "clearCookies"})).await;
    }

    /// Close Chromium and the driver.
    pub async fn close(mut self) {
        let _ = self.call(json!({"op": "close"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
