//! The central controller's data model: groups contain subclouds, subclouds contain
//! hosts; workload sets are deployed to targets; hosts raise alarms. These types are
//! stored (as JSON bodies) and are the API's bodies.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The group every subcloud belongs to unless told otherwise.
pub const DEFAULT_GROUP: &str = "default";

/// A group of subclouds (a rollout and deployment scope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// DNS-label style name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Unix ms.
    pub created_ms: u64,
}

/// A site: a set of hosts managed together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subcloud {
    /// DNS-label style name.
    pub name: String,
    /// The group it belongs to.
    pub group: String,
    /// Managed: central pushes desired state; unmanaged: status only.
    pub managed: bool,
    /// Labels (strategies select subclouds by them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The Roost release its hosts should run (None: whatever they run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Unix ms.
    pub created_ms: u64,
}

/// A Roost binary central serves to hosts (`roost central release add`), stored as
/// `<data-dir>/releases/<sha256>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// The version hosts report once they run it (`[0-9A-Za-z.+-]`, at most 64).
    pub version: String,
    /// SHA-256 (hex) of the binary: what hosts verify before swapping.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Unix ms.
    pub added_ms: u64,
}

/// The longest release version.
pub const MAX_VERSION_LEN: usize = 64;

/// Check a release version: 1-64 of `0-9 A-Z a-z . + -`.
pub fn check_version(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("empty: give the version hosts will report, e.g. `0.2.0`".into());
    }
    if v.len() > MAX_VERSION_LEN {
        return Err(format!(
            "{} characters: a version has at most {MAX_VERSION_LEN}",
            v.len()
        ));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-')))
    {
        return Err(format!(
            "`{v}` holds {c:?}: use only 0-9, A-Z, a-z, `.`, `+` and `-` (e.g. `0.2.0+build1`)"
        ));
    }
    Ok(())
}

/// An enrolled host, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    /// The host's name (its certificate's CN).
    pub name: String,
    /// Its subcloud.
    pub subcloud: String,
    /// Serial (hex) of its current client certificate.
    pub cert_serial: String,
    /// Serial of the certificate it had before the last renewal (still accepted until
    /// the host uses the new one), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_cert_serial: Option<String>,
    /// When the current certificate expires (Unix ms).
    pub cert_not_after_ms: u64,
    /// When it enrolled (Unix ms).
    pub enrolled_ms: u64,
    /// Revoked hosts are refused on the link.
    #[serde(default)]
    pub revoked: bool,
    /// The heartbeat interval it last announced (ms); central marks it offline after two
    /// missed intervals.
    pub heartbeat_ms: u64,
}

/// A one-time join token, as stored (the secret only as its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JoinToken {
    /// Public id (the first part of the token).
    pub id: String,
    /// SHA-256 (hex) of the secret part.
    pub secret_sha256: String,
    /// The subcloud a host joining with it lands in.
    pub subcloud: String,
    /// Unix ms.
    pub created_ms: u64,
    /// Unix ms.
    pub expires_ms: u64,
    /// When it was used, and by which host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<TokenUse>,
}

/// The one use of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenUse {
    /// Unix ms.
    pub at_ms: u64,
    /// The host that joined with it.
    pub host: String,
}

/// Where a workload set is deployed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Target {
    /// Every host of every subcloud of the group.
    Group(String),
    /// Every host of the subcloud.
    Subcloud(String),
    /// One host.
    Host(String),
}

impl schemars::JsonSchema for Target {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Target".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(group|subcloud|host)/[a-z][a-z0-9-]{0,62}$",
            "description": "`group/NAME`, `subcloud/NAME` or `host/NAME`"
        })
    }
}

impl Target {
    /// `group`, `subcloud` or `host`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Group(_) => "group",
            Self::Subcloud(_) => "subcloud",
            Self::Host(_) => "host",
        }
    }
    /// The name after the slash.
    pub fn name(&self) -> &str {
        match self {
            Self::Group(n) | Self::Subcloud(n) | Self::Host(n) => n,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind(), self.name())
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let Some((kind, name)) = s.split_once('/') else {
            return Err(format!(
                "target `{s}` must be `group/NAME`, `subcloud/NAME` or `host/NAME`"
            ));
        };
        if let Err(e) = check_name(name) {
            return Err(format!("target `{s}`: {e}"));
        }
        match kind {
            "group" => Ok(Self::Group(name.into())),
            "subcloud" => Ok(Self::Subcloud(name.into())),
            "host" => Ok(Self::Host(name.into())),
            _ => Err(format!(
                "target `{s}`: kind `{kind}` is not one of group, subcloud, host"
            )),
        }
    }
}

impl TryFrom<String> for Target {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Target> for String {
    fn from(t: Target) -> String {
        t.to_string()
    }
}

/// A workload set as submitted: `kind: WorkloadSet`, a name and Workload specs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSet {
    /// `roost.dev/v1`.
    pub api_version: String,
    /// `WorkloadSet`.
    pub kind: String,
    /// Its name.
    pub metadata: SetMetadata,
    /// The workloads.
    pub spec: SetSpec,
}

/// A set's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetMetadata {
    /// DNS-label style.
    pub name: String,
}

/// A set's workloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetSpec {
    /// Workload specs exactly as `roost apply` takes them (`kind: Workload`).
    pub workloads: Vec<serde_json::Value>,
}

/// A set deployed to a target, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// The set's name.
    pub set: String,
    /// Where.
    pub target: Target,
    /// Grows on every change of this set at this target.
    pub generation: u64,
    /// The normalised workload specs (as the host serialises them, with central's
    /// ownership labels), in name order.
    pub workloads: Vec<serde_json::Value>,
    /// Unix ms of the last change.
    pub updated_ms: u64,
}

/// Alarm severity, most severe first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Service is lost.
    Critical,
    /// Service is degraded.
    Major,
    /// Needs attention.
    Minor,
    /// For information.
    Warning,
}

impl Severity {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Major => "major",
            Self::Minor => "minor",
            Self::Warning => "warning",
        }
    }
    /// Every severity, most severe first.
    pub const ALL: [Severity; 4] = [Self::Critical, Self::Major, Self::Minor, Self::Warning];
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "critical" => Ok(Self::Critical),
            "major" => Ok(Self::Major),
            "minor" => Ok(Self::Minor),
            "warning" => Ok(Self::Warning),
            _ => Err(format!(
                "severity `{s}` is not one of critical, major, minor, warning"
            )),
        }
    }
}

/// An alarm: raised by a host (or by central for `host.offline`), kept after it
/// clears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alarm {
    /// Unique id.
    pub id: String,
    /// What kind: `host.offline`, `workload.failed`, `workload.restart-loop`,
    /// `admission.refused`, `apply.failed`, …
    pub code: String,
    /// How bad.
    pub severity: Severity,
    /// What it is about: `host/NAME` or `host/NAME/workload/W`.
    pub entity: String,
    /// The host it came from (or is about).
    pub host: String,
    /// That host's subcloud.
    pub subcloud: String,
    /// Why.
    pub reason: String,
    /// Unix ms.
    pub raised_ms: u64,
    /// Unix ms; absent while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_ms: Option<u64>,
}

/// One entry of central's event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Position; resume after it with `?cursor=`.
    pub seq: u64,
    /// Unix ms.
    pub time_ms: u64,
    /// `host-online`, `host-offline`, `host-enrolled`, `host-revoked`, `sync-changed`,
    /// `alarm-raised`, `alarm-cleared`, `deployed`, `undeployed`, `subcloud-added`, …
    pub kind: String,
    /// What it is about (`host/h1`, `subcloud/s1`, `set/web@group/g`…).
    pub subject: String,
    /// Detail.
    pub message: String,
}

/// Check a DNS-label style name: 1–63 of `a-z 0-9 -`, starting with a letter, not
/// ending with `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_lowercase()
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use 1-63 characters of a-z, 0-9 and `-`, starting \
             with a letter and not ending with `-`"
        ))
    }
}

/// Current Unix time in ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print() {
        let t: Target = "group/edge".parse().unwrap();
        assert_eq!(t, Target::Group("edge".into()));
        assert_eq!(t.to_string(), "group/edge");
        assert!("cluster/x"
            .parse::<Target>()
            .unwrap_err()
            .contains("cluster"));
        assert!("group/"
            .parse::<Target>()
            .unwrap_err()
            .contains("not a valid name"));
        assert!("edge".parse::<Target>().unwrap_err().contains("group/NAME"));
    }

    #[test]
    fn versions_are_checked() {
        for ok in ["0.1.0", "0.1.0+t1", "1.2.3-rc.1", &"9".repeat(64)] {
            assert!(check_version(ok).is_ok(), "{ok}");
        }
        assert!(check_version("").unwrap_err().contains("empty"));
        assert!(check_version(&"9".repeat(65)).unwrap_err().contains("65"));
        assert!(check_version("1.0/x").unwrap_err().contains("'/'"));
        assert!(check_version("1 0").unwrap_err().contains("' '"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("site-1").is_ok());
        for bad in ["", "1a", "a-", "A", "a_b", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
