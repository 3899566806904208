//! One actor per workload: reconcile, start, watch, stop, restart, finalize.

use super::{backoff, describe_exit, lock, reconcile, wants_restart, Action, Msg, Supervisor};
use crate::driver::{DriverError, ExitInfo, InstanceId, StartRequest, TaskHandle};
use crate::model::{now_ms, Desired, Phase, WorkloadRecord};
use crate::store::WriteOp;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub(super) struct Actor {
    pub(super) sup: Arc<Supervisor>,
    pub(super) rec: WorkloadRecord,
    pub(super) rx: mpsc::UnboundedReceiver<Msg>,
    pub(super) tx: mpsc::UnboundedSender<Msg>,
    pub(super) replies: Vec<oneshot::Sender<WorkloadRecord>>,
}

impl Actor {
    fn name(&self) -> String {
        self.rec.name().to_string()
    }

    fn save(&mut self, durable: bool) {
        self.sup.cache(&self.rec);
        self.sup
            .writer
            .send(WriteOp::Put(Box::new(self.rec.clone()), durable));
    }

    fn emit(&self, kind: &str, message: String) {
        let inst = (self.rec.status.instance > 0).then_some(self.rec.status.instance);
        self.sup.events.emit(self.rec.name(), inst, kind, message);
    }

    pub(super) async fn run(mut self) {
        if let Some(h) = self.rec.status.handle.clone() {
            self.watch(h);
        }
        loop {
            match reconcile(&self.rec, now_ms()) {
                Action::Start => self.start().await,
                Action::Stop => self.stop().await,
                Action::MarkStopped => {
                    self.rec.status.phase = Phase::Stopped;
                    self.rec.status.next_restart_at_ms = None;
                    self.save(false);
                    self.emit("stopped", "stopped on request".into());
                }
                Action::Finalize => {
                    self.finalize().await;
                    return;
                }
                Action::Wait(until) => {
                    self.flush_replies();
                    let msg = match until {
                        Some(t) => {
                            let d = Duration::from_millis(t.saturating_sub(now_ms()));
                            match tokio::time::timeout(d, self.rx.recv()).await {
                                Ok(m) => m,
                                Err(_) => continue,
                            }
                        }
                        None => self.rx.recv().await,
                    };
                    match msg {
                        Some(m) => self.handle(m).await,
                        None => return,
                    }
                }
            }
        }
    }

    fn flush_replies(&mut self) {
        for r in self.replies.drain(..) {
            let _ = r.send(self.rec.clone());
        }
    }

    async fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Exited { instance, info } => {
                if instance == self.rec.status.instance && self.rec.status.handle.is_some() {
                    self.on_exit(info).await;
                }
            }
            Msg::Desire(d, reply) => {
                self.replies.push(reply);
                if d == self.rec.desired && d != Desired::Running {
                    return;
                }
                match d {
                    Desired::Running => {
                        if matches!(
                            self.rec.status.phase,
                            Phase::Exited | Phase::Failed | Phase::Stopped | Phase::Backoff
                        ) && self.rec.status.handle.is_none()
                        {
                            self.rec.status.phase = Phase::Pending;
                            self.rec.status.consecutive_failures = 0;
                            self.rec.status.next_restart_at_ms = None;
                        }
                    }
                    Desired::Deleted => self.emit("deleting", "removal requested".into()),
                    Desired::Stopped => {}
                }
                self.rec.desired = d;
                self.save(true);
            }
            Msg::Replace(w, placement, reply) => {
                self.replies.push(reply);
                if self.rec.status.handle.is_some() {
                    self.stop().await;
                }
                self.rec.workload = *w;
                self.rec.placement = placement;
                self.rec.generation += 1;
                self.rec.desired = Desired::Running;
                self.rec.status.phase = Phase::Pending;
                self.rec.status.consecutive_failures = 0;
                self.rec.status.next_restart_at_ms = None;
                self.save(true);
                self.emit(
                    "updated",
                    format!("spec changed (generation {})", self.rec.generation),
                );
            }
        }
    }

    fn watch(&self, h: TaskHandle) {
        let Ok(driver) = self.sup.driver(h.driver) else {
            return;
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let instance = h.id.instance;
            let info = match driver.wait(&h).await {
                Ok(i) => i,
                Err(e) => ExitInfo::lost(format!("waiting on it failed: {e}")),
            };
            let _ = tx.send(Msg::Exited { instance, info });
        });
    }

    async fn start(&mut self) {
        let name = self.name();
        let driver = match self.sup.driver(self.rec.workload.spec.driver) {
            Ok(d) => d,
            Err(e) => {
                self.rec.status.phase = Phase::Failed;
                self.rec.status.message = Some(e.to_string());
                self.save(false);
                self.emit("failed", e.to_string());
                return;
            }
        };
        let instance = self.rec.status.instance + 1;
        let was_restart = instance > 1;
        self.rec.status.instance = instance;
        self.rec.status.phase = Phase::Starting;
        self.rec.status.next_restart_at_ms = None;
        self.save(false);
        self.emit("starting", format!("starting instance {instance}"));
        let run_dir = self.sup.run_dir(&name, instance);
        let log_path = self.sup.log_path(&name);
        let result = match self.sup.prepare_log(&name) {
            Ok(()) => {
                let req = StartRequest {
                    id: InstanceId {
                        workload: name.clone(),
                        instance,
                    },
                    spec: self.rec.workload.spec.clone(),
                    placement: self.rec.placement.clone().unwrap_or_default(),
                    log_path,
                    run_dir,
                };
                driver.start(&req).await
            }
            Err(e) => Err(DriverError::Op {
                op: "start",
                instance: format!("{name}-{instance}"),
                reason: format!("cannot create the log file: {e}"),
            }),
        };
        self.sup.counters.starts.fetch_add(1, Ordering::Relaxed);
        if was_restart {
            self.sup.counters.restarts.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(h) => {
                self.rec.status.handle = Some(h.clone());
                self.rec.status.phase = Phase::Running;
                self.rec.status.started_at_ms = Some(now_ms());
                self.rec.status.message = None;
                self.save(false);
                self.emit("running", format!("instance {instance} running"));
                self.watch(h);
            }
            Err(e) => {
                self.sup
                    .counters
                    .start_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.emit("start-failed", e.to_string());
                self.rec.status.started_at_ms = Some(now_ms());
                let info = ExitInfo {
                    code: None,
                    signal: None,
                    reason: "start-failed".into(),
                    message: Some(e.to_string()),
                };
                self.after_end(info, false);
            }
        }
    }

    async fn on_exit(&mut self, info: ExitInfo) {
        if let Some(h) = self.rec.status.handle.take() {
            if let Ok(d) = self.sup.driver(h.driver) {
                if let Err(e) = d.destroy(&h).await {
                    tracing::warn!(workload = %self.name(), error = %e, "destroy after exit failed");
                }
            }
            self.remove_old_run_dirs(h.id.instance);
        }
        self.emit("exited", describe_exit(&info));
        self.after_end(info, true);
    }

    /// Decide restart or rest after an instance ended (or failed to start).
    /// `exit_reported`: an `exited` event was just emitted for the instance, so a
    /// final phase of `exited` is not announced twice.
    fn after_end(&mut self, info: ExitInfo, exit_reported: bool) {
        let cfg = &self.sup.cfg;
        let now = now_ms();
        let st = &mut self.rec.status;
        st.handle = None;
        st.finished_at_ms = Some(now);
        let ran = now.saturating_sub(st.started_at_ms.unwrap_or(now));
        if ran >= cfg.stable_after.as_millis() as u64 {
            st.consecutive_failures = 0;
        }
        let restart = self.rec.desired == Desired::Running
            && wants_restart(self.rec.workload.spec.restart_policy, &info);
        st.last_exit = Some(info.clone());
        if restart {
            st.consecutive_failures += 1;
            st.restarts += 1;
            let delay = backoff(cfg.backoff_base, cfg.backoff_max, st.consecutive_failures);
            st.phase = Phase::Backoff;
            st.next_restart_at_ms = Some(now + delay.as_millis() as u64);
            st.message = Some(format!("restarting in {} ms", delay.as_millis()));
            let msg = format!(
                "restart {} in {} ms ({} failure(s) in a row)",
                st.restarts,
                delay.as_millis(),
                st.consecutive_failures
            );
            self.save(false);
            self.emit("backoff", msg);
        } else {
            st.phase = if self.rec.desired != Desired::Running {
                Phase::Stopped
            } else if info.success() {
                Phase::Exited
            } else {
                Phase::Failed
            };
            st.message = info.message.clone();
            let repeat = exit_reported && st.phase == Phase::Exited;
            let kind = st.phase.as_str();
            self.save(false);
            if !repeat {
                self.emit(kind, describe_exit(&info));
            }
        }
    }

    async fn stop(&mut self) {
        let Some(h) = self.rec.status.handle.clone() else {
            return;
        };
        let grace = self
            .rec
            .workload
            .spec
            .stop_grace_seconds
            .map(|s| Duration::from_secs(u64::from(s)))
            .unwrap_or(self.sup.cfg.default_grace);
        self.rec.status.phase = Phase::Stopping;
        self.save(false);
        self.emit(
            "stopping",
            format!("stopping (grace {} s)", grace.as_secs()),
        );
        if let Ok(d) = self.sup.driver(h.driver) {
            if let Err(e) = d.stop(&h, grace).await {
                tracing::warn!(workload = %self.name(), error = %e, "stop failed; destroying");
            }
            if let Err(e) = d.destroy(&h).await {
                tracing::warn!(workload = %self.name(), error = %e, "destroy failed");
            }
        }
        self.remove_old_run_dirs(h.id.instance);
        let st = &mut self.rec.status;
        st.handle = None;
        st.finished_at_ms = Some(now_ms());
        st.phase = Phase::Stopped;
        st.message = Some("stopped on request".into());
        self.save(true);
        self.emit("stopped", "stopped on request".into());
    }

    /// Keep the newest run dir (for post-mortems), drop older ones.
    fn remove_old_run_dirs(&self, keep: u64) {
        self.sup.remove_run_dirs_below(self.rec.name(), keep);
    }

    async fn finalize(&mut self) {
        let name = self.name();
        lock(&self.sup.admission).release(&name);
        if let Err(e) = self.sup.writer.write(WriteOp::Remove(name.clone())).await {
            tracing::error!(workload = %name, error = %e, "could not remove the record");
        }
        self.sup.uncache(&name);
        lock(&self.sup.actors).remove(&name);
        self.sup
            .remove_run_dirs_below(&name, self.rec.status.instance + 1);
        // The layout before run dirs were flat: `run/<name>/<instance>`.
        let _ = std::fs::remove_dir_all(self.sup.cfg.state_dir.join("run").join(&name));
        let _ = std::fs::remove_file(self.sup.log_path(&name));
        self.emit("deleted", "removed".into());
        self.flush_replies();
    }
}
