//! The status a pod reports: Kubernetes `PodStatus`, its phase derived from the container
//! states, and the conditions recomputed with every change.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateWaiting, ContainerStatus, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::PodShared;
use crate::lifecycle::conditions::{pod_conditions, qos_class};

/// The status of a container that has not started, waiting for `reason`.
pub(crate) fn waiting_status(
    container: &crate::manifest::ContainerSpec,
    reason: &str,
) -> ContainerStatus {
    ContainerStatus {
        name: container.name.clone(),
        image: container.image.display().to_string(),
        image_id: String::new(),
        ready: false,
        restart_count: 0,
        started: Some(false),
        state: Some(ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl PodShared {
    /// The pod phase Kubernetes derives from container states: `Pending` until the init
    /// containers have completed and every app container has started once; `Running` while
    /// anything runs or will run again; at the end `Succeeded` if the init containers and every
    /// app container completed, `Failed` otherwise. Sidecars do not count.
    fn phase(&self, status: &PodStatus) -> &'static str {
        let completed = |c: &&ContainerStatus| {
            c.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(super::completed)
        };
        let never_ran = |c: &&ContainerStatus| {
            c.state.as_ref().is_some_and(|s| s.waiting.is_some())
                && c.restart_count == 0
                && c.last_state.is_none()
        };
        let init: Vec<&ContainerStatus> = status
            .init_container_statuses
            .iter()
            .flatten()
            .zip(&self.spec.init_containers)
            .filter(|(_, spec)| !spec.sidecar)
            .map(|(status, _)| status)
            .collect();
        let apps: Vec<&ContainerStatus> = status.container_statuses.iter().flatten().collect();
        let initialized = init.iter().all(completed);
        if self.finished.load(std::sync::atomic::Ordering::SeqCst) {
            if initialized && !apps.is_empty() && apps.iter().all(completed) {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if !initialized || apps.iter().any(never_ran) {
            "Pending"
        } else {
            "Running"
        }
    }

    /// Recomputes the phase (after the pod finished).
    pub(super) fn refresh_phase(&self) {
        self.modify_status(|_| ());
    }

    /// Changes one container's status and recomputes the pod phase.
    pub fn update_container(&self, index: usize, change: impl FnOnce(&mut ContainerStatus)) {
        self.update_container_returning(index, change);
    }

    /// [`PodShared::update_container`], returning what `change` returns.
    pub fn update_container_returning<R: Default>(
        &self,
        index: usize,
        change: impl FnOnce(&mut ContainerStatus) -> R,
    ) -> R {
        let init = self.spec.init_containers.len();
        self.modify_status(|status| {
            let container = if index < init {
                status.init_container_statuses.as_mut()
            } else {
                status.container_statuses.as_mut()
            }
            .and_then(|all| all.get_mut(index.checked_sub(init).unwrap_or(index)));
            container
                .map(|container| {
                    let result = change(container);
                    self.ready_gates[index].store(container.ready, Ordering::SeqCst);
                    result
                })
                .unwrap_or_default()
        })
    }

    /// Changes the status, recomputes the phase, and tells the status taps.
    fn modify_status<R>(&self, change: impl FnOnce(&mut PodStatus) -> R) -> R {
        let mut result = None;
        self.status.send_modify(|status| {
            result = Some(change(status));
            status.phase = Some(self.phase(status).into());
            let finished = self.finished.load(Ordering::SeqCst);
            let previous = status.conditions.take().unwrap_or_default();
            let now = time(self.host.clock.wall_time());
            let conditions = pod_conditions(&self.spec, status, finished, &previous, now);
            status.conditions = Some(conditions);
            status.qos_class = Some(qos_class(&self.spec).into());
        });
        let taps = self.status_taps.lock().unwrap();
        if !taps.is_empty() {
            let now = self.host.clock.now();
            let status = self.status.borrow();
            for tap in taps.iter() {
                tap(now, &status);
            }
        }
        result.expect("send_modify runs its closure")
    }

    pub fn now_time(&self) -> Time {
        time(self.host.clock.wall_time())
    }
}

pub(crate) fn time(at: SystemTime) -> Time {
    use k8s_openapi::jiff::Timestamp;
    let since_epoch = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let timestamp = Timestamp::new(
        since_epoch.as_secs() as i64,
        since_epoch.subsec_nanos() as i32,
    );
    Time(timestamp.unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Whether the pod has finished: `Succeeded` or `Failed`.
pub fn phase_is_final(status: &PodStatus) -> bool {
    matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
}

/// Whether every container of `status` has terminated.
pub fn all_terminated(status: &PodStatus) -> bool {
    status
        .container_statuses
        .iter()
        .flatten()
        .all(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
}
