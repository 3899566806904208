//! Central's side of the host link: enrollment, authentication, sessions, heartbeats,
//! reports, alarms, certificate renewal, the offline watchdog and the reconcile loop.

use super::state::{Session, SyncState};
use super::{Central, CentralError};
use crate::link::proto::{self, central_message::Body as Out};
use crate::link::PROTOCOL;
use crate::model::{check_name, now_ms, Alarm, Host, Severity, TokenUse};
use crate::pki::{constant_time_eq, peer_identity, sha256_hex};
use crate::store::Change;
use std::collections::HashSet;
use std::sync::atomic::Ordering;

/// The code of the alarm central raises for a silent host.
pub const HOST_OFFLINE: &str = "host.offline";
/// The most alarms one host may hold active.
pub const MAX_HOST_ALARMS: usize = 1_000;
/// Messages queued to one host before its session is cut (it reconnects and gets a
/// fresh desired state).
const SESSION_QUEUE: usize = 64;

fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn fmt_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (d, r) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970 (Howard Hinnant's algorithm).
    let z = d as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        r / 3600,
        (r / 60) % 60,
        r % 60
    )
}

/// Add the clearing of `host`'s active `host.offline` alarm, if any, to `b`.
fn clear_offline_in(b: &mut super::Batch<'_>, host: &str) {
    let key = (
        host.to_string(),
        HOST_OFFLINE.to_string(),
        format!("host/{host}"),
    );
    if let Some(a) = b.st.active.get(&key).and_then(|id| b.st.alarms.get(id)) {
        let mut a = a.clone();
        a.cleared_ms = Some(now_ms());
        b.event(
            "alarm-cleared",
            a.entity.clone(),
            format!("{} {}", a.code, a.id),
        );
        b.push(Change::PutAlarm(a));
    }
}

impl Central {
    /// Enroll a host with a one-time join token and a CSR for a key it made itself.
    /// Returns (certificate PEM, CA PEM, subcloud). A wrong, reused or expired token is
    /// refused, naming which, and creates nothing.
    pub async fn enroll(
        &self,
        token_id: &str,
        token_secret: &str,
        host: &str,
        csr_pem: &str,
    ) -> Result<(String, String, String), CentralError> {
        check_name(host).map_err(|e| {
            CentralError::field("host", format!("{e} (give the host a valid --name)"))
        })?;
        let now = now_ms();
        // Check the token before signing anything.
        let subcloud = {
            let st = self.lock();
            let Some(t) = st.tokens.get(token_id) else {
                return Err(CentralError::Refused(
                    "the join token is wrong: central has no token with its id; create one with `roost central token create --subcloud NAME`".into(),
                ));
            };
            if !constant_time_eq(
                sha256_hex(token_secret.as_bytes()).as_bytes(),
                t.secret_sha256.as_bytes(),
            ) {
                return Err(CentralError::Refused(format!(
                    "the join token is wrong: its secret does not match token {token_id}; copy the whole token printed by `roost central token create`"
                )));
            }
            if let Some(u) = &t.used {
                return Err(CentralError::Refused(format!(
                    "the join token {token_id} was already used, by host `{}` at {}; a token joins one host: create a new one",
                    u.host,
                    fmt_time(u.at_ms)
                )));
            }
            if now >= t.expires_ms {
                return Err(CentralError::Refused(format!(
                    "the join token {token_id} expired at {}; create a new one (`--ttl` sets its lifetime)",
                    fmt_time(t.expires_ms)
                )));
            }
            if let Some(h) = st.hosts.get(host).filter(|h| !h.revoked) {
                return Err(CentralError::Conflict(format!(
                    "host `{host}` is already enrolled (subcloud {}); give this host another --name, or `roost central host revoke {host}` first",
                    h.subcloud
                )));
            }
            t.subcloud.clone()
        };
        let signed = self
            .pki
            .sign_host_csr(csr_pem, host, self.cfg.host_cert_ttl)
            .map_err(|e| CentralError::field("csr", e.to_string()))?;
        self.write(|b| {
            // Checked again under the write lock: two enrollments with one token race.
            let Some(t) = b.st.tokens.get(token_id) else {
                return Err(CentralError::Refused("the join token is wrong".into()));
            };
            if let Some(u) = &t.used {
                return Err(CentralError::Refused(format!(
                    "the join token {token_id} was already used, by host `{}`; create a new one",
                    u.host
                )));
            }
            if b.st.hosts.get(host).is_some_and(|h| !h.revoked) {
                return Err(CentralError::Conflict(format!("host `{host}` is already enrolled")));
            }
            if !b.st.subclouds.contains_key(&subcloud) {
                return Err(CentralError::Conflict(format!(
                    "the token's subcloud `{subcloud}` was removed; create a token for another subcloud"
                )));
            }
            let mut t = t.clone();
            t.used = Some(TokenUse {
                at_ms: now,
                host: host.into(),
            });
            b.push(Change::PutToken(t));
            b.push(Change::PutHost(Host {
                name: host.into(),
                subcloud: subcloud.clone(),
                cert_serial: signed.serial_hex.clone(),
                prev_cert_serial: None,
                cert_not_after_ms: signed.not_after_ms,
                enrolled_ms: now,
                revoked: false,
                heartbeat_ms: self.cfg.default_heartbeat.as_millis() as u64,
            }));
            b.event("host-enrolled", format!("host/{host}"), format!("in subcloud {subcloud}"));
            Ok(())
        })
        .await?;
        Ok((signed.cert_pem, self.pki.ca_pem().to_string(), subcloud))
    }

    /// Who a link client is: its certificate must be central's, for an enrolled host
    /// that is not revoked, and the host's current (or just renewed) certificate.
    pub fn authenticate(&self, cert_der: Option<&[u8]>) -> Result<String, CentralError> {
        let refuse = |m: String| {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            Err(CentralError::Refused(m))
        };
        let Some(der) = cert_der else {
            return refuse(
                "the host link needs a client certificate signed by central's CA; enroll with `roost host --join URL --join-token TOKEN`".into(),
            );
        };
        let id = match peer_identity(der) {
            Ok(i) => i,
            Err(e) => return refuse(format!("the client certificate is unreadable: {e}")),
        };
        let st = self.lock();
        let Some(h) = st.hosts.get(&id.cn) else {
            return refuse(format!(
                "host `{}` is not enrolled; enroll it with a join token",
                id.cn
            ));
        };
        if h.revoked {
            return refuse(format!(
                "host `{}` was revoked; enroll it again with a new join token",
                id.cn
            ));
        }
        if id.serial_hex != h.cert_serial && h.prev_cert_serial.as_deref() != Some(&id.serial_hex) {
            return refuse(format!(
                "certificate {} is not host `{}`'s current certificate; enroll again",
                id.serial_hex, id.cn
            ));
        }
        Ok(id.cn)
    }

    /// A host said Hello: open its session (replacing an older one), mark it online,
    /// clear its offline alarm, and send Welcome and (when managed) its desired state.
    pub async fn connect(
        &self,
        host: &str,
        hello: &proto::Hello,
        addr: Option<std::net::SocketAddr>,
    ) -> Result<(u64, tokio::sync::mpsc::Receiver<proto::CentralMessage>), CentralError> {
        let hb = hello.heartbeat_ms.clamp(100, 600_000);
        let (tx, rx) = tokio::sync::mpsc::channel(SESSION_QUEUE);
        let id = {
            let mut st = self.lock();
            st.next_session += 1;
            let id = st.next_session;
            let l = st.live.entry(host.to_string()).or_default();
            l.session = Some(Session { id, tx });
            l.online = true;
            l.last_seen_ms = now_ms();
            l.connected_ms = l.last_seen_ms;
            l.roost_version = clip(&hello.roost_version, 64);
            l.addr = addr;
            l.report = None;
            l.sync = None;
            l.pending_logs.clear();
            id
        };
        self.counters.sessions.fetch_add(1, Ordering::Relaxed);
        self.write(|b| {
            if let Some(h) = b.st.hosts.get(host) {
                if h.heartbeat_ms != hb {
                    let mut h = h.clone();
                    h.heartbeat_ms = hb;
                    b.push(Change::PutHost(h));
                }
            }
            clear_offline_in(b, host);
            b.event(
                "host-online",
                format!("host/{host}"),
                addr.map(|a| a.to_string()).unwrap_or_default(),
            );
            Ok(())
        })
        .await?;
        self.rollout_wake.notify_one();
        let (welcome, managed) = {
            let st = self.lock();
            let sc = st
                .hosts
                .get(host)
                .map(|h| h.subcloud.clone())
                .unwrap_or_default();
            (
                proto::Welcome {
                    subcloud: sc,
                    managed: st.managed(host),
                    min_protocol: crate::link::MIN_PROTOCOL,
                    replicas: self.replicas(),
                },
                st.managed(host),
            )
        };
        self.send(host, Out::Welcome(welcome));
        if managed {
            self.push_host(host, false);
        }
        Ok((id, rx))
    }

    pub(crate) fn send(&self, host: &str, body: Out) -> bool {
        let mut st = self.lock();
        let Some(l) = st.live.get_mut(host) else {
            return false;
        };
        let Some(s) = &l.session else {
            return false;
        };
        let msg = proto::CentralMessage {
            protocol: PROTOCOL,
            body: Some(body),
        };
        if s.tx.try_send(msg).is_err() {
            // Too far behind (or gone): cut it; it reconnects and gets a fresh state.
            tracing::warn!(host, "link queue full or closed; cutting the session");
            l.session = None;
            return false;
        }
        true
    }

    /// Push a host's desired state if it is managed and connected.
    pub(crate) fn push_host(&self, host: &str, force: bool) -> bool {
        let msg = {
            let mut st = self.lock();
            if !st.managed(host) {
                return false;
            }
            let m = st.desired_message(host, force);
            match st.live.get_mut(host) {
                Some(l) if l.session.is_some() => l.last_push_ms = now_ms(),
                _ => return false,
            }
            m
        };
        self.counters.pushes.fetch_add(1, Ordering::Relaxed);
        self.send(host, Out::Desired(msg))
    }

    /// Push to every connected host of a subcloud; returns the hosts reached.
    pub(crate) fn push_subcloud(&self, subcloud: &str, force: bool) -> Vec<String> {
        let hosts: Vec<String> = {
            let st = self.lock();
            st.subcloud_hosts(subcloud)
                .filter(|h| !h.revoked)
                .map(|h| h.name.clone())
                .collect()
        };
        hosts
            .into_iter()
            .filter(|h| self.push_host(h, force))
            .collect()
    }

    /// A message from a host on session `session`.
    pub async fn on_message(&self, host: &str, session: u64, msg: proto::HostMessage) {
        use proto::host_message::Body;
        {
            let mut st = self.lock();
            match st.live.get_mut(host) {
                Some(l) if l.session.as_ref().is_some_and(|s| s.id == session) => {
                    l.last_seen_ms = now_ms();
                    l.online = true;
                }
                // A superseded session: ignore what it still sends.
                _ => return,
            }
        }
        match msg.body {
            Some(Body::Heartbeat(hb)) => {
                self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                // The host's clock against ours: meaningful where they agree (NTP).
                if hb.sent_ms > 0 {
                    self.counters
                        .heartbeat_lag
                        .observe(now_ms().saturating_sub(hb.sent_ms));
                }
                if let Some(l) = hb.latency {
                    self.on_latency(host, l);
                }
                self.send(host, Out::Ack(proto::HeartbeatAck { seq: hb.seq }));
            }
            Some(Body::Report(r)) => {
                let audit = r.audit_id;
                self.on_report(host, r).await;
                if audit != 0 {
                    self.audit_answered(host, audit);
                }
                self.rollout_wake.notify_one();
            }
            Some(Body::Alarms(a)) => {
                self.on_alarms(host, a.active).await;
                self.rollout_wake.notify_one();
            }
            Some(Body::Applied(a)) => {
                let mut st = self.lock();
                if let Some(l) = st.live.get_mut(host) {
                    l.apply_errors = a.errors.into_iter().take(100).collect();
                    l.applied_digest = clip(&a.digest, 128);
                }
            }
            Some(Body::Renew(r)) => self.on_renew(host, &r.csr_pem).await,
            Some(Body::Log(r)) => self.on_log_reply(host, r),
            // A second Hello, or a body from a newer protocol: nothing to do.
            Some(Body::Hello(_)) | None => {}
        }
    }

    async fn on_report(&self, host: &str, mut r: proto::Report) {
        r.workloads.truncate(10_000);
        let change = {
            let mut st = self.lock();
            if let Some(l) = st.live.get_mut(host) {
                l.report = Some(r);
            }
            let (state, missing, extra, differ) = st.sync_of(host);
            let l = st.live.entry(host.to_string()).or_default();
            if l.sync == Some(state) {
                None
            } else {
                l.sync = Some(state);
                let mut detail = Vec::new();
                for (what, v) in [
                    ("missing", &missing),
                    ("extra", &extra),
                    ("differ", &differ),
                ] {
                    if !v.is_empty() {
                        detail.push(format!("{what}: {}", v.join(", ")));
                    }
                }
                Some((state, detail.join("; ")))
            }
        };
        if let Some((state, detail)) = change {
            let msg = if detail.is_empty() {
                state.as_str().to_string()
            } else {
                format!("{} ({detail})", state.as_str())
            };
            // Group commit: whoever takes the writer next records every sync change
            // queued by then in one transaction (a fleet-wide deploy changes the sync
            // of every host within a second; one fsync each would take ten seconds at
            // 10,000 hosts). The others find the queue empty and commit nothing.
            self.pending_sync_lock()
                .push((format!("host/{host}"), clip(&msg, 2000)));
            if let Err(e) = self
                .write(|b| {
                    for (subject, msg) in std::mem::take(&mut *self.pending_sync_lock()) {
                        b.event("sync-changed", subject, msg);
                    }
                    Ok(())
                })
                .await
            {
                tracing::warn!(host, error = %e, "cannot record sync changes");
            }
        }
    }

    async fn on_alarms(&self, host: &str, active: Vec<proto::AlarmState>) {
        let res = self
            .write(|b| {
                let Some(h) = b.st.hosts.get(host) else {
                    return Ok(());
                };
                let subcloud = h.subcloud.clone();
                let now = now_ms();
                let mut want = HashSet::new();
                let mut raise = Vec::new();
                for a in active.into_iter().take(MAX_HOST_ALARMS) {
                    let code = clip(&a.code, 128);
                    let entity = clip(&a.entity, 256);
                    if code == HOST_OFFLINE || code.is_empty() {
                        continue;
                    }
                    if !want.insert((code.clone(), entity.clone())) {
                        continue;
                    }
                    let key = (host.to_string(), code.clone(), entity.clone());
                    if !b.st.active.contains_key(&key) {
                        raise.push((code, entity, a));
                    }
                }
                let clear: Vec<Alarm> = b
                    .st
                    .active
                    .iter()
                    .filter(|((h, c, e), _)| {
                        h == host && c != HOST_OFFLINE && !want.contains(&(c.clone(), e.clone()))
                    })
                    .filter_map(|(_, id)| b.st.alarms.get(id).cloned())
                    .collect();
                for mut a in clear {
                    a.cleared_ms = Some(now);
                    b.event(
                        "alarm-cleared",
                        a.entity.clone(),
                        format!("{} {}", a.code, a.id),
                    );
                    b.push(Change::PutAlarm(a));
                }
                for (code, entity, a) in raise {
                    let severity: Severity = a.severity.parse().unwrap_or(Severity::Warning);
                    let reason = clip(&a.reason, 1000);
                    let seq = b.event(
                        "alarm-raised",
                        entity.clone(),
                        format!("{code} {}: {reason}", severity.as_str()),
                    );
                    b.push(Change::PutAlarm(Alarm {
                        id: format!("a{seq}"),
                        code,
                        severity,
                        entity,
                        host: host.into(),
                        subcloud: subcloud.clone(),
                        reason,
                        raised_ms: if a.raised_ms > 0 && a.raised_ms <= now {
                            a.raised_ms
                        } else {
                            now
                        },
                        cleared_ms: None,
                    }));
                }
                Ok(())
            })
            .await;
        if let Err(e) = res {
            tracing::warn!(host, error = %e, "cannot record the host's alarms");
        }
    }

    async fn on_renew(&self, host: &str, csr: &str) {
        let signed = match self.pki.sign_host_csr(csr, host, self.cfg.host_cert_ttl) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(host, error = %e, "refused a renewal CSR");
                return;
            }
        };
        let res = self
            .write(|b| {
                let Some(h) = b.st.hosts.get(host) else {
                    return Err(CentralError::NotFound(host.into()));
                };
                let mut h = h.clone();
                h.prev_cert_serial = Some(std::mem::replace(
                    &mut h.cert_serial,
                    signed.serial_hex.clone(),
                ));
                h.cert_not_after_ms = signed.not_after_ms;
                b.push(Change::PutHost(h));
                b.event(
                    "host-renewed",
                    format!("host/{host}"),
                    format!("certificate {}", signed.serial_hex),
                );
                Ok(())
            })
            .await;
        match res {
            Ok(()) => {
                self.send(
                    host,
                    Out::Renewed(proto::Renewed {
                        cert_pem: signed.cert_pem,
                    }),
                );
            }
            Err(e) => tracing::warn!(host, error = %e, "cannot store a renewed certificate"),
        }
    }

    fn pending_sync_lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, String)>> {
        self.pending_sync
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Host link sessions open now.
    pub fn sessions_open(&self) -> usize {
        self.lock()
            .live
            .values()
            .filter(|l| l.session.is_some())
            .count()
    }

    /// The session of `host` ended (the stream closed).
    pub fn disconnected(&self, host: &str, session: u64) {
        let mut st = self.lock();
        if let Some(l) = st.live.get_mut(host) {
            if l.session.as_ref().is_some_and(|s| s.id == session) {
                l.session = None;
                // Their answers would come on this session: end the waits now.
                l.pending_logs.clear();
            }
        }
        drop(st);
        // It cannot answer an audit in flight any more.
        self.audit_forget(host);
    }

    /// Mark hosts silent for two heartbeat intervals offline, with a critical alarm.
    pub(crate) async fn watchdog(&self) {
        let now = now_ms();
        let silent: Vec<(String, u64)> = {
            let st = self.lock();
            st.hosts
                .values()
                .filter(|h| !h.revoked)
                .filter_map(|h| {
                    let limit = 2 * h.heartbeat_ms.max(100);
                    match st.live.get(&h.name) {
                        Some(l) if l.online => (now.saturating_sub(l.last_seen_ms) > limit)
                            .then(|| (h.name.clone(), l.last_seen_ms)),
                        // Not heard from since central started: offline once it had
                        // two intervals to call, unless its alarm is already up.
                        _ => {
                            let key = (
                                h.name.clone(),
                                HOST_OFFLINE.to_string(),
                                format!("host/{}", h.name),
                            );
                            (now.saturating_sub(self.started_ms) > limit
                                && !st.active.contains_key(&key))
                            .then(|| (h.name.clone(), 0))
                        }
                    }
                })
                .collect()
        };
        if silent.is_empty() {
            return;
        }
        // One commit for every host found silent in this pass (a thousand hosts cut
        // off at once are one transaction, not a thousand).
        let res = self
            .write(|b| {
                let now = now_ms();
                for (host, last) in &silent {
                    let Some(h) = b.st.hosts.get(host) else {
                        continue;
                    };
                    // Heard from meanwhile: keep it.
                    if b.st
                        .live
                        .get(host)
                        .is_some_and(|l| l.online && l.last_seen_ms != *last)
                    {
                        continue;
                    }
                    let entity = format!("host/{host}");
                    let key = (host.clone(), HOST_OFFLINE.to_string(), entity.clone());
                    if b.st.active.contains_key(&key) {
                        continue;
                    }
                    let reason = if *last == 0 {
                        format!(
                            "no heartbeat since central started ({} ms interval)",
                            h.heartbeat_ms
                        )
                    } else {
                        format!(
                            "no heartbeat for {} ms (two {} ms intervals); last seen {}",
                            now.saturating_sub(*last),
                            h.heartbeat_ms,
                            fmt_time(*last)
                        )
                    };
                    let subcloud = h.subcloud.clone();
                    b.event("host-offline", entity.clone(), reason.clone());
                    let seq = b.event(
                        "alarm-raised",
                        entity.clone(),
                        format!("{HOST_OFFLINE} critical: {reason}"),
                    );
                    b.push(Change::PutAlarm(Alarm {
                        id: format!("a{seq}"),
                        code: HOST_OFFLINE.into(),
                        severity: Severity::Critical,
                        entity,
                        host: host.clone(),
                        subcloud,
                        reason,
                        raised_ms: now,
                        cleared_ms: None,
                    }));
                }
                Ok(())
            })
            .await;
        if let Err(e) = res {
            tracing::warn!(hosts = silent.len(), error = %e, "cannot record hosts going offline");
        }
        // Only now, with their alarms committed, are they shown offline: whoever sees
        // one offline sees its alarm too.
        let mut back = Vec::new();
        {
            let mut st = self.lock();
            for (host, last) in &silent {
                let l = st.live.entry(host.clone()).or_default();
                if l.online && l.last_seen_ms != *last {
                    back.push(host.clone());
                } else {
                    l.online = false;
                    l.session = None;
                    l.sync = Some(SyncState::Unknown);
                }
            }
        }
        // A heartbeat landed while the alarms were being committed: take it back.
        for host in back {
            self.clear_offline(&host).await;
        }
    }

    /// Clear a host's `host.offline` alarm, if one is active.
    async fn clear_offline(&self, host: &str) {
        let res = self
            .write(|b| {
                clear_offline_in(b, host);
                Ok(())
            })
            .await;
        if let Err(e) = res {
            tracing::warn!(host, error = %e, "cannot clear a host's offline alarm");
        }
    }

    /// Put back managed hosts that drifted: push their desired state again.
    pub(crate) fn reconcile_all(&self) {
        let now = now_ms();
        let period = self.cfg.reconcile.as_millis() as u64;
        let due: Vec<String> = {
            let st = self.lock();
            st.live
                .iter()
                .filter(|(n, l)| {
                    l.online
                        && l.session.is_some()
                        && now.saturating_sub(l.last_push_ms) >= period
                        && st.managed(n)
                        && st.sync_of(n).0 == SyncState::OutOfSync
                })
                .map(|(n, _)| n.clone())
                .collect()
        };
        for h in due {
            tracing::info!(host = %h, "out of sync: pushing its desired state again");
            self.push_host(&h, true);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_as_utc() {
        assert_eq!(super::fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::fmt_time(1_780_000_000_000), "2026-05-28T20:26:40Z");
    }
}
