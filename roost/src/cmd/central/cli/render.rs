//! Tables and one-line answers for `-o table`.

use serde_json::Value;

/// The string at `ptr` (`""` if absent or not a string).
pub fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(Value::as_u64).unwrap_or(0)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A Unix-ms time relative to now: `12s ago`, `in 1h`, `-` for 0.
pub fn when(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let now = now_ms();
    if ms <= now {
        format!("{} ago", span(now - ms))
    } else {
        format!("in {}", span(ms - now))
    }
}

/// Left-aligned columns, two spaces apart.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(&c);
            } else {
                let pad = w[i].saturating_sub(c.chars().count());
                out.push_str(&c);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn counts(v: &Value, ptr: &str) -> (u64, u64, u64, u64) {
    (
        n(v, &format!("{ptr}/critical")),
        n(v, &format!("{ptr}/major")),
        n(v, &format!("{ptr}/minor")),
        n(v, &format!("{ptr}/warning")),
    )
}

/// `roost central status`.
pub fn status(v: &Value) -> String {
    let (c, m, mi, w) = counts(v, "/alarms");
    format!(
        "groups        {}\nsubclouds     {} ({} managed; {} in-sync, {} out-of-sync, {} unknown)\nhosts         {} ({} online, {} offline)\ndeployments   {}\nalarms        {c} critical, {m} major, {mi} minor, {w} warning\nstore         {}\nlast event    {}\n",
        n(v, "/groups"),
        n(v, "/subclouds"),
        n(v, "/subcloudsManaged"),
        n(v, "/subcloudsInSync"),
        n(v, "/subcloudsOutOfSync"),
        n(v, "/subcloudsUnknown"),
        n(v, "/hosts"),
        n(v, "/hostsOnline"),
        n(v, "/hostsOffline"),
        n(v, "/deployments"),
        s(v, "/store"),
        n(v, "/lastEvent"),
    )
}

/// A fleet sync audit's verdict.
pub fn audit(v: &Value) -> String {
    let list = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let mut out = format!(
        "audit {}: {} hosts in {:.2} s; asked {}, answered {}\nin sync {}, out of sync {}, unknown {}\n",
        n(v, "/id"),
        n(v, "/hosts"),
        v.pointer("/seconds").and_then(Value::as_f64).unwrap_or(0.0),
        n(v, "/asked"),
        n(v, "/answered"),
        n(v, "/inSync"),
        n(v, "/outOfSync"),
        n(v, "/unknown"),
    );
    for (what, p) in [("drifted", "/drifted"), ("no answer", "/silent")] {
        let l = list(p);
        if !l.is_empty() {
            out.push_str(&format!("{what}: {l}\n"));
        }
    }
    out
}

/// One subcloud in a line, after a verb.
pub fn subcloud_line(v: &Value, verb: &str) -> String {
    format!(
        "subcloud/{} {verb} (group {}, {}, {})\n",
        s(v, "/name"),
        s(v, "/group"),
        s(v, "/management"),
        s(v, "/availability")
    )
}

fn last_seen(hosts: &Value, subcloud: &str) -> u64 {
    arr(hosts)
        .iter()
        .filter(|h| s(h, "/subcloud") == subcloud)
        .map(|h| n(h, "/lastSeenMs"))
        .max()
        .unwrap_or(0)
}

/// `subcloud ls`.
pub fn subclouds(v: &Value, hosts: &Value) -> String {
    let rows = arr(v)
        .iter()
        .map(|sc| {
            let (c, m, mi, _) = counts(sc, "/alarms");
            vec![
                s(sc, "/name").into(),
                s(sc, "/group").into(),
                s(sc, "/management").into(),
                s(sc, "/availability").into(),
                s(sc, "/sync").into(),
                format!("{}/{}", n(sc, "/hostsOnline"), n(sc, "/hosts")),
                c.to_string(),
                m.to_string(),
                mi.to_string(),
                when(last_seen(hosts, s(sc, "/name"))),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "GROUP",
            "MANAGEMENT",
            "AVAILABILITY",
            "SYNC",
            "HOSTS",
            "CRIT",
            "MAJ",
            "MIN",
            "LAST-SEEN",
        ],
        rows,
    )
}

fn host_rows(list: &[Value]) -> Vec<Vec<String>> {
    list.iter()
        .map(|h| {
            let (c, m, mi, w) = counts(h, "/alarms");
            vec![
                s(h, "/name").into(),
                s(h, "/subcloud").into(),
                s(h, "/availability").into(),
                s(h, "/sync/state").into(),
                format!("{c}/{m}/{mi}/{w}"),
                when(n(h, "/lastSeenMs")),
            ]
        })
        .collect()
}

const HOST_HEADER: [&str; 6] = [
    "NAME",
    "SUBCLOUD",
    "AVAILABILITY",
    "SYNC",
    "ALARMS(C/M/m/W)",
    "LAST-SEEN",
];

/// `subcloud show`.
pub fn subcloud(v: &Value) -> String {
    let (c, m, mi, w) = counts(v, "/alarms");
    let mut out = format!(
        "name:          {}\ngroup:         {}\nmanagement:    {}\navailability:  {}\nsync:          {}\nhosts:         {} ({} online)\nalarms:        {c} critical, {m} major, {mi} minor, {w} warning\n",
        s(v, "/name"),
        s(v, "/group"),
        s(v, "/management"),
        s(v, "/availability"),
        s(v, "/sync"),
        n(v, "/hosts"),
        n(v, "/hostsOnline"),
    );
    let hosts = arr(v.get("hostList").unwrap_or(&Value::Null));
    if !hosts.is_empty() {
        out.push('\n');
        out.push_str(&table(&HOST_HEADER, host_rows(hosts)));
    }
    out
}

/// `subcloud sync`.
pub fn synced(name: &str, v: &Value) -> String {
    let hosts: Vec<&str> = arr(v.get("hosts").unwrap_or(&Value::Null))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if hosts.is_empty() {
        format!("subcloud/{name}: no host online to push to\n")
    } else {
        format!(
            "subcloud/{name}: desired state pushed to {}\n",
            hosts.join(", ")
        )
    }
}

/// A removal.
pub fn removed(v: &Value) -> String {
    format!("{} removed\n", s(v, "/removed"))
}

/// `group ls`.
pub fn groups(v: &Value, subs: &Value) -> String {
    let rows = arr(v)
        .iter()
        .map(|g| {
            let name = s(g, "/name");
            let k = arr(subs)
                .iter()
                .filter(|sc| s(sc, "/group") == name)
                .count();
            vec![name.into(), k.to_string(), s(g, "/description").into()]
        })
        .collect();
    table(&["NAME", "SUBCLOUDS", "DESCRIPTION"], rows)
}

/// `host ls`.
pub fn hosts(v: &Value) -> String {
    table(&HOST_HEADER, host_rows(arr(v)))
}

/// `host show`.
pub fn host(v: &Value) -> String {
    let (c, m, mi, w) = counts(v, "/alarms");
    let mut out = format!(
        "name:          {}\nsubcloud:      {} (group {})\navailability:  {}\nsync:          {}\naddress:       {}\nversion:       {}\nenrolled:      {}\nlast seen:     {}\nheartbeat:     {} ms\ncertificate:   expires {}\nalarms:        {c} critical, {m} major, {mi} minor, {w} warning\nlocal workloads: {}\n",
        s(v, "/name"),
        s(v, "/subcloud"),
        s(v, "/group"),
        s(v, "/availability"),
        s(v, "/sync/state"),
        if s(v, "/address").is_empty() { "-" } else { s(v, "/address") },
        if s(v, "/roostVersion").is_empty() { "-" } else { s(v, "/roostVersion") },
        when(n(v, "/enrolledMs")),
        when(n(v, "/lastSeenMs")),
        n(v, "/heartbeatMs"),
        when(n(v, "/certNotAfterMs")),
        n(v, "/localWorkloads"),
    );
    for what in ["missing", "extra", "differ"] {
        let names: Vec<&str> = arr(v.pointer(&format!("/sync/{what}")).unwrap_or(&Value::Null))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if !names.is_empty() {
            out.push_str(&format!(
                "{what}:{} {}\n",
                " ".repeat(14 - what.len() - 1),
                names.join(", ")
            ));
        }
    }
    for e in arr(v.get("applyErrors").unwrap_or(&Value::Null)) {
        out.push_str(&format!("apply error:   {}\n", e.as_str().unwrap_or("")));
    }
    let wl = arr(v.get("workloads").unwrap_or(&Value::Null));
    if !wl.is_empty() {
        out.push('\n');
        let rows = wl
            .iter()
            .map(|w| {
                vec![
                    s(w, "/name").into(),
                    s(w, "/set").into(),
                    s(w, "/phase").into(),
                    n(w, "/restarts").to_string(),
                    n(w, "/instance").to_string(),
                    s(w, "/specDigest").chars().take(12).collect(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["WORKLOAD", "SET", "PHASE", "RESTARTS", "INSTANCE", "DIGEST"],
            rows,
        ));
    }
    out
}

/// `deploy`.
pub fn deployed(v: &Value) -> String {
    let hosts: Vec<&str> = arr(v.get("hosts").unwrap_or(&Value::Null))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    format!(
        "set/{} at {}: {} (generation {}), {} host{}{}\n",
        s(v, "/set"),
        s(v, "/target"),
        s(v, "/result"),
        n(v, "/generation"),
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" },
        if hosts.is_empty() {
            String::new()
        } else {
            format!(": {}", hosts.join(", "))
        }
    )
}

/// `undeploy`.
pub fn undeployed(v: &Value) -> String {
    format!(
        "set/{} removed from {} ({} hosts)\n",
        s(v, "/set"),
        s(v, "/target"),
        arr(v.get("hosts").unwrap_or(&Value::Null)).len()
    )
}

/// `alarm ls`.
pub fn alarms(v: &Value) -> String {
    let rows = arr(v)
        .iter()
        .map(|a| {
            vec![
                s(a, "/id").into(),
                s(a, "/severity").into(),
                s(a, "/code").into(),
                s(a, "/entity").into(),
                when(n(a, "/raisedMs")),
                if a.get("clearedMs").is_some() {
                    when(n(a, "/clearedMs"))
                } else {
                    "active".into()
                },
                s(a, "/reason").into(),
            ]
        })
        .collect();
    table(
        &[
            "ID", "SEVERITY", "CODE", "ENTITY", "RAISED", "CLEARED", "REASON",
        ],
        rows,
    )
}

/// The header of `events`.
pub const EVENT_HEADER: &str =
    "SEQ       TIME          KIND             SUBJECT                  MESSAGE";

/// One event line.
pub fn event(e: &Value) -> String {
    format!(
        "{:<9} {:<13} {:<16} {:<24} {}",
        n(e, "/seq"),
        when(n(e, "/timeMs")),
        s(e, "/kind"),
        s(e, "/subject"),
        s(e, "/message")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_times_read() {
        let t = table(&["A", "BB"], vec![vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
        assert_eq!(when(0), "-");
        assert!(when(now_ms() - 5_000).ends_with("s ago"));
        assert!(when(now_ms() + 7_200_000).starts_with("in "));
    }
}
