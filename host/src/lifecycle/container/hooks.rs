//! The container's hooks: starting postStart and preStop (an exec, an httpGet, a sleep, or the
//! component's own export), delivered as the node's hook faults say (once and at once on a
//! real host), and saying why one failed, with what it printed.

use super::{Instances, Supervisor};
use crate::clock::sleep;
use crate::events::{EventType, LogSource};
use crate::lifecycle::faults::HookFault;
use crate::manifest::{ExecTarget, Handler};
use crate::runtime::{Entry, InstanceDone, InstanceEnd, KillSwitch, LogTarget, spawn_task};

/// The `User-Agent` of httpGet hook requests (Kubernetes sends `kube-lifecycle/<version>`).
const HOOK_USER_AGENT: &str = concat!("kube-lifecycle/wasmlet-", env!("CARGO_PKG_VERSION"));

/// A hook in progress: an instance (exec or the component's own export) or a sleep.
pub(super) struct HookRun {
    pub(super) switch: KillSwitch,
    pub(super) end: InstanceDone,
    pub(super) logs: LogTarget,
    pub(super) description: String,
}

/// Starts one delivery of a hook: its instance (or host-side task), and how to kill it.
type Deliver = Box<dyn Fn() -> (KillSwitch, InstanceDone) + Send + Sync>;

impl Supervisor {
    /// Starts the postStart or preStop handler: the manifest's, else the component's own
    /// export, else none. It is delivered as the node's hook faults say (once and at once,
    /// unless deterministic mode injects a fault).
    pub(super) fn start_hook(&mut self, source: LogSource) -> Option<HookRun> {
        let (handler, entry) = match source {
            LogSource::PostStart => (self.spec.post_start.clone(), Entry::PostStart),
            LogSource::PreStop => (self.spec.pre_stop.clone(), Entry::PreStop),
            LogSource::Main | LogSource::Handler | LogSource::Call => unreachable!("not a hook"),
        };
        let host = &self.pod.host;
        let runtime = host.runtime.clone();
        let (deliver, logs, description): (Deliver, LogTarget, String) = match handler {
            Some(Handler::HttpGet(get)) => {
                let pod = self.pod.clone();
                let logs = self.io(source, Vec::new(), true).logs;
                let (reason, name) = match source {
                    LogSource::PostStart => ("PostStartHook", "postStart"),
                    _ => ("PreStopHook", "preStop"),
                };
                let container = self.spec.name.clone();
                let url = crate::http::get_url(&pod, &get);
                let description = format!("httpGet {url}");
                let deliver = Box::new(move || {
                    let (pod, get, url, container) =
                        (pod.clone(), get.clone(), url.clone(), container.clone());
                    spawn_task(&runtime, async move {
                        // No timeout of its own, as in Kubernetes: the grace period bounds a
                        // preStop, and a postStart runs until it answers.
                        match crate::http::http_get(&pod, &get, HOOK_USER_AGENT, None).await {
                            Ok(got) => {
                                // Any answer is a success; the status is recorded.
                                let kind = if got.status.as_u16() < 400 {
                                    EventType::Normal
                                } else {
                                    EventType::Warning
                                };
                                pod.event(
                                    kind,
                                    reason,
                                    Some(&container),
                                    format!(
                                        "{name} httpGet {url} answered {} in {}",
                                        got.status,
                                        crate::events::short_duration(got.took)
                                    ),
                                );
                                InstanceEnd::Returned(Ok(()))
                            }
                            Err(error) => InstanceEnd::Returned(Err(error)),
                        }
                    })
                });
                (deliver, logs, description)
            }
            Some(Handler::Sleep(duration)) => {
                let clock = host.clock.clone();
                let logs = self.io(source, Vec::new(), true).logs;
                let deliver = Box::new(move || {
                    let clock = clock.clone();
                    spawn_task(&runtime, async move {
                        sleep(&clock, duration).await;
                        InstanceEnd::Returned(Ok(()))
                    })
                });
                let description = format!("sleep {}", humantime::format_duration(duration));
                (deliver, logs, description)
            }
            Some(Handler::Exec { command, target }) => {
                let component = match target {
                    ExecTarget::Shell => self.loaded.shell.clone()?,
                    ExecTarget::Component(path) => self.loaded.exec.get(&path)?.clone(),
                    ExecTarget::Container => self.loaded.main.clone(),
                };
                // The command is the instance's whole argv, as exec in a container.
                let description = format!("exec {command:?}");
                let (deliver, logs) = self.deliver_instance(source, component, Entry::Run, command);
                (deliver, logs, description)
            }
            None if self.loaded.main.exports(entry) => {
                let export = match entry {
                    Entry::PostStart => "post-start",
                    _ => "pre-stop",
                };
                let (deliver, logs) =
                    self.deliver_instance(source, self.loaded.main.clone(), entry, self.argv());
                (deliver, logs, format!("the component's {export} export"))
            }
            None => return None,
        };
        let fault = match source {
            LogSource::PostStart => host.faults.post_start,
            _ => host.faults.pre_stop,
        };
        let (switch, end) = if fault.is_none() {
            deliver()
        } else {
            deliver_with_fault(&host.runtime, fault, deliver, self.instances.clone())
        };
        self.instances.add(switch.clone());
        Some(HookRun {
            switch,
            end,
            logs,
            description,
        })
    }

    /// How to start an instance of `component` calling `entry` for the hook of `source`; every
    /// delivery's output goes to the one returned target (captured for the hook's event).
    fn deliver_instance(
        &self,
        source: LogSource,
        component: std::sync::Arc<crate::runtime::LoadedComponent>,
        entry: Entry,
        argv: Vec<String>,
    ) -> (Deliver, LogTarget) {
        let logs = self.io(source, Vec::new(), true).logs;
        let launcher = self.launcher.clone();
        let shared_logs = logs.clone();
        let deliver = Box::new(move || {
            let mut io = launcher.io(source, argv.clone(), true);
            io.logs = shared_logs.clone();
            launcher.spawn(component.clone(), entry, io)
        });
        (deliver, logs)
    }
}

/// Delivers a hook as `fault` says: `delay` late, and a second time once the first delivery
/// succeeded. The returned switch kills whichever delivery is running (each is also in
/// `instances`, so that a kill of the whole container reaches it).
fn deliver_with_fault(
    runtime: &crate::runtime::Runtime,
    fault: HookFault,
    deliver: Deliver,
    instances: Instances,
) -> (KillSwitch, InstanceDone) {
    let clock = runtime.clock.clone();
    spawn_task(runtime, async move {
        if !fault.delay.is_zero() {
            sleep(&clock, fault.delay).await;
        }
        let mut end = deliver_once(&deliver, &instances).await;
        let succeeded = matches!(end, InstanceEnd::Returned(Ok(())) | InstanceEnd::Exited(0));
        if fault.twice && succeeded {
            end = deliver_once(&deliver, &instances).await;
        }
        end
    })
}

/// One delivery, to its end; killed if the delivery as a whole is killed first.
async fn deliver_once(deliver: &Deliver, instances: &Instances) -> InstanceEnd {
    let (switch, end) = deliver();
    instances.add(switch.clone());
    let _kill_if_abandoned = KillOnDrop(switch);
    end.await.unwrap_or_else(|_| InstanceEnd::lost())
}

/// Kills an instance when dropped (a delivery whose wrapper was killed).
struct KillOnDrop(KillSwitch);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill();
    }
}

/// Resolves when the hook in `slot` ends; never, if there is none.
pub(super) async fn finish(slot: &mut Option<HookRun>) -> InstanceEnd {
    match slot {
        Some(hook) => (&mut hook.end)
            .await
            .unwrap_or_else(|_| InstanceEnd::lost()),
        None => std::future::pending().await,
    }
}

/// Why a hook failed, and what it printed last (Kubernetes hides hook output; users ask for it).
pub(super) struct HookFailure {
    pub(super) summary: String,
    pub(super) output: Vec<String>,
}

impl HookFailure {
    /// `None` if the hook succeeded.
    pub(super) fn of(end: &InstanceEnd, hook: &HookRun) -> Option<HookFailure> {
        let what = match end {
            InstanceEnd::Returned(Ok(()))
            | InstanceEnd::Exited(0)
            | InstanceEnd::NotImplemented => {
                return None;
            }
            InstanceEnd::Returned(Err(message)) if message.is_empty() => "returned an error".into(),
            InstanceEnd::Returned(Err(message)) => format!("returned an error: {message}"),
            InstanceEnd::Exited(code) => format!("exited with code {code}"),
            InstanceEnd::Trapped { message, .. } => format!("trapped: {message}"),
            InstanceEnd::Killed { .. } => "was killed when the grace period ran out".into(),
        };
        Some(HookFailure {
            summary: format!("{} {what}", hook.description),
            output: hook.logs.captured(),
        })
    }

    /// The summary followed by the captured output, for the hook's event.
    pub(super) fn with_output(&self) -> String {
        if self.output.is_empty() {
            self.summary.clone()
        } else {
            format!("{}; output:\n{}", self.summary, self.output.join("\n"))
        }
    }
}
