//! The network: a bridge and one namespace per host, unique to this process.

use super::*;

pub(crate) fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub(crate) fn ip_ok(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e}");
    }
}

pub(crate) static NEXT_NET: AtomicU32 = AtomicU32::new(0);
/// One process makes one network at a time (the subnet choice reads what exists).
pub(crate) static CREATING: Mutex<()> = Mutex::new(());
/// Tags of the networks this process holds now.
pub(crate) static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `<pid hex>x<n>` → the pid, if `tag` has that shape.
pub(crate) fn tag_pid(tag: &str) -> Option<u32> {
    let (pid, n) = tag.split_once('x')?;
    if pid.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    u32::from_str_radix(pid, 16).ok()
}

/// A tag from a crashed run: its process is gone (or it carries our pid but is not one
/// of ours, a leftover of an earlier process that had our pid).
pub(crate) fn stale(tag: &str) -> bool {
    let Some(pid) = tag_pid(tag) else {
        return false;
    };
    if pid == std::process::id() {
        return !lock(&LIVE).contains(tag);
    }
    !Path::new(&format!("/proc/{pid}")).exists()
}

pub(crate) fn kill_netns_pids(ns: &str) {
    if let Ok(out) = ip(&["netns", "pids", ns]) {
        for pid in out.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            sigkill(pid);
        }
    }
}

/// Kill `roost central` processes listening on `addr_prefix` (`10.a.b.1:`).
pub(crate) fn kill_centrals_on(addr_prefix: &str) {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "central") && args.iter().any(|a| a.starts_with(addr_prefix)) {
            sigkill(pid);
        }
    }
}

/// Remove the namespaces, links (and their processes) a crashed run left behind.
pub(crate) fn cleanup_stale() {
    for line in ip(&["netns", "list"]).unwrap_or_default().lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some((tag, _)) = name.strip_prefix("rh").and_then(|r| r.rsplit_once('-')) else {
            continue;
        };
        if stale(tag) {
            eprintln!("removing namespace {name} left by an earlier run");
            kill_netns_pids(name);
            let _ = ip(&["netns", "del", name]);
        }
    }
    for line in ip(&["-o", "link", "show"]).unwrap_or_default().lines() {
        let Some(name) = line
            .split(':')
            .nth(1)
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        else {
            continue;
        };
        let tag = if let Some(t) = name.strip_prefix("rbr") {
            Some(t.to_string())
        } else {
            name.strip_prefix("rv")
                .and_then(|r| r.rsplit_once('h'))
                .map(|(t, _)| t.to_string())
        };
        let Some(tag) = tag else { continue };
        if !stale(&tag) {
            continue;
        }
        eprintln!("removing link {name} left by an earlier run");
        if name.starts_with("rbr") {
            // A central left listening on the bridge's address goes too.
            let addrs = ip(&["-4", "-o", "addr", "show", "dev", &name]).unwrap_or_default();
            for a in addrs.split_whitespace().filter(|w| w.contains('/')) {
                if let Some((addr, _)) = a.split_once('/') {
                    kill_centrals_on(&format!("{addr}:"));
                }
            }
        }
        let _ = ip(&["link", "del", &name]);
    }
    // Data and state dirs (`/tmp/roost-f{c,h}<pid hex>x…`) of processes that are gone.
    for e in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = n
            .strip_prefix("roost-fc")
            .or_else(|| n.strip_prefix("roost-fh"))
        else {
            continue;
        };
        let pid = rest
            .split_once('x')
            .and_then(|(p, _)| u32::from_str_radix(p, 16).ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A /24 of 10/8 that no address or route here uses yet.
pub(crate) fn free_subnet(seed: u32) -> (u8, u8) {
    let used = format!(
        "{}\n{}",
        ip(&["-4", "-o", "addr", "show"]).unwrap_or_default(),
        ip(&["-4", "route", "show", "table", "all"]).unwrap_or_default()
    );
    for k in 0..(120 * 256) {
        let idx = (seed.wrapping_add(k)) % (120 * 256);
        let (a, b) = ((130 + idx / 256) as u8, (idx % 256) as u8);
        if !used.contains(&format!("10.{a}.{b}.")) {
            return (a, b);
        }
    }
    panic!("no free 10.x.y.0/24 subnet here");
}

/// One host's namespace.
#[derive(Debug, Clone)]
pub struct Ns {
    /// Its name (`ip netns exec NAME`).
    pub name: String,
    /// The veth end on the bridge (root namespace): set it down to cut the host off.
    pub veth: String,
    /// The host's address.
    pub ip: Ipv4Addr,
}

/// A bridge with `n` namespaces on it; removed on drop.
#[derive(Debug)]
pub struct Net {
    tag: String,
    /// The bridge.
    pub bridge: String,
    /// The bridge's address (central listens on it).
    pub gateway: Ipv4Addr,
    /// The namespaces.
    pub nss: Vec<Ns>,
}

impl Net {
    /// Make a bridge `rbr<tag>` with 10.a.b.1/24 and `n` namespaces `rh<tag>-<i>` at
    /// 10.a.b.(10+i), each with a veth pair; `<tag>` is `<our pid, hex>x<counter>`.
    pub fn new(n: usize) -> Self {
        assert!(
            n < 10,
            "at most 9 namespaces (interface names stay within 15 characters)"
        );
        let _g = lock(&CREATING);
        cleanup_stale();
        let k = NEXT_NET.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{pid:x}x{k}");
        lock(&LIVE).insert(tag.clone());
        let (a, b) = free_subnet(pid.wrapping_mul(7).wrapping_add(k * 131));
        let mut net = Self {
            bridge: format!("rbr{tag}"),
            gateway: Ipv4Addr::new(10, a, b, 1),
            tag,
            nss: Vec::new(),
        };
        // Created step by step into `net`, so a failure half-way still cleans up.
        ip_ok(&["link", "add", &net.bridge, "type", "bridge"]);
        ip_ok(&[
            "addr",
            "add",
            &format!("{}/24", net.gateway),
            "dev",
            &net.bridge,
        ]);
        ip_ok(&["link", "set", &net.bridge, "up"]);
        for i in 0..n {
            let ns = Ns {
                name: format!("rh{}-{i}", net.tag),
                veth: format!("rv{}h{i}", net.tag),
                ip: Ipv4Addr::new(10, a, b, 10 + i as u8),
            };
            let peer = format!("rn{}h{i}", net.tag);
            assert!(
                ns.veth.len() <= 15 && peer.len() <= 15 && net.bridge.len() <= 15,
                "interface names over 15 characters: {} {peer} {}",
                ns.veth,
                net.bridge
            );
            ip_ok(&["netns", "add", &ns.name]);
            net.nss.push(ns.clone());
            ip_ok(&[
                "link", "add", &ns.veth, "type", "veth", "peer", "name", &peer,
            ]);
            ip_ok(&["link", "set", &peer, "netns", &ns.name]);
            ip_ok(&["link", "set", &ns.veth, "master", &net.bridge]);
            ip_ok(&["link", "set", &ns.veth, "up"]);
            ip_ok(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{}/24", ns.ip),
                "dev",
                &peer,
            ]);
            ip_ok(&["-n", &ns.name, "link", "set", &peer, "up"]);
            ip_ok(&["-n", &ns.name, "link", "set", "lo", "up"]);
        }
        for ns in &net.nss {
            net.wait_forwarding(ns, Duration::from_secs(10));
        }
        net
    }

    /// Wait until the bridge forwards on `ns`'s port (state 3 = forwarding).
    fn wait_forwarding(&self, ns: &Ns, timeout: Duration) {
        let path = format!("/sys/class/net/{}/brport/state", ns.veth);
        let t = Instant::now();
        loop {
            let st = std::fs::read_to_string(&path).unwrap_or_default();
            if st.trim() == "3" {
                return;
            }
            assert!(
                t.elapsed() < timeout,
                "bridge port {} never forwarded within {timeout:?} (state `{}`)",
                ns.veth,
                st.trim()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Cut namespace `i` off (its veth on the bridge down).
    pub fn link_down(&self, i: usize) {
        ip_ok(&["link", "set", &self.nss[i].veth, "down"]);
    }

    /// Reconnect namespace `i`.
    pub fn link_up(&self, i: usize) {
        ip_ok(&["link", "set", &self.nss[i].veth, "up"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.nss {
            kill_netns_pids(&ns.name);
            let _ = ip(&["netns", "del", &ns.name]);
            let _ = ip(&["link", "del", &ns.veth]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        lock(&LIVE).remove(&self.tag);
    }
}

/// A TCP port free on `ip` now.
pub fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
