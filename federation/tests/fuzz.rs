//! Nothing a host sends on the link, and nothing an operator sends as a workload set,
//! panics central: random and mutated messages straight into the core.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use roost_federation::central::{Central, CentralConfig, NameOnlyCheck};
use roost_federation::link::proto::{self, host_message::Body};
use roost_federation::model::{SetMetadata, SetSpec, Target, WorkloadSet};
use roost_federation::pki::{CentralPki, HostIdentity};
use roost_federation::store::SqliteStore;
use roost_federation::strategy::StrategyRequest;
use std::sync::Arc;
use std::time::Duration;

struct Env {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    central: Arc<Central>,
    session: u64,
    _rx: tokio::sync::mpsc::Receiver<proto::CentralMessage>,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (central, session, rx) = rt.block_on(async {
        let (pki, _) = CentralPki::load_or_create(&dir.path().join("c"), &[]).unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("c/central.db"))
                .await
                .unwrap(),
        );
        let c = Central::open(
            CentralConfig::default(),
            store,
            Arc::new(pki),
            Arc::new(NameOnlyCheck),
        )
        .await
        .unwrap();
        c.add_subcloud("s1", None).await.unwrap();
        let t = c.create_token("s1", Duration::from_secs(60)).await.unwrap();
        let hd = dir.path().join("h1");
        let csr = HostIdentity::new_csr(&hd, "h1").unwrap();
        let parts: Vec<&str> = t.token.split('.').collect();
        c.enroll(parts[1], parts[2], "h1", &csr).await.unwrap();
        let hello = proto::Hello {
            host: "h1".into(),
            heartbeat_ms: 1000,
            ..Default::default()
        };
        let (s, rx) = c.connect("h1", &hello, None).await.unwrap();
        (c, s, rx)
    });
    Env {
        _dir: dir,
        rt,
        central,
        session,
        _rx: rx,
    }
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        Just(String::new()),
        Just("host/h1/workload/w".to_string()),
        Just("x".repeat(5000)),
        "[a-z.]{1,20}",
    ]
}

fn any_body() -> impl Strategy<Value = Option<Body>> {
    let alarm = (
        any_string(),
        any_string(),
        any_string(),
        any_string(),
        any::<u64>(),
    )
        .prop_map(
            |(code, severity, entity, reason, raised_ms)| proto::AlarmState {
                code,
                severity,
                entity,
                reason,
                raised_ms,
            },
        );
    let wl = (
        any_string(),
        any_string(),
        any::<u32>(),
        any_string(),
        any_string(),
        any::<u64>(),
    )
        .prop_map(|(name, phase, restarts, spec_digest, set, instance)| {
            let cpus = spec_digest.chars().rev().take(8).collect();
            let placement = name.chars().take(8).collect();
            proto::WorkloadReport {
                name,
                phase,
                restarts,
                spec_digest,
                set,
                instance,
                cpus,
                placement,
            }
        });
    let core = (
        any::<u32>(),
        any_string(),
        proptest::collection::vec(any_string(), 0..4),
    )
        .prop_map(|(cpu, role, workloads)| proto::CpuCore {
            cpu,
            role,
            workloads,
        });
    prop_oneof![
        Just(None),
        (any::<u64>(), any::<u64>(), any::<u64>(), any_string()).prop_map(
            |(seq, sent_ms, p99_ns, placement)| Some(Body::Heartbeat(proto::Heartbeat {
                seq,
                sent_ms,
                latency: (seq % 2 == 0).then_some(proto::LatencySample {
                    time_ms: sent_ms,
                    p99_ns,
                    placement,
                    ..Default::default()
                }),
            }))
        ),
        (
            proptest::collection::vec(wl, 0..20),
            any_string(),
            any::<u32>(),
            any::<u64>(),
            proptest::collection::vec(core, 0..8)
        )
            .prop_map(
                |(workloads, applied_digest, local_workloads, audit_id, cores)| Some(Body::Report(
                    proto::Report {
                        workloads,
                        applied_digest,
                        local_workloads,
                        audit_id,
                        cpu: (!cores.is_empty()).then_some(proto::CpuPartition {
                            cores,
                            ..Default::default()
                        }),
                    }
                ))
            ),
        (any::<u64>(), any_string(), any_string()).prop_map(|(id, text, error)| Some(Body::Log(
            proto::LogReply {
                id,
                text,
                error,
                ..Default::default()
            }
        ))),
        proptest::collection::vec(alarm, 0..20)
            .prop_map(|active| Some(Body::Alarms(proto::Alarms { active }))),
        any_string().prop_map(|csr_pem| Some(Body::Renew(proto::RenewRequest { csr_pem }))),
        (any_string(), any_string()).prop_map(|(workload, error)| Some(Body::Applied(
            proto::Applied {
                digest: String::new(),
                errors: vec![proto::ApplyError { workload, error }]
            }
        ))),
        (any_string(), any::<u64>()).prop_map(|(host, heartbeat_ms)| Some(Body::Hello(
            proto::Hello {
                host,
                heartbeat_ms,
                ..Default::default()
            }
        ))),
    ]
}

/// One step of the strategy fuzz: a host message, or an operator verb.
#[derive(Debug, Clone)]
enum Op {
    Host(Option<Body>),
    Verb(u8),
}

fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any_string().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    any_string(),
                    Just("metadata".to_string()),
                    Just("name".to_string())
                ],
                inner,
                0..4
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn link_messages_never_panic_central(msgs in proptest::collection::vec((any::<u32>(), any_body()), 1..8)) {
        let e = env();
        e.rt.block_on(async {
            for (protocol, body) in msgs {
                e.central.on_message("h1", e.session, proto::HostMessage { protocol, body }).await;
                // An unknown host and a stale session too.
                e.central.on_message("nobody", e.session, proto::HostMessage { protocol, body: None }).await;
            }
        });
        let s = e.central.status();
        prop_assert_eq!(s.hosts, 1);
        prop_assert!(e.central.host("h1").is_ok());
    }

    #[test]
    fn strategies_survive_random_hosts_and_verbs(
        ops in proptest::collection::vec(prop_oneof![
            any_body().prop_map(Op::Host),
            (0u8..4).prop_map(Op::Verb),
        ], 1..24),
        window in 1u32..4,
        canary in 0u32..3,
    ) {
        let e = env();
        e.rt.block_on(async {
            for s in ["s2", "s3", "s4"] {
                e.central.add_subcloud(s, None).await.unwrap();
            }
            let req: StrategyRequest = serde_json::from_value(serde_json::json!({
                "name": "r", "group": "default", "maxParallel": window, "canary": canary,
                "maxFailures": "1",
                "set": {"apiVersion": "roost.dev/v1", "kind": "WorkloadSet",
                        "metadata": {"name": "web"},
                        "spec": {"workloads": [{"metadata": {"name": "w"}}]}}
            })).unwrap();
            e.central.create_strategy(req).await.unwrap();
            e.central.apply_strategy("r").await.unwrap();
            for op in ops {
                match op {
                    Op::Host(body) => {
                        e.central.on_message("h1", e.session, proto::HostMessage { protocol: 1, body }).await;
                    }
                    Op::Verb(0) => drop(e.central.abort_strategy("r").await),
                    Op::Verb(1) => drop(e.central.approve_strategy("r").await),
                    Op::Verb(2) => drop(e.central.rm_strategy("r").await),
                    Op::Verb(_) => {}
                }
                e.central.rollout_pass().await;
                if let Ok(v) = e.central.strategy("r") {
                    let p = &v.progress;
                    assert_eq!(p.total, 4);
                    assert_eq!(p.pending + p.applying + p.complete + p.failed + p.skipped + p.rolled_back, 4);
                    assert!(p.applying <= window as usize, "{v:?}");
                    if v.strategy.state.is_final() {
                        assert_eq!(p.applying, 0, "{v:?}");
                    }
                }
            }
        });
        prop_assert_eq!(e.central.status().subclouds, 4);
    }

    #[test]
    fn workload_sets_never_panic_central(name in any_string(), workloads in proptest::collection::vec(any_json(), 0..5), target in any_string()) {
        let e = env();
        let set = WorkloadSet {
            api_version: "roost.dev/v1".into(),
            kind: "WorkloadSet".into(),
            metadata: SetMetadata { name },
            spec: SetSpec { workloads },
        };
        e.rt.block_on(async {
            let t: Result<Target, _> = target.parse();
            let t = t.unwrap_or(Target::Subcloud("s1".into()));
            let _ = e.central.deploy(set, t.clone()).await;
            let _ = e.central.undeploy("x", t).await;
        });
        prop_assert_eq!(e.central.status().subclouds, 1);
    }
}
