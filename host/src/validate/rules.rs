//! The rules pass: ranges that depend on other fields, combinations, names, paths.
//!
//! It reads the document loosely (a `serde_json::Value` with every value the
//! structural pass refused taken out), so a bad enum or a wrong type in one field
//! does not hide a rule broken in another: all of them come back in one answer.

use super::{err, FieldError};
use crate::spec::{API_VERSION, KIND};
use serde_json::{Map, Value};

/// A place in the loose document; absent and `null` read the same (as serde reads
/// an `Option`).
#[derive(Clone, Copy)]
struct At<'a>(Option<&'a Value>);

impl<'a> At<'a> {
    fn get(self, key: &str) -> At<'a> {
        At(self.0.and_then(|v| v.get(key)).filter(|v| !v.is_null()))
    }
    fn present(self) -> bool {
        self.0.is_some()
    }
    fn str(self) -> Option<&'a str> {
        self.0.and_then(Value::as_str)
    }
    fn u64(self) -> Option<u64> {
        self.0.and_then(Value::as_u64)
    }
    fn i64(self) -> Option<i64> {
        self.0.and_then(Value::as_i64)
    }
    fn list(self) -> &'a [Value] {
        self.0
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
    fn map(self) -> Option<&'a Map<String, Value>> {
        self.0.and_then(Value::as_object)
    }
}

/// `a-z0-9-`, starting with a letter, not ending with `-`, 1–63 chars.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && !n.ends_with('-')
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Check every rule the schema cannot say on `doc` (already stripped of the values
/// the structural pass refused).
pub(super) fn check(doc: &Value, out: &mut Vec<FieldError>) {
    let d = At(Some(doc));
    if let Some(v) = d.get("apiVersion").str() {
        if v != API_VERSION {
            out.push(err(
                "apiVersion",
                format!("`{v}` is not supported; use `{API_VERSION}`"),
            ));
        }
    }
    if let Some(k) = d.get("kind").str() {
        if k != KIND {
            out.push(err("kind", format!("`{k}` is not supported; use `{KIND}`")));
        }
    }
    metadata(d.get("metadata"), out);
    let s = d.get("spec");
    sections(s, out);
    container(s.get("container"), out);
    vm(s, out);
    mock(s.get("mock"), out);
    resources(s.get("resources"), out);
    if s.get("stopGraceSeconds").u64().is_some_and(|g| g > 3600) {
        out.push(err("spec.stopGraceSeconds", "must be at most 3600 seconds"));
    }
}

fn metadata(m: At<'_>, out: &mut Vec<FieldError>) {
    if let Some(name) = m.get("name").str() {
        if !valid_name(name) {
            out.push(err(
                "metadata.name",
                format!(
                    "`{name}` is not a valid name; use 1–63 characters of a-z, 0-9 and '-', \
                     starting with a letter and not ending with '-'"
                ),
            ));
        }
    }
    for (k, v) in m.get("labels").map().into_iter().flatten() {
        if k.is_empty() || k.len() > 63 || k.chars().any(|c| c.is_whitespace() || c == '=') {
            out.push(err(
                format!("metadata.labels.{k}"),
                "label keys must be 1–63 characters without spaces or '='",
            ));
        }
        if v.as_str().is_some_and(|v| v.len() > 253) {
            out.push(err(
                format!("metadata.labels.{k}"),
                "label values must be at most 253 characters",
            ));
        }
    }
}

/// Exactly the section that matches the driver.
fn sections(s: At<'_>, out: &mut Vec<FieldError>) {
    let Some(driver) = s.get("driver").str() else {
        return;
    };
    for key in ["container", "vm", "mock"] {
        let present = s.get(key).present();
        if key == driver && !present && key != "mock" {
            out.push(err(
                format!("spec.{key}"),
                format!("is required when driver is `{key}`; add a `{key}:` section"),
            ));
        }
        if key != driver && present {
            out.push(err(
                format!("spec.{key}"),
                format!(
                    "is only for driver `{key}`, but driver is `{driver}`; remove the section \
                     or set `spec.driver: {key}`"
                ),
            ));
        }
    }
}

fn container(c: At<'_>, out: &mut Vec<FieldError>) {
    if let Some(image) = c.get("image").str() {
        if image.trim().is_empty() {
            out.push(err(
                "spec.container.image",
                "must not be empty; name an image, e.g. `busybox:latest`",
            ));
        } else if image.chars().any(char::is_whitespace) {
            out.push(err(
                "spec.container.image",
                format!("`{image}` contains whitespace; remove it"),
            ));
        }
    }
    for key in ["command", "args"] {
        for (i, a) in c.get(key).list().iter().enumerate() {
            if a.as_str().is_some_and(|a| a.contains('\0')) {
                out.push(err(
                    format!("spec.container.{key}[{i}]"),
                    "contains a NUL byte; remove it",
                ));
            }
        }
    }
    if c.get("command").list().first().and_then(Value::as_str) == Some("") {
        out.push(err(
            "spec.container.command[0]",
            "must not be empty; name the program to run",
        ));
    }
    for k in c.get("env").map().into_iter().flatten().map(|(k, _)| k) {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            out.push(err(
                format!("spec.container.env.{k}"),
                "variable names must be non-empty and contain no '=' or NUL",
            ));
        }
    }
    if let Some(wd) = c.get("workingDir").str() {
        if !wd.starts_with('/') {
            out.push(err(
                "spec.container.workingDir",
                format!("`{wd}` must be an absolute path (start with '/')"),
            ));
        }
    }
    if let Some(u) = c.get("user").str() {
        let ok = !u.is_empty()
            && u.split(':').count() <= 2
            && u.split(':')
                .all(|p| !p.is_empty() && !p.contains(char::is_whitespace));
        if !ok {
            out.push(err(
                "spec.container.user",
                format!("`{u}` is not a user; use `uid`, `uid:gid` or a user name"),
            ));
        }
    }
    let bridge = c.get("network").str() == Some("bridge");
    let mut published = std::collections::BTreeSet::new();
    for (i, p) in c.get("ports").list().iter().enumerate() {
        let p = At(Some(p));
        if !bridge {
            out.push(err(
                format!("spec.container.ports[{i}]"),
                "publishing a port needs `network: bridge` (with the host's network the container's ports are the host's already)",
            ));
        }
        if let Some(hp) = p.get("hostPort").0.and_then(Value::as_u64) {
            let proto = p.get("protocol").str().unwrap_or("tcp");
            if !published.insert((hp, proto)) {
                out.push(err(
                    format!("spec.container.ports[{i}].hostPort"),
                    format!("{hp}/{proto} is published twice; keep one"),
                ));
            }
        }
    }
    let mut dests = std::collections::BTreeSet::new();
    for (i, m) in c.get("mounts").list().iter().enumerate() {
        let m = At(Some(m));
        if let Some(src) = m.get("source").str() {
            if !src.starts_with('/') {
                out.push(err(
                    format!("spec.container.mounts[{i}].source"),
                    format!("`{src}` must be an absolute host path"),
                ));
            }
        }
        if let Some(dst) = m.get("destination").str() {
            if !dst.starts_with('/') {
                out.push(err(
                    format!("spec.container.mounts[{i}].destination"),
                    format!("`{dst}` must be an absolute path"),
                ));
            } else if !dests.insert(dst) {
                out.push(err(
                    format!("spec.container.mounts[{i}].destination"),
                    format!("`{dst}` is mounted twice; keep one"),
                ));
            }
        }
    }
}

fn vm(s: At<'_>, out: &mut Vec<FieldError>) {
    let v = s.get("vm");
    if !v.present() {
        return;
    }
    if let Some(k) = v.get("kernel").str() {
        if !k.starts_with('/') {
            out.push(err(
                "spec.vm.kernel",
                format!("`{k}` must be an absolute path to a kernel image"),
            ));
        }
    }
    if let Some(i) = v.get("initrd").str() {
        if !i.starts_with('/') {
            out.push(err(
                "spec.vm.initrd",
                format!("`{i}` must be an absolute path"),
            ));
        }
    }
    if let Some(c) = v.get("cmdline").str() {
        if c.len() > 2048 || c.contains('\0') {
            out.push(err(
                "spec.vm.cmdline",
                "must be at most 2048 bytes without NUL bytes",
            ));
        }
    }
    if let Some(n) = v.get("vcpus").u64() {
        if n == 0 || n > 64 {
            out.push(err(
                "spec.vm.vcpus",
                format!("{n} is out of range; use 1 to 64"),
            ));
        }
    }
    let mem = v.get("memoryMiB").u64();
    if let Some(m) = mem {
        if !(2..=1024 * 1024).contains(&m) {
            out.push(err(
                "spec.vm.memoryMiB",
                format!("{m} is out of range; use 2 to 1048576 MiB"),
            ));
        }
    }
    disks(v.get("disks"), out);
    let guest = mem.unwrap_or(crate::spec::DEFAULT_VM_MEMORY_MIB);
    if let Some(limit) = s.get("resources").get("memoryMiB").u64() {
        if limit < guest {
            out.push(err(
                "spec.resources.memoryMiB",
                format!(
                    "{limit} is less than the VM's memory ({guest} MiB); raise it or leave it out"
                ),
            ));
        }
    }
}

fn disks(d: At<'_>, out: &mut Vec<FieldError>) {
    let list = d.list();
    if list.len() > 11 {
        out.push(err(
            "spec.vm.disks",
            format!("{} disks; a VM has room for 11", list.len()),
        ));
    }
    let mut roots = 0;
    let mut paths = std::collections::BTreeSet::new();
    for (i, disk) in list.iter().enumerate() {
        let disk = At(Some(disk));
        if let Some(p) = disk.get("path").str() {
            if !p.starts_with('/') {
                out.push(err(
                    format!("spec.vm.disks[{i}].path"),
                    format!("`{p}` must be an absolute path to an image file or block device"),
                ));
            } else if !paths.insert(p) {
                out.push(err(
                    format!("spec.vm.disks[{i}].path"),
                    format!("`{p}` is given twice; a disk is attached once"),
                ));
            }
        }
        if disk.get("root").0.and_then(Value::as_bool) == Some(true) {
            roots += 1;
            if roots == 2 {
                out.push(err(
                    format!("spec.vm.disks[{i}].root"),
                    "a second root disk; mark only one disk as `root`",
                ));
            }
        }
        let rl = disk.get("rateLimit");
        for k in ["bytesPerSec", "opsPerSec"] {
            if rl.get(k).u64() == Some(0) {
                out.push(err(
                    format!("spec.vm.disks[{i}].rateLimit.{k}"),
                    "0 would stop the disk; give at least 1 or leave it out",
                ));
            }
        }
    }
}

fn mock(m: At<'_>, out: &mut Vec<FieldError>) {
    if let Some(code) = m.get("exitCode").i64() {
        if !(0..=255).contains(&code) {
            out.push(err(
                "spec.mock.exitCode",
                format!("{code} is out of range; use 0 to 255"),
            ));
        }
    }
    if m.get("runSeconds")
        .u64()
        .is_some_and(|r| r > 365 * 24 * 3600)
    {
        out.push(err(
            "spec.mock.runSeconds",
            "must be at most a year (31536000); leave it out to run until stopped",
        ));
    }
}

fn resources(r: At<'_>, out: &mut Vec<FieldError>) {
    let dedicated = r.get("cpuPolicy").str() == Some("dedicated");
    let whole_cores = dedicated || r.get("realtime").present();
    if let Some(cpu) = r.get("cpu").str() {
        if whole_cores {
            out.push(err(
                "spec.resources.cpu",
                "is for shared workloads; dedicated and real-time workloads ask for whole \
                 `cores` instead",
            ));
        } else if crate::admission::parse_millicores(cpu).is_none() {
            out.push(err(
                "spec.resources.cpu",
                format!(
                    "`{cpu}` is not a CPU amount; use millicores like \"500m\" or cores like \"2\""
                ),
            ));
        }
    }
    match (r.get("cores").u64(), whole_cores) {
        (Some(0), true) => out.push(err(
            "spec.resources.cores",
            if dedicated {
                "must be at least 1 when cpuPolicy is dedicated"
            } else {
                "must be at least 1 for a real-time workload"
            },
        )),
        (Some(n), true) if n > 1024 => out.push(err(
            "spec.resources.cores",
            format!("{n} is out of range; use 1 to 1024"),
        )),
        (Some(_), false) => out.push(err(
            "spec.resources.cores",
            "is for dedicated or real-time workloads; set `cpuPolicy: dedicated`, or use \
             `cpu` for a share",
        )),
        _ => {}
    }
    if let Some(p) = r.get("realtime").get("priority").u64() {
        if !(1..=99).contains(&p) {
            out.push(err(
                "spec.resources.realtime.priority",
                format!("{p} is out of range; use 1 to 99"),
            ));
        }
    }
    if r.get("memoryMiB").u64() == Some(0) {
        out.push(err(
            "spec.resources.memoryMiB",
            "must be at least 1; leave it out for no limit",
        ));
    }
}
