//! Daemon start: re-adopt what still runs (one copy each), and restart what died
//! while the daemon was away.

use super::{describe_exit, lock, wants_restart, Supervisor};
use crate::driver::{Driver, ExitInfo};
use crate::model::{now_ms, Desired, Phase, WorkloadRecord};
use crate::store::WriteOp;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Supervisor {
    /// Daemon start: load every record, re-adopt what still runs (one copy each),
    /// restart what died while the daemon was away, and start the actors.
    pub async fn recover(self: &Arc<Self>, records: Vec<WorkloadRecord>) {
        for mut rec in records {
            let name = rec.name().to_string();
            if let Some(p) = &rec.placement {
                if let Err(r) = lock(&self.admission).restore(&name, p) {
                    tracing::warn!(workload = %name, reason = %r, "allocation not restored");
                }
            }
            if let Ok(driver) = self.driver(rec.workload.spec.driver) {
                self.recover_one(&driver, &mut rec).await;
            } else {
                rec.status.message = Some(format!(
                    "driver `{}` is not available on this host",
                    rec.workload.spec.driver.as_str()
                ));
            }
            self.writer.send(WriteOp::Put(Box::new(rec.clone()), false));
            self.cache(&rec);
            self.spawn_actor(rec);
        }
        self.events
            .emit("", None, "daemon-started", "recovery finished".into());
    }

    async fn recover_one(&self, driver: &Arc<dyn Driver>, rec: &mut WorkloadRecord) {
        let name = rec.name().to_string();
        let known = rec.status.handle.clone();
        let mut alive = match driver.recover(&name, known.as_ref()).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(workload = %name, error = %e, "recover failed");
                Vec::new()
            }
        };
        alive.sort_by_key(|h| h.id.instance);
        if let Some(keep) = alive.pop() {
            // Never two copies: keep the newest, remove the rest.
            for extra in alive {
                self.counters
                    .duplicates_removed
                    .fetch_add(1, Ordering::Relaxed);
                self.events.emit(
                    &name,
                    Some(extra.id.instance),
                    "duplicate-removed",
                    "an older copy was still running; removed it".into(),
                );
                let _ = driver.destroy(&extra).await;
            }
            self.counters.adopted.fetch_add(1, Ordering::Relaxed);
            rec.status.instance = rec.status.instance.max(keep.id.instance);
            let inst = keep.id.instance;
            rec.status.handle = Some(keep);
            rec.status.phase = Phase::Running;
            rec.status.started_at_ms.get_or_insert(now_ms());
            self.events.emit(
                &name,
                Some(inst),
                "adopted",
                "still running after a daemon restart; re-attached".into(),
            );
            return;
        }
        if let Some(h) = known {
            // It ended while nobody watched.
            let info = match driver.inspect(&h).await {
                Ok(crate::driver::TaskState::Exited(i)) => i,
                _ => ExitInfo::lost("ended while the daemon was not running"),
            };
            let _ = driver.destroy(&h).await;
            rec.status.handle = None;
            rec.status.finished_at_ms = Some(now_ms());
            self.events.emit(
                &name,
                Some(h.id.instance),
                "exited",
                format!("ended while the daemon was away ({})", describe_exit(&info)),
            );
            let restart = wants_restart(rec.workload.spec.restart_policy, &info);
            rec.status.last_exit = Some(info.clone());
            if rec.desired == Desired::Running && restart {
                // Come back at once: this is the offline-reboot case.
                rec.status.phase = Phase::Backoff;
                rec.status.next_restart_at_ms = Some(now_ms());
                rec.status.message = Some("restarting after a daemon restart".into());
            } else if rec.desired != Desired::Running {
                rec.status.phase = Phase::Stopped;
            } else {
                rec.status.phase = if info.success() {
                    Phase::Exited
                } else {
                    Phase::Failed
                };
            }
        } else if matches!(rec.status.phase, Phase::Starting | Phase::Running) {
            rec.status.phase = Phase::Pending;
        }
    }
}
