//! Fleet-wide operations and figures: `POST /v1/audit` (the fleet sync audit) and
//! `GET /metrics` (Prometheus text).

use super::{query_pairs, Answered, ApiError, Param, S};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use roost_federation::central::{AuditResult, MAX_AUDIT_WAIT};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long an audit waits for the hosts when the request does not say.
const DEFAULT_AUDIT_WAIT: Duration = Duration::from_secs(30);

/// The query of `POST /v1/audit`.
pub const AUDIT_PARAMS: &[Param] = &[Param {
    name: "wait",
    kind: "string",
    enumeration: &[],
    description: "How long to wait for the hosts' answers, e.g. `30s` (1s to 600s; default 30s)",
}];

pub async fn audit(
    State(st): S,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Answered<AuditResult> {
    let mut wait = DEFAULT_AUDIT_WAIT;
    for (_, v) in query_pairs(q, AUDIT_PARAMS)? {
        wait = roost_host::daemon::parse_duration(&v)
            .filter(|d| *d >= Duration::from_secs(1) && *d <= MAX_AUDIT_WAIT)
            .ok_or_else(|| {
                ApiError::field(
                    "wait",
                    format!("`{v}`: give a duration from 1s to 600s, e.g. `30s`"),
                )
            })?;
    }
    Ok(Json(st.central.audit(wait).await))
}

pub async fn metrics(State(st): S) -> Response {
    let s = st.central.status();
    let c = &st.central.counters;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, rows: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    gauge(
        "central_hosts",
        "Enrolled hosts (not revoked) by link state.",
        &[
            ("{state=\"online\"}", u64::from(s.hosts_online)),
            ("{state=\"offline\"}", u64::from(s.hosts_offline)),
        ],
    );
    gauge(
        "central_subclouds",
        "Subclouds.",
        &[("", u64::from(s.subclouds))],
    );
    gauge("central_groups", "Groups.", &[("", u64::from(s.groups))]);
    gauge(
        "central_link_sessions_open",
        "Host link sessions open now.",
        &[("", st.central.sessions_open() as u64)],
    );
    gauge(
        "central_tasks_alive",
        "Tasks alive in central's runtime (a leak shows as growth).",
        &[(
            "",
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks() as u64,
        )],
    );
    gauge(
        "central_deployments",
        "Deployments (set x target).",
        &[("", u64::from(s.deployments))],
    );
    gauge(
        "central_alarms_active",
        "Active alarms by severity.",
        &[
            ("{severity=\"critical\"}", u64::from(s.alarms.critical)),
            ("{severity=\"major\"}", u64::from(s.alarms.major)),
            ("{severity=\"minor\"}", u64::from(s.alarms.minor)),
            ("{severity=\"warning\"}", u64::from(s.alarms.warning)),
        ],
    );
    gauge(
        "central_audit_last_ms",
        "Wall time of the last fleet sync audit (ms).",
        &[("", c.audit_last_ms.load(Ordering::Relaxed))],
    );
    let (buckets, sum) = c.heartbeat_lag.snapshot();
    let name = "central_heartbeat_lag_ms";
    let _ = writeln!(
        out,
        "# HELP {name} From a host's heartbeat send time to central's status update (ms; \
         hosts' clocks against central's).\n# TYPE {name} histogram"
    );
    for (le, n) in &buckets {
        let le = le.map_or_else(|| "+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let total = buckets.last().map_or(0, |b| b.1);
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    for (name, help, v) in [
        (
            "central_link_sessions_total",
            "Host link sessions opened.",
            &c.sessions,
        ),
        (
            "central_link_refused_total",
            "Host link connections refused.",
            &c.refused,
        ),
        (
            "central_heartbeats_total",
            "Heartbeats received.",
            &c.heartbeats,
        ),
        (
            "central_pushes_total",
            "Desired states pushed to hosts.",
            &c.pushes,
        ),
        ("central_store_commits_total", "Store commits.", &c.commits),
        ("central_audits_total", "Fleet sync audits run.", &c.audits),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
