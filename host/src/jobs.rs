//! Jobs on one host: pods of a Job's template started until `completions` of them have
//! succeeded, at most `parallelism` at once, a failed one replaced after a back-off (10 s,
//! 20 s, 40 s … up to 6 min, as the job controller's) until more than `backoffLimit` have
//! failed; `activeDeadlineSeconds` ends it. An Indexed Job may count failures per index
//! (`backoffLimitPerIndex`: an index that failed too often fails alone, and the job fails at its
//! end, or at once past `maxFailedIndexes`), and may succeed early by its `successPolicy`.
//! Events as the job controller's: `SuccessfulCreate`, `Completed`, `BackoffLimitExceeded`,
//! `DeadlineExceeded`, `PodFailurePolicy`, `FailedIndexes`, `MaxFailedIndexesExceeded`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::PodStatus;
use tokio::task::JoinSet;

use crate::events::{Event, EventType};
use crate::manifest::{FailureAction, RestartPolicy, Workload};
use crate::{Host, Pod};

/// How a Job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// `completions` pods succeeded (a work queue: one did, and every pod has ended).
    Complete {
        /// Pods that succeeded.
        succeeded: u32,
        /// Failures on the way (failed pods, and restarts under `OnFailure`).
        failed: u32,
    },
    /// It failed: `reason` is `BackoffLimitExceeded` or `DeadlineExceeded`.
    Failed {
        /// Kubernetes' reason.
        reason: String,
        /// Pods that succeeded.
        succeeded: u32,
        /// Failures.
        failed: u32,
    },
    /// It was stopped (the host shut down) before it ended.
    Stopped,
}

/// What a running Job reports.
pub enum JobUpdate {
    /// A pod of it started.
    Started(Pod),
    /// An event of the Job (`job/NAME`).
    Event(Event),
}

impl std::fmt::Debug for JobUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobUpdate::Started(pod) => f.debug_tuple("Started").field(&pod.name()).finish(),
            JobUpdate::Event(event) => f.debug_tuple("Event").field(event).finish(),
        }
    }
}

/// The restarts of a pod's containers so far.
fn restarts(status: &PodStatus) -> u32 {
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .map(|c| c.restart_count.max(0) as u32)
        .sum()
}

fn finished(status: &PodStatus) -> bool {
    matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
}

impl Host {
    /// Runs a Job ([`Workload::job`]) to its end, reporting each pod it starts and each of its
    /// events to `updates`. When `stop` resolves, no pod is started any more and the Job is
    /// `Stopped` once its pods have ended (stopping them is the caller's, as a host shutdown
    /// does). An error: the workload is not a Job, or a pod could not be started.
    pub async fn run_job(
        &self,
        workload: &Workload,
        mut updates: impl FnMut(JobUpdate),
        stop: impl Future<Output = ()>,
    ) -> anyhow::Result<JobOutcome> {
        let job = workload
            .job()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("`{}` is not a Job", workload.name()))?;
        let clock = self.clock().clone();
        let started_at = clock.now();
        let started_wall = clock.wall_time();
        let object = format!("job/{}", workload.name());
        let event = |kind: EventType, reason: &str, message: String| {
            let at = clock.now();
            let age = at.saturating_duration_since(started_at);
            let time = started_wall + age;
            JobUpdate::Event(Event {
                kind,
                reason: reason.into(),
                object: object.clone(),
                container: None,
                message,
                count: 1,
                first_age: age,
                age,
                time,
                first_time: time,
                at,
            })
        };
        let on_failure = workload
            .pods()
            .first()
            .is_some_and(|pod| pod.restart_policy() == RestartPolicy::OnFailure);
        // Indexes still to complete (one pseudo-index for a non-indexed job's each completion).
        let mut todo: VecDeque<u32> = match job.completions {
            Some(n) => (0..n).collect(),
            None => (0..job.parallelism).collect(),
        };
        let (mut succeeded, mut failed, mut number) = (0u32, 0u32, 0u32);
        // Indexed jobs: the indexes that succeeded (for `successPolicy`), each index's failures
        // and the indexes that failed for good (`backoffLimitPerIndex`).
        let mut succeeded_indexes = BTreeSet::new();
        let mut index_failures: HashMap<u32, u32> = HashMap::new();
        let mut failed_indexes = BTreeSet::new();
        // The success policy was met: the pods left are stopped, and their ends count for
        // nothing (the Job controller's `SuccessCriteriaMet`).
        let mut success_met = false;
        let mut active: JoinSet<(u32, Pod, PodStatus)> = JoinSet::new();
        let mut ready_at = clock.now();
        let mut stop = std::pin::pin!(stop);
        let mut stopping = false;
        let deadline = job.active_deadline.map(|d| self.sleep(d));
        let mut deadline = std::pin::pin!(async move {
            match deadline {
                Some(deadline) => deadline.await,
                None => std::future::pending().await,
            }
        });
        let mut outcome = None;
        loop {
            // Start what is due, up to `parallelism`.
            let work_queue_done = job.completions.is_none() && succeeded > 0;
            while outcome.is_none()
                && !stopping
                && !success_met
                && !work_queue_done
                && (active.len() as u32) < job.parallelism
                && clock.now() >= ready_at
                && let Some(index) = todo.pop_front()
            {
                let spec = workload
                    .job_pod(number, index)
                    .expect("a Job has a pod template");
                number += 1;
                let pod = self.start_pod(spec).await?;
                updates(event(
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", pod.name()),
                ));
                updates(JobUpdate::Started(pod.clone()));
                let budget = job.backoff_limit.saturating_sub(failed);
                let watched = pod.clone();
                active.spawn(async move {
                    let status = watched
                        .wait_until(|s| finished(s) || (on_failure && restarts(s) > budget))
                        .await;
                    (index, watched, status)
                });
            }
            if active.is_empty()
                && (outcome.is_some()
                    || stopping
                    || success_met
                    || todo.is_empty()
                    || (job.completions.is_none() && succeeded > 0))
            {
                break;
            }
            let backoff = clock.now() < ready_at && !todo.is_empty();
            let wait_backoff = self.sleep(ready_at.saturating_duration_since(clock.now()));
            tokio::select! {
                Some(ended) = active.join_next() => {
                    let Ok((index, pod, status)) = ended else { continue };
                    let pod_restarts = if on_failure { restarts(&status) } else { 0 };
                    if success_met {
                        // Stopped because the job already succeeded.
                    } else if status.phase.as_deref() == Some("Succeeded") {
                        succeeded += 1;
                        failed += pod_restarts;
                        succeeded_indexes.insert(index);
                        // `matchSuccessPolicy` (pkg/controller/job/success_policy.go).
                        if let Some(rule) =
                            crate::manifest::match_success_policy(&job.success_policy, &succeeded_indexes)
                        {
                            tracing::debug!("job {}: success policy rule {rule} met", workload.name());
                            success_met = true;
                            self.stop_job_pods(workload);
                        }
                    } else {
                        if !finished(&status) {
                            // Too many restarts under OnFailure: the pod is failed.
                            pod.kill();
                            pod.wait().await;
                        }
                        // podFailurePolicy: the first rule matching how the pod's containers
                        // exited decides (the Job controller's matchPodFailurePolicy).
                        let matched = crate::manifest::match_rules(&job.pod_failure_policy, &status);
                        let action = matched.as_ref().map(|(action, _)| *action);
                        if action != Some(FailureAction::Ignore) {
                            failed += pod_restarts.max(1);
                        }
                        if outcome.is_none() && !stopping {
                            // With a limit per index, an index that failed once too often (or
                            // by a `FailIndex` rule) fails alone and is not retried
                            // (`getNewIndexFailureCounts`, pkg/controller/job/indexed_job_utils.go).
                            let mut index_failed = false;
                            let mut retries = failed;
                            if let Some(limit) = job.backoff_limit_per_index
                                && action != Some(FailureAction::Ignore)
                            {
                                let count = index_failures.entry(index).or_default();
                                *count += pod_restarts.max(1);
                                retries = *count;
                                if action == Some(FailureAction::FailIndex) || *count > limit {
                                    index_failed = true;
                                    failed_indexes.insert(index);
                                }
                            }
                            let too_many_indexes = job
                                .max_failed_indexes
                                .is_some_and(|max| failed_indexes.len() as u32 > max);
                            let failure = match (action, &matched) {
                                (Some(FailureAction::FailJob), Some((_, message))) => {
                                    Some(("PodFailurePolicy", message.clone()))
                                }
                                // Replaced at once, not counted toward backoffLimit.
                                (Some(FailureAction::Ignore), _) => {
                                    todo.push_back(index);
                                    None
                                }
                                _ if too_many_indexes => Some((
                                    "MaxFailedIndexesExceeded",
                                    "Job has exceeded the specified maximal number of failed \
                                     indexes"
                                        .to_string(),
                                )),
                                _ if failed > job.backoff_limit => Some((
                                    "BackoffLimitExceeded",
                                    "Job has reached the specified backoff limit".to_string(),
                                )),
                                // Failed for good: the other indexes go on.
                                _ if index_failed => None,
                                _ => {
                                    todo.push_back(index);
                                    // The back-off grows with the failures of the job, or of
                                    // the index when they are counted per index.
                                    let shift = retries.saturating_sub(1).min(6);
                                    let delay = Duration::from_secs(10 << shift).min(Duration::from_secs(360));
                                    ready_at = clock.now() + delay;
                                    None
                                }
                            };
                            if let Some((reason, message)) = failure {
                                updates(event(EventType::Warning, reason, message));
                                outcome = Some(reason);
                                self.stop_job_pods(workload);
                            }
                        }
                    }
                }
                () = &mut deadline, if outcome.is_none() && !stopping && !success_met => {
                    updates(event(
                        EventType::Warning,
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline".into(),
                    ));
                    outcome = Some("DeadlineExceeded");
                    self.stop_job_pods(workload);
                }
                () = &mut stop, if !stopping => stopping = true,
                () = wait_backoff, if backoff => {}
            }
        }
        if let Some(reason) = outcome {
            return Ok(JobOutcome::Failed {
                reason: reason.into(),
                succeeded,
                failed,
            });
        }
        // Every index ended, some of them failed: the job has failed indexes.
        if !success_met && !failed_indexes.is_empty() && (!stopping || todo.is_empty()) {
            updates(event(
                EventType::Warning,
                "FailedIndexes",
                "Job has failed indexes".into(),
            ));
            return Ok(JobOutcome::Failed {
                reason: "FailedIndexes".into(),
                succeeded,
                failed,
            });
        }
        if stopping && !todo.is_empty() && !success_met {
            return Ok(JobOutcome::Stopped);
        }
        if stopping && job.completions.is_none() && succeeded == 0 {
            return Ok(JobOutcome::Stopped);
        }
        updates(event(
            EventType::Normal,
            "Completed",
            "Job completed".into(),
        ));
        Ok(JobOutcome::Complete { succeeded, failed })
    }

    /// Deletes the running pods of `workload`: the Job has failed.
    fn stop_job_pods(&self, workload: &Workload) {
        for pod in self.job_pods(workload) {
            pod.delete(None);
        }
    }

    /// The running pods of `workload` (a Job's, named `JOB-N`).
    fn job_pods(&self, workload: &Workload) -> Vec<Pod> {
        let prefix = format!("{}-", workload.name());
        self.pods()
            .into_iter()
            .filter(|pod| {
                pod.name()
                    .strip_prefix(&prefix)
                    .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
            })
            .collect()
    }
}
