//! A container's HTTP server ([`Server`]): its listeners, a fresh handler instance for every
//! request, the readiness gate, and the drain on terminate. What it needs of the pod comes as a
//! [`Serving`].

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming};
use tokio_util::sync::CancellationToken;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::body::HyperIncomingBody;

use crate::clock::sleep;
use crate::events::{EventType, LogSource};
use crate::runtime::{
    Entry, HandlerResponse, HttpCall, InstanceEnd, InstanceGroup, KillSwitch, Launcher,
    LoadedComponent,
};
use crate::signal::Watched;

/// The body of every response a listener sends.
pub(crate) type ServerBody = UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// The header that marks the kubelet's own requests (its value is the host's secret).
pub(crate) const KUBELET_HEADER: &str = "wasmlet-kubelet";

/// Where a server reports events about its container: `(type, reason, container, message)`.
pub(crate) type EventSink = Arc<dyn Fn(EventType, &str, Option<&str>, String) + Send + Sync>;

/// What a server needs of whoever runs its container (the pod, for the lifecycle layer).
pub(crate) struct Serving {
    /// The container's `ready`: while it is false, requests from outside are answered 503.
    pub ready: Arc<AtomicBool>,
    /// Where the server's events go.
    pub events: EventSink,
    /// The address the listeners bind (the pod's IP).
    pub address: IpAddr,
    /// The secret that marks the kubelet's own requests, which pass the readiness gate.
    pub kubelet_token: String,
}

/// One run of a container's HTTP serving: its listeners and the requests in flight.
pub(crate) struct Server {
    launcher: Arc<Launcher>,
    component: Arc<LoadedComponent>,
    /// The container's `ready`, kept by the pod's status.
    ready: Arc<AtomicBool>,
    events: EventSink,
    kubelet_token: String,
    /// Cancelled when the drain begins (or the container ends): listeners close, connections
    /// finish their current request and close.
    draining: CancellationToken,
    /// Cancelled when the container run is over: connections still open (a client that does
    /// not read its response) are dropped.
    closed: CancellationToken,
    /// The handler instances: each killed alone when its request is abandoned, all with the
    /// container.
    handlers: InstanceGroup,
    in_flight: Watched<usize>,
    /// Where it listens (empty in deterministic mode).
    pub addresses: Vec<SocketAddr>,
    drain_began: Mutex<Option<(Instant, usize)>>,
    drained_reported: AtomicBool,
    /// Requests answered 503 because the container was not ready.
    pub rejected: AtomicU64,
    /// Requests whose handler failed (trapped, exited, answered an error code).
    pub failed: AtomicU64,
    /// Requests whose handler was killed (at the end of the grace period, or with the container).
    pub killed: AtomicU64,
}

impl Server {
    /// Starts serving `ports` (binding them, unless in deterministic mode) with instances of
    /// `component`. An error names the port that could not be bound.
    pub fn start(
        launcher: Arc<Launcher>,
        component: Arc<LoadedComponent>,
        ports: &[u16],
        serving: Serving,
    ) -> Result<Arc<Server>, String> {
        let runtime = launcher.runtime.clone();
        let mut listeners = Vec::new();
        if runtime.scheduling.binds_sockets() {
            let address = serving.address;
            // Registering with the reactor needs the guest runtime's context.
            let _runtime = runtime.guests.enter();
            for &port in ports {
                let listener = bind(SocketAddr::new(address, port))
                    .map_err(|error| format!("cannot listen on {address}:{port}: {error}"))?;
                listeners.push(listener);
            }
        }
        let server = Arc::new(Server {
            ready: serving.ready,
            events: serving.events,
            kubelet_token: serving.kubelet_token,
            component,
            draining: CancellationToken::new(),
            closed: CancellationToken::new(),
            handlers: InstanceGroup::default(),
            in_flight: Watched::new(0),
            addresses: listeners
                .iter()
                .filter_map(|listener| listener.local_addr().ok())
                .collect(),
            drain_began: Mutex::new(None),
            drained_reported: AtomicBool::new(false),
            rejected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            killed: AtomicU64::new(0),
            launcher,
        });
        for listener in listeners {
            runtime.guests.spawn(server.clone().accept(listener));
        }
        Ok(server)
    }

    fn name(&self) -> &str {
        &self.launcher.name
    }

    async fn accept(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let stream = tokio::select! {
                biased;
                () = self.draining.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    // Out of file descriptors, say: wait a little rather than spin.
                    Err(_) => {
                        sleep(&self.launcher.runtime.clock, Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(self.clone().serve_connection(stream));
        }
    }

    async fn serve_connection(self: Arc<Self>, stream: tokio::net::TcpStream) {
        let server = self.clone();
        let local = stream.local_addr().ok();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.serve(request, local).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            biased;
            _ = connection.as_mut() => return,
            () = self.draining.cancelled() => {}
        }
        // Draining: finish the request in progress, then close — or give up on it when the
        // container is gone.
        connection.as_mut().graceful_shutdown();
        tokio::select! {
            biased;
            _ = connection => {}
            () = self.closed.cancelled() => {}
        }
    }

    /// One request from a listener (which `local` is): through the readiness gate to a handler
    /// instance.
    async fn serve(
        self: Arc<Self>,
        mut request: Request<Incoming>,
        local: Option<SocketAddr>,
    ) -> Response<ServerBody> {
        let token = &self.kubelet_token;
        let from_kubelet = request
            .headers_mut()
            .remove(KUBELET_HEADER)
            .is_some_and(|value| value.as_bytes() == token.as_bytes());
        if !from_kubelet && !self.ready.load(Ordering::SeqCst) {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("container {} is not ready\n", self.name()),
            );
        }
        // wasi:http requires an authority; an HTTP/1.0 client may send no Host.
        if request.uri().authority().is_none()
            && !request.headers().contains_key(http::header::HOST)
            && let Some(local) = local
            && let Ok(host) = http::HeaderValue::from_str(&local.to_string())
        {
            request.headers_mut().insert(http::header::HOST, host);
        }
        let request = request.map(|body| body.map_err(Into::into).boxed_unsync());
        self.dispatch(request).await
    }

    /// Hands `request` to a new instance of the handler and returns its response, whose body
    /// streams as the guest writes it. The request counts as in flight until its handler has
    /// ended and its body is sent (or dropped).
    pub async fn dispatch(
        self: &Arc<Self>,
        request: Request<HyperIncomingBody>,
    ) -> Response<ServerBody> {
        let tracker = Arc::new(InFlight::begin(self.clone()));
        let (respond, mut response) = tokio::sync::oneshot::channel();
        let mut io = self
            .launcher
            .io(LogSource::Handler, self.launcher.argv(), false);
        io.http = Some(HttpCall { request, respond });
        let (switch, done) = self
            .launcher
            .spawn(self.component.clone(), Entry::Handle, io);
        let id = self.add_handler(switch);
        // A request dropped before its response is complete (a probe that timed out, a killed
        // hook, a client that hung up) leaves nobody waiting for its handler: the handler is
        // killed rather than left running on the container's memory.
        let abandon = AbandonOnDrop::new(self.clone(), id);
        // The handler's end is counted even if this request is abandoned: until then it is in
        // flight.
        let (end_sender, mut end_receiver) = tokio::sync::oneshot::channel();
        let watcher = HandlerWatcher {
            server: self.clone(),
            id,
            counted: false,
            _tracker: tracker.clone(),
        };
        tokio::spawn(async move {
            let mut watcher = watcher;
            let end = done.await.unwrap_or_else(|_| InstanceEnd::lost());
            watcher.counted = true;
            watcher.server.handler_ended(id, &end);
            let _ = end_sender.send(end);
        });
        tokio::select! {
            biased;
            answer = &mut response => match answer {
                Ok(answer) => self.respond(answer, tracker, abandon),
                // The instance is ending without an answer: say how it ended.
                Err(_) => {
                    let end = end_receiver.await.unwrap_or_else(|_| InstanceEnd::lost());
                    self.no_response(&end)
                }
            },
            end = &mut end_receiver => {
                let end = end.unwrap_or_else(|_| InstanceEnd::lost());
                // It may have answered just before it ended.
                match response.try_recv() {
                    Ok(answer) => self.respond(answer, tracker, abandon),
                    Err(_) => self.no_response(&end),
                }
            }
        }
    }

    /// The response to pass on; `abandon` goes with its body, so that the handler is killed if
    /// the body is dropped before its end.
    fn respond(
        &self,
        answer: HandlerResponse,
        tracker: Arc<InFlight>,
        abandon: AbandonOnDrop,
    ) -> Response<ServerBody> {
        match answer {
            Ok(response) => response.map(|body| {
                Tracked {
                    body,
                    _tracker: tracker,
                    abandon,
                }
                .boxed_unsync()
            }),
            Err(code) => {
                // Answered in full: the handler may finish in its own time.
                abandon.disarm();
                self.failed.fetch_add(1, Ordering::Relaxed);
                text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the handler answered with an error: {code:?}\n"),
                )
            }
        }
    }

    /// The answer to a request whose handler ended without a response.
    fn no_response(&self, end: &InstanceEnd) -> Response<ServerBody> {
        if matches!(
            end,
            InstanceEnd::Returned(Ok(())) | InstanceEnd::Exited(0) | InstanceEnd::NotImplemented
        ) {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let (status, message) = match end {
            InstanceEnd::Killed { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the handler was killed: container {} was stopped and its grace period ran out",
                    self.name()
                ),
            ),
            InstanceEnd::Trapped { message, .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the handler trapped: {message}"),
            ),
            InstanceEnd::Exited(code) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the handler exited with code {code} before it responded"),
            ),
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the handler returned without a response".to_string(),
            ),
        };
        let mut response = text_response(status, format!("{message}\n"));
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        response
    }

    fn add_handler(&self, switch: KillSwitch) -> u64 {
        self.handlers.add(switch)
    }

    /// Kills the handler `id` if it is still running: its request was abandoned.
    fn abandon(&self, id: u64) {
        self.handlers.kill_one(id);
    }

    /// Counts how a handler ended.
    fn handler_ended(&self, id: u64, end: &InstanceEnd) {
        let ended = self.handlers.ended(id);
        // Given up on before the container's kill: not one of the requests it cut short.
        let abandoned = ended.killed_alone && !ended.group_killed;
        match end {
            // Nobody was waiting for its answer any more.
            InstanceEnd::Killed { .. } if abandoned => {}
            InstanceEnd::Killed { .. } => {
                self.killed.fetch_add(1, Ordering::Relaxed);
            }
            InstanceEnd::Trapped { message, .. } => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                (self.events)(
                    EventType::Warning,
                    "HandlerFailed",
                    Some(self.name()),
                    format!("an HTTP handler trapped: {message}"),
                );
            }
            InstanceEnd::Exited(code) if *code != 0 => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            InstanceEnd::Returned(Err(_)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
            // Returned, or exited 0: whether it answered is the request's business.
            _ => {}
        }
    }

    /// Kills every handler still running (the container is being killed).
    pub fn kill_handlers(&self) {
        self.handlers.kill_all();
    }

    /// Terminate: stop accepting connections and let the requests in flight finish.
    pub fn begin_drain(&self) {
        if self.draining.is_cancelled() {
            return;
        }
        let in_flight = self.in_flight.get();
        *self.drain_began.lock().unwrap() = Some((self.launcher.runtime.clock.now(), in_flight));
        self.draining.cancel();
        let listening = if self.addresses.is_empty() {
            String::new()
        } else {
            let addresses: Vec<_> = self.addresses.iter().map(|a| a.to_string()).collect();
            format!(" on {}", addresses.join(", "))
        };
        (self.events)(
            EventType::Normal,
            "Draining",
            Some(self.name()),
            format!(
                "Stopped accepting connections{listening}; {in_flight} request{} in flight",
                plural(in_flight)
            ),
        );
    }

    /// Resolves when no request is in flight.
    pub async fn drained(&self) {
        let mut in_flight = self.in_flight.subscribe();
        let _ = in_flight.wait_for(|count| *count == 0).await;
    }

    /// Resolves when every handler instance has ended and been counted.
    pub async fn handlers_ended(&self) {
        self.handlers.all_ended().await;
    }

    /// Whether the drain has begun: the listeners are closed.
    pub fn draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Whether a request is in flight.
    pub fn busy(&self) -> bool {
        self.in_flight.get() > 0
    }

    /// The container run is over: close everything, and say what the drain came to.
    pub fn shut_down(&self) {
        self.draining.cancel();
        self.closed.cancel();
        self.kill_handlers();
        self.report_drained();
        let killed = self.killed.load(Ordering::Relaxed);
        if killed > 0 {
            (self.events)(
                EventType::Warning,
                "KilledRequests",
                Some(self.name()),
                format!(
                    "{killed} request{} still in flight when the container was killed; their \
                     clients got an error",
                    plural(killed as usize)
                ),
            );
        }
    }

    /// The event that closes a drain in which every request finished.
    fn report_drained(&self) {
        let Some((began, in_flight)) = *self.drain_began.lock().unwrap() else {
            return;
        };
        if self.busy() || self.drained_reported.swap(true, Ordering::SeqCst) {
            return;
        }
        let took = self
            .launcher
            .runtime
            .clock
            .now()
            .saturating_duration_since(began);
        // A drain with nothing in flight has nothing to report.
        if self.killed.load(Ordering::Relaxed) == 0 && in_flight > 0 {
            (self.events)(
                EventType::Normal,
                "Drained",
                Some(self.name()),
                format!(
                    "{in_flight} in-flight request{} finished in {}",
                    plural(in_flight),
                    crate::events::short_duration(took)
                ),
            );
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A listening socket that can be bound again at once after the container restarts.
fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match address.ip() {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// Counts a handler's end even if the task that waits for it is dropped (the guest runtime
/// shutting down), so that nobody waits for it forever.
struct HandlerWatcher {
    server: Arc<Server>,
    id: u64,
    counted: bool,
    _tracker: Arc<InFlight>,
}

impl Drop for HandlerWatcher {
    fn drop(&mut self) {
        if !self.counted {
            self.server.handler_ended(self.id, &InstanceEnd::lost());
        }
    }
}

/// Kills a request's handler when dropped while armed: the request was abandoned before its
/// response was complete.
struct AbandonOnDrop {
    server: Arc<Server>,
    handler: u64,
    /// Cleared once the response is complete; atomic because a body says so through `&self`
    /// ([`Body::is_end_stream`]).
    armed: AtomicBool,
}

impl AbandonOnDrop {
    fn new(server: Arc<Server>, handler: u64) -> Self {
        AbandonOnDrop {
            server,
            handler,
            armed: AtomicBool::new(true),
        }
    }

    fn disarm(&self) {
        self.armed.store(false, Ordering::Relaxed);
    }
}

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        if self.armed.load(Ordering::Relaxed) {
            self.server.abandon(self.handler);
        }
    }
}

/// A request in flight, until the last holder drops it.
pub(crate) struct InFlight(Arc<Server>);

impl InFlight {
    fn begin(server: Arc<Server>) -> Self {
        server.in_flight.send_if_modified(|count| {
            *count += 1;
            true
        });
        InFlight(server)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.send_if_modified(|count| {
            *count -= 1;
            true
        });
        if !self.0.busy() && self.0.draining.is_cancelled() {
            self.0.report_drained();
        }
    }
}

/// A response body that keeps its request in flight until it is sent or dropped, and kills
/// its handler if it is dropped before its end.
struct Tracked<B> {
    body: B,
    _tracker: Arc<InFlight>,
    abandon: AbandonOnDrop,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.abandon.disarm();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        let ended = self.body.is_end_stream();
        if ended {
            self.abandon.disarm();
        }
        ended
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

fn text_response(status: StatusCode, text: String) -> Response<ServerBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
