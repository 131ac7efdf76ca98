//! `cri-check`: drives containerd's CRI service — what the kubelet calls on a node — against
//! `containerd-shim-wasmlet-v1`, and checks what the kubelet would see. Run by
//! `shim/tests/containerd.sh` against its private containerd, whose CRI plugin has the runtime
//! handler `wasmlet` and a pause image of its own (no registry is reached).
//!
//! A pod sandbox with host network (its pause container, a native Linux process, runs under the
//! same shim), then in it: a cooperative guest stopped with a timeout (terminate, exit 0), a
//! spinning guest stopped with a timeout (SIGKILL at the timeout, exit 137), a command's output
//! and exit codes in the container's CRI log and status, and `ExecSync`. Each check prints an
//! `ok:` line; the first failure ends the run with a non-zero status, after removing the sandbox.
//!
//! Usage: `cri-check --socket PATH --logs DIR --image NAME [--handler NAME]`; the image holds
//! wasmlet's example components at its root (`/cooperative.wasm`, `/spinner.wasm`, …).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ImageSpec, KeyValue, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxState, PodSandboxStatusRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopContainerRequest,
    StopPodSandboxRequest, VersionRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// How long one CRI call may take (a container's start compiles its component).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    socket: PathBuf,
    logs: PathBuf,
    image: String,
    handler: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut socket = None;
    let mut logs = None;
    let mut image = None;
    let mut handler = "wasmlet".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--socket" => socket = Some(PathBuf::from(value)),
            "--logs" => logs = Some(PathBuf::from(value)),
            "--image" => image = Some(value),
            "--handler" => handler = value,
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(Args {
        socket: socket.context("--socket is required")?,
        logs: logs.context("--logs is required")?,
        image: image.context("--image is required")?,
        handler,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let result = async {
        let args = parse_args()?;
        let channel = connect(&args.socket).await?;
        check(RuntimeServiceClient::new(channel), &args).await
    };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("FAIL: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A gRPC channel to containerd's socket, as the kubelet's `--container-runtime-endpoint`.
async fn connect(socket: &Path) -> anyhow::Result<Channel> {
    let socket = socket.to_path_buf();
    // The URI is unused: every connection goes to the socket.
    Endpoint::try_from("http://[::]:0")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .context("connecting to containerd's CRI socket")
}

type Cri = RuntimeServiceClient<Channel>;

/// Runs the checks in a new sandbox, and removes the sandbox whatever they found.
async fn check(mut cri: Cri, args: &Args) -> anyhow::Result<()> {
    let version = call(cri.version(VersionRequest {
        version: "v1".into(),
    }))
    .await?;
    println!(
        "CRI: {} {} (API {})",
        version.runtime_name, version.runtime_version, version.runtime_api_version
    );
    let config = sandbox_config(&args.logs);
    let sandbox = call(cri.run_pod_sandbox(RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: args.handler.clone(),
    }))
    .await
    .context("RunPodSandbox")?
    .pod_sandbox_id;
    let result = in_sandbox(&mut cri, args, &sandbox, &config).await;
    let removed = async {
        call(cri.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        }))
        .await
        .context("StopPodSandbox")?;
        call(cri.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        }))
        .await
        .context("RemovePodSandbox")
    }
    .await;
    result?;
    removed?;
    println!("ok: CRI: StopPodSandbox and RemovePodSandbox end the pod and its pause container");
    Ok(())
}

async fn in_sandbox(
    cri: &mut Cri,
    args: &Args,
    sandbox: &str,
    config: &PodSandboxConfig,
) -> anyhow::Result<()> {
    let status = call(cri.pod_sandbox_status(PodSandboxStatusRequest {
        pod_sandbox_id: sandbox.into(),
        verbose: false,
    }))
    .await?
    .status
    .context("no sandbox status")?;
    ensure!(
        status.state == PodSandboxState::SandboxReady as i32,
        "the sandbox is not ready: {status:?}"
    );
    println!(
        "ok: CRI: RunPodSandbox with host network, handler {}: the pause container runs \
         natively under the shim (SANDBOX_READY)",
        args.handler
    );
    let pod = Pod {
        sandbox,
        config,
        image: &args.image,
        logs: &args.logs,
    };

    // A cooperative guest: StopContainer's SIGTERM delivers terminate, and it exits 0.
    let coop = pod
        .start(cri, "coop", &["/cooperative.wasm"], &[("CLEANUP_MS", "50")])
        .await?;
    pod.wait_log("coop", "run: started").await?;
    let status = container_status(cri, &coop).await?;
    ensure!(
        status.state == ContainerState::ContainerRunning as i32,
        "cooperative.wasm is not running: {status:?}"
    );
    println!("ok: CRI: CreateContainer and StartContainer: cooperative.wasm is CONTAINER_RUNNING");

    // ExecSync: the kubelet's exec probes and exec hooks.
    let exec = call(cri.exec_sync(ExecSyncRequest {
        container_id: coop.clone(),
        cmd: vec!["sh".into(), "-c".into(), "echo exec ran".into()],
        timeout: 10,
    }))
    .await;
    match exec {
        Ok(response)
            if response.exit_code == 0
                && String::from_utf8_lossy(&response.stdout).contains("exec ran") =>
        {
            println!("ok: CRI: ExecSync ran sh -c in the container");
        }
        Ok(response) => bail!("ExecSync: unexpected answer {response:?}"),
        // What the shim framework answers today: it serves no exec (docs/kubernetes.md).
        Err(error) if format!("{error:#}").contains("not supported") => {
            println!(
                "ok: CRI: ExecSync fails clearly, as the shim framework has no exec: {}",
                one_line(&format!("{error:#}"))
            );
        }
        Err(error) => return Err(error.context("ExecSync")),
    }

    let began = Instant::now();
    call(cri.stop_container(StopContainerRequest {
        container_id: coop.clone(),
        timeout: 10,
    }))
    .await
    .context("StopContainer of cooperative.wasm")?;
    let took = began.elapsed();
    let status = container_status(cri, &coop).await?;
    expect_exit(&status, 0, "Completed")?;
    pod.wait_log("coop", "terminate received (TerminationReason::PodDeleted)")
        .await?;
    println!(
        "ok: CRI: StopContainer (timeout 10 s): cooperative.wasm saw terminate and exited 0 \
         (Completed) in {} ms",
        took.as_millis()
    );

    // A guest that ignores terminate: SIGKILL at the end of the timeout, exit 137.
    let spin = pod.start(cri, "spin", &["/spinner.wasm"], &[]).await?;
    pod.wait_log("spin", "spinner: spinning").await?;
    let began = Instant::now();
    call(cri.stop_container(StopContainerRequest {
        container_id: spin.clone(),
        timeout: 2,
    }))
    .await
    .context("StopContainer of spinner.wasm")?;
    let took = began.elapsed();
    let status = container_status(cri, &spin).await?;
    expect_exit(&status, 137, "Error")?;
    ensure!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "spinner.wasm stopped after {took:?}, not at the 2 s timeout"
    );
    println!(
        "ok: CRI: StopContainer (timeout 2 s): spinner.wasm ignored terminate and was killed \
         at the timeout, exit 137, in {} ms",
        took.as_millis()
    );

    // A command runs to its end: its output is the container's CRI log, its exit code the
    // status's.
    let hello = pod.start(cri, "hello", &["/hello.wasm"], &[]).await?;
    let status = wait_exited(cri, &hello).await?;
    expect_exit(&status, 0, "Completed")?;
    // The image's environment (GREETING=Hello) reaches the guest.
    pod.wait_log("hello", "Hello from a plain wasi:cli command!")
        .await?;
    let trap = pod
        .start(cri, "trap", &["/faulty.wasm"], &[("FAULT", "trap")])
        .await?;
    let status = wait_exited(cri, &trap).await?;
    expect_exit(&status, 134, "Error")?;
    pod.wait_log("trap", "wasmlet: Error: wasm trap:").await?;
    println!(
        "ok: CRI: ContainerStatus: hello.wasm exited 0 (Completed), a trap 134 (Error); \
         their output and wasmlet's message are in the CRI logs"
    );

    for id in [&coop, &spin, &hello, &trap] {
        call(cri.remove_container(RemoveContainerRequest {
            container_id: id.to_string(),
        }))
        .await
        .context("RemoveContainer")?;
    }
    Ok(())
}

/// A pod as the kubelet describes it: host network, its logs under `logs`.
fn sandbox_config(logs: &Path) -> PodSandboxConfig {
    let pid = std::process::id();
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: format!("cri-check-{pid}"),
            uid: format!("cri-check-uid-{pid}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        // No hostname: with the host's network the pod has the host's UTS namespace, whose name
        // a container may not set (runc refuses the spec).
        log_directory: logs.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Pod<'a> {
    sandbox: &'a str,
    config: &'a PodSandboxConfig,
    image: &'a str,
    logs: &'a Path,
}

impl Pod<'_> {
    /// Creates and starts container `name` running `command`; its log is `<logs>/<name>.log`.
    async fn start(
        &self,
        cri: &mut Cri,
        name: &str,
        command: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<String> {
        let id = call(
            cri.create_container(CreateContainerRequest {
                pod_sandbox_id: self.sandbox.into(),
                config: Some(ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: name.into(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: self.image.into(),
                        ..Default::default()
                    }),
                    command: command.iter().map(|part| part.to_string()).collect(),
                    envs: env
                        .iter()
                        .map(|(key, value)| KeyValue {
                            key: key.to_string(),
                            value: value.to_string(),
                        })
                        .collect(),
                    log_path: format!("{name}.log"),
                    ..Default::default()
                }),
                sandbox_config: Some(self.config.clone()),
            }),
        )
        .await
        .with_context(|| format!("CreateContainer {name}"))?
        .container_id;
        call(cri.start_container(StartContainerRequest {
            container_id: id.clone(),
        }))
        .await
        .with_context(|| format!("StartContainer {name}"))?;
        Ok(id)
    }

    /// Waits until container `name`'s CRI log has a line containing `text`.
    async fn wait_log(&self, name: &str, text: &str) -> anyhow::Result<()> {
        let path = self.logs.join(format!("{name}.log"));
        let began = Instant::now();
        loop {
            let log = tokio::fs::read_to_string(&path).await.unwrap_or_default();
            if log.lines().any(|line| line.contains(text)) {
                return Ok(());
            }
            if began.elapsed() > Duration::from_secs(30) {
                bail!("{} has no line with {text:?}:\n{log}", path.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn container_status(cri: &mut Cri, id: &str) -> anyhow::Result<ContainerStatus> {
    call(cri.container_status(ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    }))
    .await
    .context("ContainerStatus")?
    .status
    .context("ContainerStatus without a status")
}

/// Waits for container `id` to exit, and gives its status.
async fn wait_exited(cri: &mut Cri, id: &str) -> anyhow::Result<ContainerStatus> {
    let began = Instant::now();
    loop {
        let status = container_status(cri, id).await?;
        if status.state == ContainerState::ContainerExited as i32 {
            return Ok(status);
        }
        if began.elapsed() > Duration::from_secs(30) {
            bail!("container {id} has not exited: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn expect_exit(status: &ContainerStatus, code: i32, reason: &str) -> anyhow::Result<()> {
    let name = status
        .metadata
        .as_ref()
        .map(|metadata| metadata.name.as_str())
        .unwrap_or("?");
    ensure!(
        status.state == ContainerState::ContainerExited as i32
            && status.exit_code == code
            && status.reason == reason,
        "{name}: expected CONTAINER_EXITED with exit code {code} ({reason}), got state {} exit \
         code {} reason {:?} message {:?}",
        status.state,
        status.exit_code,
        status.reason,
        status.message
    );
    Ok(())
}

/// A CRI call with a deadline; a gRPC error becomes an error naming its code and message.
async fn call<T>(
    request: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, request).await {
        Err(_) => bail!("no answer in {CALL_TIMEOUT:?}"),
        Ok(Err(status)) => bail!("{:?}: {}", status.code(), status.message()),
        Ok(Ok(response)) => Ok(response.into_inner()),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
