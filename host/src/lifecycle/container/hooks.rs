//! The container's hooks: starting postStart and preStop (an exec, an httpGet, a sleep, or the
//! component's own export) and saying why one failed, with what it printed.

use super::Supervisor;
use crate::clock::sleep;
use crate::events::{EventType, LogSource};
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

impl Supervisor {
    /// Starts the postStart or preStop handler: the manifest's, else the component's own
    /// export, else none.
    pub(super) fn start_hook(&mut self, source: LogSource) -> Option<HookRun> {
        let (handler, entry) = match source {
            LogSource::PostStart => (self.spec.post_start.clone(), Entry::PostStart),
            LogSource::PreStop => (self.spec.pre_stop.clone(), Entry::PreStop),
            LogSource::Main | LogSource::Handler => unreachable!("not a hook"),
        };
        let host = &self.pod.host;
        let run = match handler {
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
                let (switch, end) = spawn_task(&host.runtime, async move {
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
                });
                HookRun {
                    switch,
                    end,
                    logs,
                    description,
                }
            }
            Some(Handler::Sleep(duration)) => {
                let clock = host.clock.clone();
                let logs = self.io(source, Vec::new(), true).logs;
                let (switch, end) = spawn_task(&host.runtime, async move {
                    sleep(&clock, duration).await;
                    InstanceEnd::Returned(Ok(()))
                });
                HookRun {
                    switch,
                    end,
                    logs,
                    description: format!("sleep {}", humantime::format_duration(duration)),
                }
            }
            Some(Handler::Exec { command, target }) => {
                let component = match target {
                    ExecTarget::Shell => self.loaded.shell.clone()?,
                    ExecTarget::Component(path) => self.loaded.exec.get(&path)?.clone(),
                    ExecTarget::Container => self.loaded.main.clone(),
                };
                // The command is the instance's whole argv, as exec in a container.
                let io = self.io(source, command.clone(), true);
                let logs = io.logs.clone();
                let (switch, end) = self.spawn(component, Entry::Run, io);
                HookRun {
                    switch,
                    end,
                    logs,
                    description: format!("exec {command:?}"),
                }
            }
            None if self.loaded.main.exports(entry) => {
                let io = self.io(source, self.argv(), true);
                let logs = io.logs.clone();
                let (switch, end) = self.spawn(self.loaded.main.clone(), entry, io);
                let export = match entry {
                    Entry::PostStart => "post-start",
                    _ => "pre-stop",
                };
                HookRun {
                    switch,
                    end,
                    logs,
                    description: format!("the component's {export} export"),
                }
            }
            None => return None,
        };
        self.instances.add(run.switch.clone());
        Some(run)
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
