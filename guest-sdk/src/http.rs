//! Serve HTTP: implement [`Handler`] and call [`export_http!`](crate::export_http). wasmlet
//! serves the component on its container's `ports[]`, with a fresh instance for every request;
//! `httpGet` hooks and probes reach the same handler.
//!
//! [`Handler::handle`] gets the whole request and returns the whole response, which suits
//! small APIs, health checks and plugins. For streaming bodies, implement the raw
//! [`bindings::exports::wasi::http::incoming_handler::Guest`] yourself and export it with
//! [`bindings::export_http_handler!`].
//!
//! ```no_run
//! use wasmlet_sdk::http::{Handler, Request, Response};
//!
//! struct Hello;
//!
//! impl Handler for Hello {
//!     fn handle(request: Request) -> Response {
//!         match request.path() {
//!             "/healthz" => Response::text(200, "ok\n"),
//!             _ => Response::text(200, format!("hello from {}\n", request.path())),
//!         }
//!     }
//! }
//!
//! wasmlet_sdk::export_http!(Hello);
//! ```
//!
//! A component may export both an [`App`](crate::App) (with [`export!`](crate::export)) and a
//! handler: `run` is the container's main process and the handler serves its requests.

/// Raw bindings of `wasi:http` (the `wasmlet:lifecycle/http-handler` world).
#[allow(missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "wasmlet:lifecycle/http-handler",
        pub_export_macro: true,
        export_macro_name: "export_http_handler",
        default_bindings_module: "wasmlet_sdk::http::bindings",
        runtime_path: "wasmlet_sdk::wit_bindgen::rt",
        with: {
            "wasi:io/poll@0.2.12": crate::bindings::wasi::io::poll,
            "wasi:clocks/monotonic-clock@0.2.12": crate::bindings::wasi::clocks::monotonic_clock,
        },
        generate_all,
    });
}

use bindings::exports::wasi::http::incoming_handler::{IncomingRequest, ResponseOutparam};
use bindings::wasi::http::types::{Fields, IncomingBody, Method, OutgoingBody, OutgoingResponse};
use bindings::wasi::io::streams::StreamError;

/// An HTTP request, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path with its query, as sent: `/items?limit=3`.
    pub path_with_query: String,
    /// The headers, in order (values as text, lossily).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// The path without the query: `/items`.
    pub fn path(&self) -> &str {
        self.path_with_query
            .split_once('?')
            .map_or(self.path_with_query.as_str(), |(path, _)| path)
    }

    /// The value of query parameter `name` (not percent-decoded): `limit` of `/items?limit=3`
    /// is `3`.
    pub fn query(&self, name: &str) -> Option<&str> {
        let (_, query) = self.path_with_query.split_once('?')?;
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// An HTTP response, sent whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status` and `body`, and no headers.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response::new(status, text.into()).with_header("content-type", "text/plain; charset=utf-8")
    }

    /// The same response with one more header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// An HTTP handler. Each call runs in an instance of its own (like a process per request), with
/// the container's files, env and args; it can ask whether the container is stopping
/// ([`termination_requested`](crate::termination_requested)).
pub trait Handler {
    /// Answers one request.
    fn handle(request: Request) -> Response;
}

/// Exports `$handler` (a type implementing [`http::Handler`](crate::http::Handler)) as the
/// component's `wasi:http/incoming-handler`.
#[macro_export]
macro_rules! export_http {
    ($handler:ty) => {
        const _: () = {
            struct WasmletHttp;

            impl $crate::http::bindings::exports::wasi::http::incoming_handler::Guest for WasmletHttp {
                fn handle(
                    request: $crate::http::bindings::exports::wasi::http::incoming_handler::IncomingRequest,
                    response_out: $crate::http::bindings::exports::wasi::http::incoming_handler::ResponseOutparam,
                ) {
                    $crate::http::__serve::<$handler>(request, response_out)
                }
            }

            $crate::http::bindings::export_http_handler!(
                WasmletHttp with_types_in $crate::http::bindings
            );
        };
    };
}

/// Reads the request, calls the handler, writes its response.
#[doc(hidden)]
pub fn __serve<H: Handler>(request: IncomingRequest, response_out: ResponseOutparam) {
    let request = read_request(request);
    let response = H::handle(request);
    write_response(response, response_out);
}

fn read_request(request: IncomingRequest) -> Request {
    let method = match request.method() {
        Method::Get => "GET".to_string(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other,
    };
    let path_with_query = request.path_with_query().unwrap_or_else(|| "/".into());
    let headers = request
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect();
    let mut body = Vec::new();
    if let Ok(incoming) = request.consume() {
        if let Ok(stream) = incoming.stream() {
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => body.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(_)) => break,
                }
            }
        }
        IncomingBody::finish(incoming);
    }
    Request {
        method,
        path_with_query,
        headers,
        body,
    }
}

fn write_response(response: Response, response_out: ResponseOutparam) {
    let headers: Vec<(String, Vec<u8>)> = response
        .headers
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    let fields = Fields::from_list(&headers).unwrap_or_else(|_| Fields::new());
    let outgoing = OutgoingResponse::new(fields);
    let _ = outgoing.set_status_code(response.status);
    let Ok(body) = outgoing.body() else {
        return;
    };
    ResponseOutparam::set(response_out, Ok(outgoing));
    if let Ok(stream) = body.write() {
        // `blocking-write-and-flush` takes at most 4096 bytes at a time.
        for chunk in response.body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                return;
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);
}
