//! Churn: pods created and deleted in waves, with mixed behaviours — cooperative, stubborn (deaf
//! to terminate), spinning, failing postStart — in one host. Every pod must end with the right
//! reason and exit code, every pod's events must all be there, and afterwards the host must hold
//! nothing: no instance, no guest task, no container `/tmp`.
//!
//! `cargo test` runs one small wave; `cargo bench -p wasmlet --bench churn` runs 10 waves of
//! 1,000 pods in a process of their own and also checks file descriptors and RSS. (The bench
//! includes this file; it needs nothing but `wasmlet` and `wasmlet-examples`.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wasmlet::{Host, Pod, PodSpec};
use wasmlet_examples::components;

/// One kind of pod in the mix: its component, and how it must end.
pub struct Behaviour {
    pub name: &'static str,
    pub component: &'static str,
    pub phase: &'static str,
    pub exit_code: i32,
    pub reason: &'static str,
    /// It ends before it is deleted.
    pub ends_by_itself: bool,
}

pub const MIX: [Behaviour; 4] = [
    Behaviour {
        name: "cooperative",
        component: components::COOPERATIVE,
        phase: "Succeeded",
        exit_code: 0,
        reason: "Completed",
        ends_by_itself: false,
    },
    Behaviour {
        name: "stubborn",
        component: components::STUBBORN,
        phase: "Failed",
        exit_code: 137,
        reason: "Killed",
        ends_by_itself: false,
    },
    Behaviour {
        name: "spinner",
        component: components::SPINNER,
        phase: "Failed",
        exit_code: 137,
        reason: "Killed",
        ends_by_itself: false,
    },
    Behaviour {
        name: "failing-poststart",
        component: components::FAILING_POSTSTART,
        phase: "Failed",
        // Its app exits cleanly on the terminate that the failed hook brings.
        exit_code: 0,
        reason: "PostStartHookError",
        ends_by_itself: true,
    },
];

/// What a churn run found.
pub struct Report {
    /// How the pods ended: how many of them for each `phase reason exitCode`.
    pub endings: BTreeMap<String, usize>,
    /// One line per pod that did not end as it should, or whose events are missing.
    pub wrong: Vec<String>,
}

/// The events every pod must have, in this order.
const LIFE: [&str; 4] = ["Scheduled", "Pulled", "Created", "Started"];

/// Runs `waves` waves of `per_wave` pods (the mix in turn) in `host`.
pub async fn churn(host: &Host, waves: usize, per_wave: usize) -> Report {
    let mut endings = BTreeMap::new();
    let mut wrong = Vec::new();
    for wave in 0..waves {
        let mut pods: Vec<(Pod, &Behaviour)> = Vec::with_capacity(per_wave);
        for index in 0..per_wave {
            let behaviour = &MIX[index % MIX.len()];
            let spec = PodSpec::component(behaviour.component)
                .name(format!("churn-{wave}-{index}-{}", behaviour.name))
                .grace_period(Duration::from_millis(200))
                .build()
                .unwrap();
            match host.start_pod(spec).await {
                Ok(pod) => pods.push((pod, behaviour)),
                Err(error) => wrong.push(format!("wave {wave} pod {index}: {error:#}")),
            }
        }
        for (pod, _) in &pods {
            pod.wait_running().await;
        }
        for (pod, behaviour) in &pods {
            if !behaviour.ends_by_itself {
                pod.delete(None);
            }
        }
        for (pod, behaviour) in &pods {
            let status = tokio::time::timeout(Duration::from_secs(60), pod.wait())
                .await
                .unwrap_or_else(|_| panic!("pod {} did not end", pod.name()));
            let phase = status.phase.as_deref().unwrap_or("no phase");
            let container = status
                .container_statuses
                .as_ref()
                .and_then(|all| all.first());
            let ended = container
                .and_then(|c| c.state.as_ref())
                .and_then(|state| state.terminated.clone());
            let ending = match &ended {
                Some(end) => format!(
                    "{phase} {} {}",
                    end.reason.as_deref().unwrap_or("no reason"),
                    end.exit_code
                ),
                None => format!("{phase} not terminated"),
            };
            let expected = format!(
                "{} {} {}",
                behaviour.phase, behaviour.reason, behaviour.exit_code
            );
            if ending != expected {
                wrong.push(format!(
                    "{}: ended {ended:?} in {ending}, expected {expected}",
                    pod.name()
                ));
            }
            *endings.entry(ending).or_insert(0) += 1;
            if let Some(container) = container
                && (container.ready || container.restart_count != 0)
            {
                wrong.push(format!(
                    "{}: ended ready={} after {} restarts",
                    pod.name(),
                    container.ready,
                    container.restart_count
                ));
            }
            let reasons: Vec<String> = pod.events().into_iter().map(|e| e.reason).collect();
            let mut expected: Vec<&str> = LIFE.to_vec();
            expected.push(behaviour.reason);
            if !expected
                .iter()
                .all(|reason| reasons.iter().any(|r| r == reason))
            {
                wrong.push(format!(
                    "{}: events {reasons:?}, expected at least {expected:?}",
                    pod.name()
                ));
            }
        }
    }
    Report { endings, wrong }
}

/// Waits (a little) until `host` holds no instance and no more guest tasks than `baseline`.
pub async fn settled(host: &Host, baseline_tasks: usize) -> wasmlet::HostStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = host.stats();
        // Ended containers' /tmp directories are removed on blocking threads.
        if (stats.live_instances == 0 && stats.guest_tasks <= baseline_tasks && stats.tmp_dirs == 0)
            || Instant::now() > deadline
        {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Container `/tmp` directories of churn pods still on disk.
pub fn leftover_tmp_dirs() -> usize {
    std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("wasmlet-churn-")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wave_of_mixed_pods_ends_right_and_leaves_nothing_behind() {
    // A host of its own, so that what it holds afterwards is this test's alone.
    let host = Host::new(wasmlet::HostConfig::default()).unwrap();
    let baseline = host.stats().guest_tasks;
    let report = churn(&host, 2, 100).await;
    assert!(report.wrong.is_empty(), "{:#?}", report.wrong);
    // Every pod ended, each as its behaviour does (50 of each of the four kinds).
    let endings: Vec<(&str, usize)> = report
        .endings
        .iter()
        .map(|(ending, count)| (ending.as_str(), *count))
        .collect();
    assert_eq!(
        endings,
        [
            ("Failed Killed 137", 100),
            ("Failed PostStartHookError 0", 50),
            ("Succeeded Completed 0", 50),
        ]
    );
    let stats = settled(&host, baseline).await;
    assert_eq!(stats.live_instances, 0, "{stats:?}");
    assert!(stats.guest_tasks <= baseline, "{stats:?} vs {baseline}");
    assert_eq!(stats.tmp_dirs, 0, "{stats:?}");
    assert_eq!(leftover_tmp_dirs(), 0);
}
