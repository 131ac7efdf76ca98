//! The parts of a container that reach it: its `ports[]`, the ports hooks and probes name,
//! `httpGet` and `exec` actions, lifecycle handlers and probes, with Kubernetes' defaults and
//! limits.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, LifecycleHandler};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::values::{component_path, starts_as_wasm};
use super::{ExecTarget, Handler, HttpGet, PortSpec, Probe, ProbeAction, ProbeKind, Problem};

/// The container's `ports[]`: TCP, numbered 1–65535, names unique IANA service names.
pub(super) fn port_specs(
    container: &Container,
    at: &str,
    problems: &mut Vec<Problem>,
) -> Vec<PortSpec> {
    let mut ports = Vec::new();
    let mut problem = |path: String, message: String| problems.push(Problem { path, message });
    for (index, port) in container.ports.iter().flatten().enumerate() {
        let at = format!("{at}.ports[{index}]");
        match port.protocol.as_deref() {
            None | Some("TCP") => {}
            Some(other) => problem(
                format!("{at}.protocol"),
                format!("`{other}` is not supported: wasmlet serves HTTP over TCP; use TCP"),
            ),
        }
        let Ok(number) = u16::try_from(port.container_port)
            .map_err(|_| ())
            .and_then(|n| if n == 0 { Err(()) } else { Ok(n) })
        else {
            problem(
                format!("{at}.containerPort"),
                format!(
                    "{} is not a port number; expected 1 to 65535",
                    port.container_port
                ),
            );
            continue;
        };
        // A container's port is already the host's (on the host's address): a `hostPort` that
        // says the same holds as it is; another number would need a second listener.
        if let Some(host_port) = port.host_port.filter(|host_port| *host_port != 0)
            && host_port != port.container_port
        {
            problem(
                format!("{at}.hostPort"),
                format!(
                    "{host_port} differs from containerPort {number}: wasmlet serves a \
                     container's port on the host's address under its own number; set \
                     `hostPort: {number}` or drop it"
                ),
            );
        }
        if ports.iter().any(|p: &PortSpec| p.port == number) {
            problem(
                format!("{at}.containerPort"),
                format!("port {number} is listed twice"),
            );
            continue;
        }
        let name = port.name.clone().filter(|name| !name.is_empty());
        if let Some(name) = &name {
            if let Err(why) = check_port_name(name) {
                problem(format!("{at}.name"), why);
            } else if ports.iter().any(|p| p.name.as_ref() == Some(name)) {
                problem(
                    format!("{at}.name"),
                    format!("duplicate port name `{name}`"),
                );
            }
        }
        ports.push(PortSpec { name, port: number });
    }
    ports
}

/// Kubernetes' IANA_SVC_NAME: at most 15 lowercase letters, digits and '-', with a letter, no
/// '-' at either end and no "--".
fn check_port_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid port name: at most 15 lowercase letters, digits and '-', \
             with at least one letter (like `http` or `metrics-1`)"
        ))
    }
}

/// A port given by number or by the name of one of the container's `ports[]`.
fn resolve_port(port: &IntOrString, at: &str, ports: &[PortSpec]) -> Result<u16, Problem> {
    let problem = |message: String| Problem {
        path: at.to_string(),
        message,
    };
    match port {
        IntOrString::Int(number) => {
            u16::try_from(*number)
                .ok()
                .filter(|n| *n != 0)
                .ok_or_else(|| {
                    problem(format!(
                        "{number} is not a port number; expected 1 to 65535"
                    ))
                })
        }
        IntOrString::String(name) => {
            if let Ok(number) = name.parse::<u16>() {
                return Ok(number).and_then(|n| {
                    if n == 0 {
                        Err(problem(
                            "0 is not a port number; expected 1 to 65535".into(),
                        ))
                    } else {
                        Ok(n)
                    }
                });
            }
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.port)
                .ok_or_else(|| {
                    let names: Vec<_> = ports.iter().filter_map(|p| p.name.as_deref()).collect();
                    problem(if names.is_empty() {
                        format!(
                            "no port named `{name}`: the container's ports[] name none; give a \
                             number or name a port"
                        )
                    } else {
                        format!(
                            "no port named `{name}`; the container's ports are named {}",
                            names.join(", ")
                        )
                    })
                })
        }
    }
}

/// An `httpGet` action of a hook or a probe.
fn http_get(action: &HTTPGetAction, at: &str, ports: &[PortSpec]) -> Result<HttpGet, Vec<Problem>> {
    let mut problems = Vec::new();
    match action.scheme.as_deref() {
        None | Some("HTTP") => {}
        Some(other) => problems.push(Problem {
            path: format!("{at}.scheme"),
            message: format!(
                "`{other}` is not supported: wasmlet's listeners serve plain HTTP (no TLS); use \
                 HTTP"
            ),
        }),
    }
    let port = resolve_port(&action.port, &format!("{at}.port"), ports)
        .map_err(|problem| problems.push(problem))
        .ok();
    let path = match action.path.as_deref() {
        None | Some("") => "/".to_string(),
        Some(path) if path.starts_with('/') => path.to_string(),
        // Kubernetes prefixes a relative path with '/'.
        Some(path) => format!("/{path}"),
    };
    if path.parse::<http::uri::PathAndQuery>().is_err() {
        problems.push(Problem {
            path: format!("{at}.path"),
            message: format!("`{path}` is not a valid URL path"),
        });
    }
    let host = action.host.clone().filter(|host| !host.is_empty());
    let mut headers = Vec::new();
    for (index, header) in action.http_headers.iter().flatten().enumerate() {
        if http::HeaderName::from_bytes(header.name.as_bytes()).is_err() {
            problems.push(Problem {
                path: format!("{at}.httpHeaders[{index}].name"),
                message: format!("`{}` is not a valid HTTP header name", header.name),
            });
        } else if http::HeaderValue::from_str(&header.value).is_err() {
            problems.push(Problem {
                path: format!("{at}.httpHeaders[{index}].value"),
                message: "not a valid HTTP header value (control characters?)".into(),
            });
        } else {
            headers.push((header.name.clone(), header.value.clone()));
        }
    }
    match port {
        Some(port) if problems.is_empty() => Ok(HttpGet {
            host,
            port,
            path,
            headers,
        }),
        _ => Err(problems),
    }
}

/// A probe, with Kubernetes' defaults and limits: 0 or absent means the default.
pub(super) fn probe_spec(
    probe: &k8s_openapi::api::core::v1::Probe,
    kind: ProbeKind,
    at: &str,
    base: &Path,
    ports: &[PortSpec],
) -> Result<Probe, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut seconds = |field: &str, value: Option<i32>, default: u32| -> u32 {
        match value {
            None | Some(0) => default,
            Some(n) if n < 0 => {
                problems.push(Problem {
                    path: format!("{at}.{field}"),
                    message: format!("must be 0 (the default) or more, got {n}"),
                });
                default
            }
            Some(n) => n as u32,
        }
    };
    let initial_delay = seconds("initialDelaySeconds", probe.initial_delay_seconds, 0);
    let period = seconds("periodSeconds", probe.period_seconds, 10);
    let timeout = seconds("timeoutSeconds", probe.timeout_seconds, 1);
    let success_threshold = seconds("successThreshold", probe.success_threshold, 1);
    let failure_threshold = seconds("failureThreshold", probe.failure_threshold, 3);
    if kind != ProbeKind::Readiness && success_threshold != 1 {
        problems.push(Problem {
            path: format!("{at}.successThreshold"),
            message: format!(
                "must be 1 for a {} probe, got {success_threshold}",
                kind.name()
            ),
        });
    }
    let termination_grace_period = match probe.termination_grace_period_seconds {
        None => None,
        Some(_) if kind == ProbeKind::Readiness => {
            problems.push(Problem {
                path: format!("{at}.terminationGracePeriodSeconds"),
                message: "only liveness and startup probes may set it (a readiness probe kills \
                          nothing)"
                    .into(),
            });
            None
        }
        Some(n) if n < 1 => {
            problems.push(Problem {
                path: format!("{at}.terminationGracePeriodSeconds"),
                message: format!("must be 1 or more, got {n}"),
            });
            None
        }
        Some(n) => Some(Duration::from_secs(n as u64)),
    };
    let set = [
        probe.exec.is_some(),
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.grpc.is_some(),
    ];
    let action = match set.iter().filter(|s| **s).count() {
        0 => Err(vec![Problem {
            path: at.into(),
            message: "needs exactly one action: exec, httpGet or tcpSocket".into(),
        }]),
        1 => {
            if let Some(exec) = &probe.exec {
                exec_action(exec.command.clone().unwrap_or_default(), at, base)
                    .map(|(command, target)| ProbeAction::Exec { command, target })
            } else if let Some(get) = &probe.http_get {
                http_get(get, &format!("{at}.httpGet"), ports).map(ProbeAction::HttpGet)
            } else if let Some(tcp) = &probe.tcp_socket {
                resolve_port(&tcp.port, &format!("{at}.tcpSocket.port"), ports)
                    .map(|port| ProbeAction::TcpSocket {
                        host: tcp.host.clone().filter(|host| !host.is_empty()),
                        port,
                    })
                    .map_err(|problem| vec![problem])
            } else {
                // grpc was reported by the field check.
                Err(vec![Problem {
                    path: at.into(),
                    message: "this action is not supported; use exec, httpGet or tcpSocket".into(),
                }])
            }
        }
        _ => Err(vec![Problem {
            path: at.into(),
            message: "has more than one action; give exactly one of exec, httpGet or tcpSocket"
                .into(),
        }]),
    };
    match action {
        Ok(action) if problems.is_empty() => Ok(Probe {
            action,
            initial_delay: Duration::from_secs(initial_delay.into()),
            period: Duration::from_secs(period.into()),
            timeout: Duration::from_secs(timeout.into()),
            success_threshold,
            failure_threshold,
            termination_grace_period,
        }),
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

pub(super) fn lifecycle_handler(
    handler: &LifecycleHandler,
    at: &str,
    base: &Path,
    grace: Duration,
    ports: &[PortSpec],
) -> Result<Handler, Vec<Problem>> {
    let set = [
        handler.exec.is_some(),
        handler.http_get.is_some(),
        handler.sleep.is_some(),
        handler.tcp_socket.is_some(),
    ];
    let fail = |path: String, message: String| Err(vec![Problem { path, message }]);
    match set.iter().filter(|s| **s).count() {
        0 => {
            return fail(
                at.into(),
                "needs exactly one handler: exec, httpGet or sleep".into(),
            );
        }
        1 => {}
        _ => {
            return fail(
                at.into(),
                "has more than one handler; give exactly one of exec, httpGet or sleep".into(),
            );
        }
    }
    if let Some(get) = &handler.http_get {
        return http_get(get, &format!("{at}.httpGet"), ports).map(Handler::HttpGet);
    }
    if let Some(sleep) = &handler.sleep {
        let seconds = sleep.seconds;
        if seconds < 0 {
            return fail(
                format!("{at}.sleep.seconds"),
                format!("must be 0 or more, got {seconds}"),
            );
        }
        let duration = Duration::from_secs(seconds as u64);
        if duration > grace {
            return fail(
                format!("{at}.sleep.seconds"),
                format!(
                    "{seconds} s is longer than the grace period ({} s); Kubernetes requires \
                     sleep.seconds <= terminationGracePeriodSeconds",
                    grace.as_secs()
                ),
            );
        }
        return Ok(Handler::Sleep(duration));
    }
    if let Some(exec) = &handler.exec {
        let (command, target) = exec_action(exec.command.clone().unwrap_or_default(), at, base)?;
        return Ok(Handler::Exec { command, target });
    }
    // tcpSocket was reported by the field check.
    fail(
        at.into(),
        "this handler is not supported; use exec, httpGet or sleep".into(),
    )
}

/// An `exec` action's command and what runs it (see [`ExecTarget`]).
fn exec_action(
    command: Vec<String>,
    at: &str,
    base: &Path,
) -> Result<(Vec<String>, ExecTarget), Vec<Problem>> {
    let fail = |path: String, message: String| Err(vec![Problem { path, message }]);
    let Some(program) = command.first() else {
        return fail(
            format!("{at}.exec.command"),
            "required: the command to run (`sh -c …`, a component path, or a command of \
                 the container's own component)"
                .into(),
        );
    };
    if matches!(program.as_str(), "sh" | "/bin/sh" | "/usr/bin/sh") {
        return Ok((command, ExecTarget::Shell));
    }
    match component_path(base, program) {
        Ok(component) if !starts_as_wasm(&component) => fail(
            format!("{at}.exec.command[0]"),
            format!(
                "`{program}` is not a WebAssembly component; exec runs `sh` (wasmlet's \
                     bundled shell), a component file, or a command of the container's own \
                     component (a bare name)"
            ),
        ),
        Ok(component) => Ok((command, ExecTarget::Component(component))),
        // Clearly meant as a file (a component, or a program of an image): a typo or another
        // shell must not run the app instead.
        Err(why) if program.ends_with(".wasm") => fail(format!("{at}.exec.command[0]"), why),
        Err(_) if program.contains('/') => fail(
            format!("{at}.exec.command[0]"),
            format!(
                "`{program}` is neither `sh` (wasmlet's bundled shell) nor a component file; \
                     exec runs `sh`, a component (a path relative to the manifest), or a \
                     command of the container's own component (a bare name)"
            ),
        ),
        Err(_) => Ok((command, ExecTarget::Container)),
    }
}
