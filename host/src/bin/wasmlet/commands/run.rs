//! `wasmlet run`: run a pod until every container has ended, printing events as they happen.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use wasmlet::k8s_openapi::api::core::v1::PodStatus;
use wasmlet::{
    Event, Host, HostConfig, JobOutcome, JobUpdate, LogStream, Manifests, Pod, PodSpec, PodUpdate,
    Workload, WorkloadKind,
};

use crate::output::out;

/// Run a pod (Pod YAML) or a single component (.wasm) until every container has ended.
///
/// Ctrl-C or SIGTERM deletes the pod gracefully (preStop, terminate, kill after the grace
/// period); a second one kills at once. Events go to stderr as they happen; container output
/// goes to stdout prefixed with `[container]`.
#[derive(clap::Args)]
pub struct RunCommand {
    /// Manifests (YAML), run together in one host as `kubectl apply -f` reads them: Pods,
    /// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, and the ConfigMaps and Secrets
    /// they read, several documents a file; or one component (any WebAssembly component file).
    #[arg(required = true)]
    targets: Vec<PathBuf>,

    /// Grace period for stopping, overriding the manifest's terminationGracePeriodSeconds
    /// (e.g. `5s`, `500ms`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    grace_period: Option<Duration>,

    /// Delete the pod this long after all its containers are Running (e.g. `3s`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    stop_after: Option<Duration>,

    /// `json` prints the final status on stdout as Kubernetes PodStatus JSON (container output
    /// then goes to stderr).
    #[arg(long, short, value_enum, default_value_t = Output::Text)]
    output: Output,

    /// The address containers that serve HTTP listen on (their containerPorts); it stands for
    /// the pod's IP. `0.0.0.0` serves other machines too.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    address: std::net::IpAddr,

    /// A port to serve HTTP on, when TARGET is a component that exports
    /// wasi:http/incoming-handler (repeat for more). A manifest lists them in `ports`.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: Vec<u16>,

    /// Take instances from a pool of this many slots (wasmtime's pooling allocator); the ones
    /// beyond are allocated on demand. 0 allocates every instance on demand. Default: a pool
    /// when a container serves HTTP or has probes (64 slots for each), else none.
    #[arg(long, value_name = "SLOTS")]
    instance_pool: Option<u32>,

    /// Where `persistentVolumeClaim` volumes keep their data, one directory per claim
    /// (`DIR/claims/NAMESPACE/CLAIM`), kept from run to run. Default: `$XDG_DATA_HOME/wasmlet`,
    /// else `~/.local/share/wasmlet`.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Arguments for the component, when TARGET is a component.
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

impl RunCommand {
    pub async fn execute(self) -> anyhow::Result<ExitCode> {
        let is_component = self.targets.iter().any(|target| is_webassembly(target));
        let workloads = if is_component {
            anyhow::ensure!(
                self.targets.len() == 1,
                "a component runs alone; give several Pod manifests to run pods together"
            );
            let spec = PodSpec::component(&self.targets[0])
                .args(self.args.iter().cloned())
                .ports(self.port.iter().copied())
                .build()?;
            vec![Planned::Pods(vec![spec], false)]
        } else {
            anyhow::ensure!(
                self.args.is_empty(),
                "arguments after `--` are for a component target; a manifest gives them in `args`"
            );
            anyhow::ensure!(
                self.port.is_empty(),
                "--port is for a component target; a manifest lists its containers' `ports`"
            );
            // Every manifest is checked before any pod starts.
            let manifests = Manifests::from_files(&self.targets).map_err(|errors| {
                let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                anyhow::anyhow!(errors.join("\n"))
            })?;
            for line in manifests.skipped() {
                eprintln!("wasmlet: {line}");
            }
            manifests
                .workloads()
                .iter()
                .map(|workload| match workload.kind() {
                    WorkloadKind::Job => Planned::Job(Box::new(workload.clone())),
                    _ => Planned::Pods(workload.pods().to_vec(), workload.ordered()),
                })
                .collect()
        };
        let grace = self.grace_period;
        let with_grace = move |spec: PodSpec| match grace {
            Some(grace) => spec.with_grace_period(grace),
            None => spec,
        };
        // Listen before anything starts: a signal during compilation must still mean "stop
        // gracefully", not the default action.
        let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let specs: Vec<PodSpec> = workloads.iter().flat_map(Planned::specs).collect();
        let defaults = HostConfig::default();
        let host = Host::new(HostConfig {
            http_address: self.address,
            instance_pool: match self.instance_pool {
                Some(0) => None,
                Some(slots) => Some(wasmlet::InstancePool::with_slots(slots)),
                None => wasmlet::InstancePool::for_pods(&specs),
            },
            data_dir: self.data_dir.clone().or(defaults.data_dir.clone()),
            ..defaults
        })?;
        let table = EventTable::for_specs(specs.into_iter());
        // Pods are started here, or by the task of an ordered StatefulSet or a Job; each
        // started one comes through `started` (whether it is a Job's: its job decides).
        let (started, mut started_pods) = tokio::sync::mpsc::unbounded_channel::<(Pod, bool)>();
        let (stop_sender, stop) = tokio::sync::watch::channel(false);
        let mut controllers = Vec::new();
        let mut plain = Vec::new();
        for planned in workloads {
            match planned {
                Planned::Pods(specs, false) => plain.extend(specs.into_iter().map(&with_grace)),
                Planned::Pods(specs, true) => {
                    let (host, started, mut stop) = (host.clone(), started.clone(), stop.clone());
                    controllers.push(tokio::spawn(async move {
                        for spec in specs {
                            if *stop.borrow() {
                                break;
                            }
                            let name = spec.name().to_string();
                            let pod = host
                                .start_pod(with_grace(spec))
                                .await
                                .with_context(|| format!("starting pod `{name}`"))?;
                            let _ = started.send((pod.clone(), false));
                            // OrderedReady: the next one once this one is ready (or ended).
                            tokio::select! {
                                _ = pod.wait_until(|s| is_ready(s) || wasmlet::all_terminated(s)) => {}
                                _ = stop.wait_for(|stop| *stop) => break,
                            }
                        }
                        anyhow::Ok(None)
                    }));
                }
                Planned::Job(workload) => {
                    let (host, started, mut stop) = (host.clone(), started.clone(), stop.clone());
                    controllers.push(tokio::spawn(async move {
                        let table = table;
                        let outcome = host
                            .run_job(
                                &workload,
                                |update| match update {
                                    JobUpdate::Started(pod) => {
                                        let _ = started.send((pod, true));
                                    }
                                    JobUpdate::Event(event) => print_event(&table, &event),
                                },
                                async move {
                                    let _ = stop.wait_for(|stop| *stop).await;
                                },
                            )
                            .await?;
                        Ok(Some(outcome))
                    }));
                }
            }
        }
        for spec in plain {
            let name = spec.name().to_string();
            let started_pod = host
                .start_pod(spec)
                .await
                .with_context(|| format!("starting pod `{name}`"));
            match started_pod {
                Ok(pod) => {
                    let _ = started.send((pod, false));
                }
                Err(error) => {
                    // The pods already started are stopped, not abandoned.
                    let _ = stop_sender.send(true);
                    host.kill_all();
                    let _ = host.shutdown(None).await;
                    return Err(error);
                }
            }
        }
        drop(started);

        let mut pods: Vec<(Pod, bool)> = Vec::new();
        let mut printers = Vec::new();
        let mut ended = tokio::task::JoinSet::new();
        let mut interrupts = 0;
        let mut open = true;
        loop {
            tokio::select! {
                pod = started_pods.recv(), if open => match pod {
                    Some((pod, of_job)) => {
                        printers.push(tokio::spawn(print_updates(pod.follow(), self.output, table)));
                        if let Some(after) = self.stop_after {
                            let (pod, host) = (pod.clone(), host.clone());
                            tokio::spawn(async move {
                                let status = pod.wait_running().await;
                                if !wasmlet::all_terminated(&status) {
                                    host.sleep(after).await;
                                    pod.delete(None);
                                }
                            });
                        }
                        let index = pods.len();
                        let waited = pod.clone();
                        ended.spawn(async move { (index, waited.wait().await) });
                        pods.push((pod, of_job));
                    }
                    None => open = false,
                },
                Some(_) = ended.join_next(), if !ended.is_empty() => {}
                _ = interrupt.recv() => interrupts += 1,
                _ = terminate.recv() => interrupts += 1,
                else => break,
            }
            if !open && ended.is_empty() {
                break;
            }
            if interrupts == 1 && !*stop.borrow() {
                let names: Vec<&str> = pods.iter().map(|(pod, _)| pod.name()).collect();
                eprintln!(
                    "wasmlet: stopping {} {} gracefully; signal again to kill now",
                    if pods.len() == 1 { "pod" } else { "pods" },
                    names.join(", ")
                );
                let _ = stop_sender.send(true);
                // Each pod within its own grace period, all at once.
                let _stopping = host.shutdown(None);
            } else if (2..100).contains(&interrupts) {
                let names: Vec<&str> = pods.iter().map(|(pod, _)| pod.name()).collect();
                eprintln!("wasmlet: killing {}", names.join(", "));
                host.kill_all();
                interrupts = 100;
            }
        }
        let mut job_codes = Vec::new();
        for controller in controllers {
            match controller.await? {
                Ok(Some(JobOutcome::Complete { .. })) | Ok(None) => {}
                Ok(Some(_)) => job_codes.push(ExitCode::FAILURE),
                Err(error) => {
                    eprintln!("error: {error:#}");
                    job_codes.push(ExitCode::from(2));
                }
            }
        }
        for printer in printers {
            let _ = printer.await;
        }
        let mut statuses = Vec::new();
        for (pod, _) in &pods {
            statuses.push(pod.wait().await);
        }
        if self.output == Output::Json {
            if statuses.len() == 1 {
                out!("{}", serde_json::to_string_pretty(&statuses[0])?);
            } else {
                out!("{}", serde_json::to_string_pretty(&statuses)?);
            }
        }
        // The first pod that did not succeed decides, in the order started; a Job's pods are
        // judged by their Job (a failed one may have been replaced by one that succeeded).
        let code = statuses
            .iter()
            .zip(&pods)
            .filter(|(_, (_, of_job))| !of_job)
            .map(|(status, (pod, _))| exit_code(status, pod.spec()))
            .chain(job_codes)
            .find(|code| *code != ExitCode::SUCCESS)
            .unwrap_or(ExitCode::SUCCESS);
        // A large component started on the baseline compiler's code: finish its optimised
        // build, so that the next run starts on it, unless the user would rather not wait.
        let compiling = host.background_compiles();
        if compiling > 0 {
            eprintln!(
                "wasmlet: finishing the optimised build of {compiling} large component{} for the \
                 next run (Ctrl-C skips)",
                if compiling == 1 { "" } else { "s" }
            );
            tokio::select! {
                () = host.finish_background_compiles() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Ok(code)
    }
}

/// What `run` starts: pods (in order, each once the one before is ready, for an ordered
/// StatefulSet), or a Job.
enum Planned {
    Pods(Vec<PodSpec>, bool),
    Job(Box<Workload>),
}

impl Planned {
    /// The pods' specs, to size the events table (a Job's named as its tenth pod would be).
    fn specs(&self) -> Vec<PodSpec> {
        match self {
            Planned::Pods(specs, _) => specs.clone(),
            Planned::Job(workload) => workload.job_pod(10, 0).into_iter().collect(),
        }
    }
}

/// Whether the pod's `Ready` condition is true.
fn is_ready(status: &PodStatus) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Whether `path` is meant as a component rather than a manifest: named `.wasm` (so a broken one
/// gets a component's error, not a YAML one), or starting with the wasm magic bytes whatever its
/// name (rustdoc's and cargo's test binaries have no extension).
fn is_webassembly(path: &std::path::Path) -> bool {
    use std::io::Read;
    let named_wasm = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("wasm"));
    let mut magic = [0u8; 4];
    let has_magic = std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .is_ok_and(|()| magic == *b"\0asm");
    named_wasm || has_magic
}

/// The events table's header, printed once for all pods.
static HEADER: std::sync::Once = std::sync::Once::new();

/// The layout of the events table on stderr. A streaming table cannot measure its rows ahead,
/// but every object it will name is known before the first event: the pods given and their
/// containers. So the `OBJECT` column is as wide as the longest of them, and the columns line
/// up whatever the names.
#[derive(Clone, Copy)]
struct EventTable {
    object_width: usize,
}

impl EventTable {
    /// The narrowest `OBJECT` column: wide enough for the header and typical names.
    const MIN_OBJECT_WIDTH: usize = 24;

    fn for_specs(specs: impl Iterator<Item = PodSpec>) -> EventTable {
        let longest = specs
            .flat_map(|spec| {
                let pod_object = format!("pod/{}", spec.name()).len();
                let containers = spec.init_containers().iter().chain(spec.containers());
                std::iter::once(pod_object)
                    .chain(containers.map(move |c| pod_object + 1 + c.name().len()))
                    .collect::<Vec<_>>()
            })
            .max()
            .unwrap_or(0);
        EventTable {
            object_width: longest.max(Self::MIN_OBJECT_WIDTH),
        }
    }

    fn header(&self) -> String {
        format!(
            "{:>8}  {:<7}  {:<20}  {:<width$}  MESSAGE",
            "AGE",
            "TYPE",
            "REASON",
            "OBJECT",
            width = self.object_width
        )
    }

    fn row(&self, event: &Event) -> String {
        let object = match &event.container {
            Some(container) => format!("{}/{container}", event.object),
            None => event.object.clone(),
        };
        // Continuation lines of a multi-line message start under the MESSAGE column.
        let indent = " ".repeat(8 + 2 + 7 + 2 + 20 + 2 + self.object_width + 2);
        format!(
            "{:>7.3}s  {:<7}  {:<20}  {:<width$}  {}",
            event.age.as_secs_f64(),
            format!("{:?}", event.kind),
            event.reason,
            object,
            event.message.replace('\n', &format!("\n{indent}| ")) + &event.repeats(),
            width = self.object_width
        )
    }
}

/// Prints an event as a row of the table (its header first, once).
fn print_event(table: &EventTable, event: &Event) {
    let mut stderr = std::io::stderr().lock();
    HEADER.call_once(|| {
        let _ = writeln!(stderr, "{}", table.header());
    });
    let _ = writeln!(stderr, "{}", table.row(event));
}

async fn print_updates(mut updates: wasmlet::Watch, output: Output, table: EventTable) {
    while let Some(update) = updates.next().await {
        match update {
            PodUpdate::Event(event) => print_event(&table, &event),
            PodUpdate::Log(line) => {
                let text = format!("{} {}", line.prefix(), line.line);
                if output == Output::Json || line.stream == LogStream::Stderr {
                    eprintln!("{text}");
                } else {
                    out!("{text}");
                }
            }
        }
    }
}

/// 0 when the pod succeeded (every init and app container Completed); else the first failing
/// container's exit code — init containers first — (1 if that is 0, as for a postStart failure
/// after a clean exit, or if an app container never started). Sidecars do not count, as in the
/// pod phase.
fn exit_code(status: &PodStatus, spec: &wasmlet::PodSpec) -> ExitCode {
    if status.phase.as_deref() == Some("Succeeded") {
        return ExitCode::SUCCESS;
    }
    let regular_init = status
        .init_container_statuses
        .iter()
        .flatten()
        .zip(spec.init_containers())
        .filter(|(_, init)| !init.is_sidecar())
        .map(|(c, _)| c);
    let failed_init = regular_init.filter(|c| {
        c.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.reason.as_deref() != Some("Completed"))
    });
    for container in failed_init.chain(status.container_statuses.iter().flatten()) {
        let Some(terminated) = container.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
            return ExitCode::FAILURE;
        };
        if terminated.reason.as_deref() != Some("Completed") {
            let code = u8::try_from(terminated.exit_code).unwrap_or(1);
            return ExitCode::from(if code == 0 { 1 } else { code });
        }
    }
    ExitCode::FAILURE
}
