//! `wasmlet run`: run a pod until every container has ended, printing events as they happen.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use wasmlet::k8s_openapi::api::core::v1::PodStatus;
use wasmlet::{Event, Host, HostConfig, LogStream, PodSpec, PodUpdate};

/// Run a pod (Pod YAML) or a single component (.wasm) until every container has ended.
///
/// Ctrl-C or SIGTERM deletes the pod gracefully (preStop, terminate, kill after the grace
/// period); a second one kills at once. Events go to stderr as they happen; container output
/// goes to stdout prefixed with `[container]`.
#[derive(clap::Args)]
pub struct RunCommand {
    /// Pod manifests (YAML), run together in one host; or one component (any WebAssembly
    /// component file).
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

    /// Take instances from a pool of this many slots (wasmtime's pooling allocator, each memory
    /// at most 1 GiB) instead of allocating each on demand: faster where instances come and go
    /// fast, such as HTTP handlers.
    #[arg(long, value_name = "SLOTS", value_parser = clap::value_parser!(u32).range(1..))]
    instance_pool: Option<u32>,

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
        let specs = if is_component {
            anyhow::ensure!(
                self.targets.len() == 1,
                "a component runs alone; give several Pod manifests to run pods together"
            );
            let spec = PodSpec::component(&self.targets[0])
                .args(self.args.iter().cloned())
                .ports(self.port.iter().copied())
                .build()?;
            vec![spec]
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
            let mut specs = Vec::new();
            for target in &self.targets {
                specs.push(PodSpec::from_file(target)?);
            }
            specs
        };
        let specs: Vec<PodSpec> = match self.grace_period {
            Some(grace) => (specs.into_iter())
                .map(|spec| spec.with_grace_period(grace))
                .collect(),
            None => specs,
        };
        // Listen before anything starts: a signal during compilation must still mean "stop
        // gracefully", not the default action.
        let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let host = Host::new(HostConfig {
            http_address: self.address,
            instance_pool: self.instance_pool.map(|instances| wasmlet::InstancePool {
                instances,
                ..Default::default()
            }),
            ..HostConfig::default()
        })?;
        let mut pods = Vec::new();
        for (spec, target) in specs.into_iter().zip(&self.targets) {
            let started = host
                .start_pod(spec)
                .await
                .with_context(|| format!("starting `{}`", target.display()));
            match started {
                Ok(pod) => pods.push(pod),
                Err(error) => {
                    // The pods already started are stopped, not abandoned.
                    for pod in &pods {
                        pod.kill();
                        pod.wait().await;
                    }
                    return Err(error);
                }
            }
        }

        let table = EventTable::for_pods(&pods);
        let printers: Vec<_> = pods
            .iter()
            .map(|pod| tokio::spawn(print_updates(pod.watch(), self.output, table)))
            .collect();
        if let Some(after) = self.stop_after {
            for pod in &pods {
                let pod = pod.clone();
                let host = host.clone();
                tokio::spawn(async move {
                    let status = pod.wait_running().await;
                    if !wasmlet::all_terminated(&status) {
                        host.sleep(after).await;
                        pod.delete(None);
                    }
                });
            }
        }

        let names: Vec<&str> = pods.iter().map(|pod| pod.name()).collect();
        let names = names.join(", ");
        let all_ended = async {
            let mut statuses = Vec::new();
            for pod in &pods {
                statuses.push(pod.wait().await);
            }
            statuses
        };
        let mut all_ended = std::pin::pin!(all_ended);
        let mut interrupts = 0;
        let statuses = loop {
            tokio::select! {
                statuses = &mut all_ended => break statuses,
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            interrupts += 1;
            if interrupts == 1 {
                eprintln!(
                    "wasmlet: stopping {} {names} gracefully; signal again to kill now",
                    if pods.len() == 1 { "pod" } else { "pods" }
                );
                // Each pod within its own grace period, all at once; the statuses come from
                // `all_ended`.
                let _stopping = host.shutdown(None);
            } else {
                eprintln!("wasmlet: killing {names}");
                host.kill_all();
            }
        };
        for printer in printers {
            let _ = printer.await;
        }
        if self.output == Output::Json {
            if statuses.len() == 1 {
                println!("{}", serde_json::to_string_pretty(&statuses[0])?);
            } else {
                println!("{}", serde_json::to_string_pretty(&statuses)?);
            }
        }
        // The first pod that did not succeed decides, in the order given.
        let code = statuses
            .iter()
            .zip(&pods)
            .map(|(status, pod)| exit_code(status, pod.spec()))
            .find(|code| *code != ExitCode::SUCCESS)
            .unwrap_or(ExitCode::SUCCESS);
        Ok(code)
    }
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

    fn for_pods(pods: &[wasmlet::Pod]) -> EventTable {
        let longest = pods
            .iter()
            .flat_map(|pod| {
                let spec = pod.spec();
                let pod_object = format!("pod/{}", spec.name()).len();
                let containers = spec.init_containers().iter().chain(spec.containers());
                std::iter::once(pod_object)
                    .chain(containers.map(move |c| pod_object + 1 + c.name().len()))
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

async fn print_updates(mut updates: wasmlet::Watch, output: Output, table: EventTable) {
    while let Some(update) = updates.next().await {
        match update {
            PodUpdate::Event(event) => {
                let mut stderr = std::io::stderr().lock();
                HEADER.call_once(|| {
                    let _ = writeln!(stderr, "{}", table.header());
                });
                let _ = writeln!(stderr, "{}", table.row(&event));
            }
            PodUpdate::Log(line) => {
                let text = format!("{} {}", line.prefix(), line.line);
                if output == Output::Json || line.stream == LogStream::Stderr {
                    eprintln!("{text}");
                } else {
                    println!("{text}");
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
