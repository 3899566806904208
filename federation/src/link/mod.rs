//! The host link: one long-lived gRPC bidirectional stream per host, dialled by the
//! host (it works behind NAT) over mutual TLS, plus the one call made without a client
//! certificate, `Enroll`, authorised by a join token.
//!
//! - [`proto`]: the generated messages (`proto/link.proto`).
//! - [`server`]: central's side, a tonic service over [`crate::central::Central`].
//! - [`client`]: the host's side: enrollment, the stream, heartbeats, reconnects with
//!   capped jittered backoff, certificate renewal, driving a [`HostRuntime`].
//! - [`runtime`]: the small trait the host daemon implements (and a fleet simulator can
//!   implement in memory).
//! - [`upgrade`]: the optional [`Upgrader`] seam that installs a Roost release central
//!   asks for.

pub mod client;
pub mod runtime;
pub mod server;
pub mod upgrade;

pub use runtime::{
    CpuCore, CpuPartition, HostRuntime, LatencySample, LogError, LogQuery, LogSlice, RuntimeAlarm,
    RuntimeReport, WorkloadState,
};
pub use upgrade::{ReleaseRequest, ReleaseStream, UpgradeOutcome, Upgrader};

/// The generated protocol types.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("roost.link.v1");
}

/// The protocol version this build speaks. 2 added the CPU partition, latency
/// figures and log requests (central sends a `LogRequest` only to a host that said 2).
pub const PROTOCOL: u32 = 2;
/// The oldest protocol version this build still accepts from a peer.
pub const MIN_PROTOCOL: u32 = 1;
/// The first protocol version whose hosts answer `LogRequest`.
pub const LOGS_PROTOCOL: u32 = 2;

/// The label central puts on every workload it owns (value [`OWNER_CENTRAL`]).
pub const OWNER_LABEL: &str = "roost.dev/owner";
/// The owner label's value on central's workloads.
pub const OWNER_CENTRAL: &str = "central";
/// The label naming the set a central workload belongs to.
pub const SET_LABEL: &str = "roost.dev/set";

/// What the TLS front end knows about a connection, inserted into every request's
/// extensions so the link service can authenticate the host.
#[derive(Debug, Clone, Default)]
pub struct LinkPeer {
    /// The client certificate's DER (the leaf), if one was presented and verified
    /// against central's CA by the TLS layer.
    pub client_cert: Option<Vec<u8>>,
    /// The remote address.
    pub addr: Option<std::net::SocketAddr>,
}

/// Resolves once `stop` is true (or its sender is gone).
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Canonical JSON: object keys sorted at every level, no whitespace.
pub fn canonical_json(v: &serde_json::Value) -> String {
    fn write(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String((*k).clone()).to_string());
                    out.push(':');
                    if let Some(x) = m.get(*k) {
                        write(x, out);
                    }
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    write(v, &mut s);
    s
}

/// SHA-256 (hex) of a workload spec's canonical JSON: what host and central compare.
pub fn spec_digest(v: &serde_json::Value) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(canonical_json(v).as_bytes()))
}

/// The digest of a whole desired state: over the workloads' names and digests in name
/// order (`""` for none).
pub fn desired_digest<'a>(items: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    use sha2::Digest;
    let mut v: Vec<(&str, &str)> = items.into_iter().collect();
    if v.is_empty() {
        return String::new();
    }
    v.sort();
    let mut h = sha2::Sha256::new();
    for (n, d) in v {
        h.update(n.as_bytes());
        h.update(b"=");
        h.update(d.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

/// The name of a workload spec (`metadata.name`), if it has one.
pub fn workload_name(v: &serde_json::Value) -> Option<&str> {
    v.get("metadata")?.get("name")?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}"#
        );
        let b: serde_json::Value =
            serde_json::from_str(r#"{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}"#).unwrap();
        assert_eq!(spec_digest(&a), spec_digest(&b));
    }

    #[test]
    fn desired_digest_ignores_order() {
        assert_eq!(
            desired_digest([("a", "1"), ("b", "2")]),
            desired_digest([("b", "2"), ("a", "1")])
        );
        assert_ne!(desired_digest([("a", "1")]), desired_digest([("a", "2")]));
        assert_eq!(desired_digest([]), "");
    }

    /// A message from a newer peer, with a field this version does not know, still
    /// decodes: the known fields come through, the unknown one is skipped.
    #[test]
    fn a_message_with_an_unknown_field_decodes() {
        let hb = proto::HostMessage {
            protocol: PROTOCOL + 1,
            body: Some(proto::host_message::Body::Heartbeat(proto::Heartbeat {
                seq: 7,
                sent_ms: 9,
                latency: None,
            })),
        };
        let mut bytes = hb.encode_to_vec();
        // Field 99 (unknown here), wire type 2 (length-delimited), 3 bytes.
        bytes.extend_from_slice(&[0x9a, 0x06, 3, b'n', b'e', b'w']);
        let back = proto::HostMessage::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, hb);
        // And inside a nested message too.
        let mut inner = proto::Heartbeat {
            seq: 1,
            sent_ms: 2,
            latency: None,
        }
        .encode_to_vec();
        inner.extend_from_slice(&[0x9a, 0x06, 1, b'x']);
        let mut outer = vec![0x08, PROTOCOL as u8, 0x1a, inner.len() as u8];
        outer.extend_from_slice(&inner);
        let back = proto::HostMessage::decode(outer.as_slice()).unwrap();
        assert_eq!(
            back.body,
            Some(proto::host_message::Body::Heartbeat(proto::Heartbeat {
                seq: 1,
                sent_ms: 2,
                latency: None,
            }))
        );
    }
}
