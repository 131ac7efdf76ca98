//! The kubelet's own requests to a pod's containers: `httpGet` hooks and probes, and `tcpSocket`
//! probes — over TCP, or in deterministic mode in-process to the container's [`Server`]. What
//! they need of the pod comes through [`PodNetwork`].

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Body;
use wasmtime_wasi_http::io::TokioIo;

use super::server::{KUBELET_HEADER, Server};
use crate::clock::sleep;
use crate::manifest::HttpGet;
use crate::runtime::Runtime;

/// How much of a probe's response body the kubelet keeps for its message (Kubernetes: 10 KiB).
const PROBE_BODY_LIMIT: usize = 10 * 1024;

/// The pod as the kubelet's requests see it: its runtime, its address, and its containers'
/// servers by port.
pub(crate) trait PodNetwork: Send + Sync + 'static {
    /// The runtime its instances run on (the clock, the guest runtime, deterministic mode).
    fn runtime(&self) -> &Runtime;
    /// The address its listeners are bound to, as configured (it stands for the pod's IP).
    fn address(&self) -> IpAddr;
    /// The secret that marks the kubelet's own requests.
    fn kubelet_token(&self) -> &str;
    /// The server of its container that serves `port`, if one runs.
    fn server_on(&self, port: u16) -> Option<Arc<Server>>;
}

/// What an `httpGet` got back.
#[derive(Debug)]
pub(crate) struct GetResult {
    pub status: StatusCode,
    /// The start of the body (at most 10 KiB).
    pub body: String,
    pub took: Duration,
}

/// The kubelet's `httpGet`: `User-Agent: kube-probe/…` for probes, `kube-lifecycle/…` for hooks,
/// unless the action's headers set one. `Err` is a transport error (or the timeout).
pub(crate) async fn http_get<P: PodNetwork>(
    pod: &Arc<P>,
    get: &HttpGet,
    user_agent: &str,
    timeout: Option<Duration>,
) -> Result<GetResult, String> {
    let clock = pod.runtime().clock.clone();
    let started = clock.now();
    let url = get_url(pod, get);
    let attempt = async {
        if !pod.runtime().scheduling.binds_sockets() {
            get_in_process(pod.as_ref(), get, user_agent).await
        } else {
            let pod = pod.clone();
            let get = get.clone();
            let user_agent = user_agent.to_string();
            // Sockets belong to the guest runtime, which has an I/O driver whatever the
            // embedder's runtime has. A request given up on (timed out, or its hook killed)
            // closes its connection, and the server then kills its handler.
            let request = pod
                .runtime()
                .guests
                .clone()
                .spawn(async move { get_over_tcp(pod.as_ref(), &get, &user_agent).await });
            AbortOnDrop(request)
                .await
                .map_err(|error| format!("the request task failed: {error}"))?
        }
    };
    let expired = async {
        match timeout {
            Some(timeout) => sleep(&clock, timeout).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        biased;
        result = attempt => result,
        () = expired => Err(format!(
            "Get \"{url}\": context deadline exceeded (timeout {})",
            crate::events::short_duration(timeout.unwrap_or_default())
        )),
    };
    result
        .map(|(status, body)| GetResult {
            status,
            body,
            took: clock.now().saturating_duration_since(started),
        })
        .map_err(|error| {
            if error.starts_with("Get \"") {
                error
            } else {
                format!("Get \"{url}\": {error}")
            }
        })
}

/// `http://host:port/path`, as the kubelet writes it in its messages.
pub(crate) fn get_url<P: PodNetwork>(pod: &Arc<P>, get: &HttpGet) -> String {
    format!("http://{}{}", authority(pod.as_ref(), get), get.path)
}

/// `host:port` of an `httpGet` (`[v6]:port` for an IPv6 address); the pod's address when the
/// action names no host.
fn authority(pod: &dyn PodNetwork, get: &HttpGet) -> String {
    match &get.host {
        Some(host) if host.contains(':') => format!("[{host}]:{}", get.port),
        Some(host) => format!("{host}:{}", get.port),
        None => SocketAddr::new(pod_address(pod), get.port).to_string(),
    }
}

/// The address that stands for the pod's IP: where its listeners are bound (loopback, unless
/// the host was given another address; an unspecified address is reached on loopback).
fn pod_address(pod: &dyn PodNetwork) -> IpAddr {
    match pod.address() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        address => address,
    }
}

fn get_request<B>(
    pod: &dyn PodNetwork,
    get: &HttpGet,
    user_agent: &str,
    body: B,
) -> Result<Request<B>, String> {
    let authority = authority(pod, get);
    let mut builder = Request::get(get.path.as_str())
        .header(http::header::HOST, authority.as_str())
        .header(http::header::USER_AGENT, user_agent)
        .header(http::header::ACCEPT, "*/*");
    if get.host.is_none() {
        builder = builder.header(KUBELET_HEADER, pod.kubelet_token());
    }
    let mut request = builder.body(body).map_err(|error| error.to_string())?;
    // The action's own headers replace the defaults (Kubernetes lets them set Host and
    // User-Agent too).
    for (name, value) in &get.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let value = http::HeaderValue::from_str(value).map_err(|e| e.to_string())?;
        request.headers_mut().insert(name, value);
    }
    Ok(request)
}

async fn get_over_tcp(
    pod: &dyn PodNetwork,
    get: &HttpGet,
    user_agent: &str,
) -> Result<(StatusCode, String), String> {
    let stream = connect(pod, get.host.as_deref(), get.port).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| error.to_string())?;
    // The connection goes with the request.
    let _connection = AbortOnDrop(tokio::spawn(connection));
    let request = get_request(pod, get, user_agent, http_body_util::Empty::<Bytes>::new())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status();
    let body = read_prefix(response.into_body()).await;
    Ok((status, body))
}

async fn get_in_process(
    pod: &dyn PodNetwork,
    get: &HttpGet,
    user_agent: &str,
) -> Result<(StatusCode, String), String> {
    let Some(server) = pod.server_on(get.port).filter(|_| get.host.is_none()) else {
        return Err(refused(pod, get.host.as_deref(), get.port));
    };
    let body = http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut request = get_request(pod, get, user_agent, body)?;
    // In-process, the request is the kubelet's by construction.
    request.headers_mut().remove(KUBELET_HEADER);
    let response = server.dispatch(request).await;
    let status = response.status();
    let body = read_prefix(response.into_body()).await;
    Ok((status, body))
}

/// The first 10 KiB of a body, as text; the rest is read and dropped.
async fn read_prefix<B>(body: B) -> String
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut body = body;
    let mut prefix = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data()
            && prefix.len() < PROBE_BODY_LIMIT
        {
            let room = PROBE_BODY_LIMIT - prefix.len();
            prefix.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    String::from_utf8_lossy(&prefix).into_owned()
}

/// A task that is aborted when its handle is dropped: the request it makes is given up on.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn refused(pod: &dyn PodNetwork, host: Option<&str>, port: u16) -> String {
    let host = host.map_or_else(|| pod_address(pod).to_string(), str::to_string);
    format!("dial tcp {host}:{port}: connect: connection refused")
}

async fn connect(
    pod: &dyn PodNetwork,
    host: Option<&str>,
    port: u16,
) -> Result<tokio::net::TcpStream, String> {
    let stream = match host {
        Some(host) => tokio::net::TcpStream::connect((host, port)).await,
        None => tokio::net::TcpStream::connect(SocketAddr::new(pod_address(pod), port)).await,
    };
    stream.map_err(|error| {
        if error.kind() == std::io::ErrorKind::ConnectionRefused {
            refused(pod, host, port)
        } else {
            let host = host.map_or_else(|| pod_address(pod).to_string(), str::to_string);
            format!("dial tcp {host}:{port}: {error}")
        }
    })
}

/// The kubelet's `tcpSocket` probe: `Ok` when a connection opens within `timeout`.
pub(crate) async fn tcp_check<P: PodNetwork>(
    pod: &Arc<P>,
    host: Option<&str>,
    port: u16,
    timeout: Duration,
) -> Result<(), String> {
    let clock = pod.runtime().clock.clone();
    if !pod.runtime().scheduling.binds_sockets() {
        return match pod.server_on(port).filter(|_| host.is_none()) {
            Some(server) if !server.draining() => Ok(()),
            _ => Err(refused(pod.as_ref(), host, port)),
        };
    }
    let attempt = {
        let pod = pod.clone();
        let host = host.map(str::to_string);
        AbortOnDrop(
            pod.runtime()
                .guests
                .clone()
                .spawn(async move { connect(pod.as_ref(), host.as_deref(), port).await.map(drop) }),
        )
    };
    tokio::select! {
        biased;
        joined = attempt => joined.map_err(|error| error.to_string())?,
        () = sleep(&clock, timeout) => Err(format!(
            "dial tcp {}:{port}: i/o timeout",
            host.map_or_else(|| pod_address(pod.as_ref()).to_string(), str::to_string)
        )),
    }
}
