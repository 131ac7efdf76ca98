//! HTTP over real loopback: serving, the readiness gate, httpGet hooks and probes, and the drain
//! on delete (the requests in flight finish; those still running at the deadline fail and are
//! counted).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use wasmlet::{Pod, PodUpdate};

use crate::support::{events, finished, history, lines, spec, start, terminated, wait_for_event};

/// A port nobody listens on now (the OS's pick, released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on a connection of its own: the status and the body, or the transport error.
async fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    get_with(port, path, &[]).await
}

async fn get_with(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(wasmtime_wasi_http::io::TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let mut request = http::Request::get(path).header("host", format!("127.0.0.1:{port}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new()).unwrap())
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A pod of one http-hello container serving `port`, with more container YAML.
fn web(name: &str, port: u16, grace_seconds: u64, extra: &str) -> wasmlet::PodSpec {
    let extra: String = extra
        .lines()
        .map(|line| format!("      {line}\n"))
        .collect();
    spec(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  \
         terminationGracePeriodSeconds: {grace_seconds}\n  containers:\n    - name: web\n      \
         image: ../../target/components/http-hello.wasm\n      ports: [{{containerPort: {port}}}]\n{extra}"
    ))
}

fn ready(pod: &Pod) -> bool {
    pod.status()
        .container_statuses
        .is_some_and(|all| all.iter().all(|c| c.ready))
}

async fn wait_ready(pod: &Pod) {
    tokio::time::timeout(
        Duration::from_secs(20),
        pod.wait_until(|status| {
            status
                .container_statuses
                .as_ref()
                .is_some_and(|all| all.iter().all(|c| c.ready))
        }),
    )
    .await
    .expect("the container should become ready");
}

/// Waits until the pod has logged `count` lines containing `text`.
async fn wait_for_lines(pod: &Pod, text: &str, count: usize) {
    let mut watch = pod.watch();
    let mut seen = 0;
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(update) = watch.next().await {
            if let PodUpdate::Log(line) = update
                && line.line.contains(text)
            {
                seen += 1;
                if seen == count {
                    return;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("expected {count} lines with {text:?}, saw {seen}"));
}

fn event_message(pod_events: &[wasmlet::Event], reason: &str) -> Option<String> {
    pod_events
        .iter()
        .find(|event| event.reason == reason)
        .map(|event| event.message.clone())
}

#[tokio::test]
async fn the_listener_answers_503_until_the_readiness_probe_passes() {
    let port = free_port();
    let pod = start(web(
        "gated",
        port,
        5,
        &format!(
            "readinessProbe:\n  httpGet: {{path: /healthz, port: {port}}}\n  \
             initialDelaySeconds: 5\n  periodSeconds: 1"
        ),
    ))
    .await;
    pod.wait_running().await;
    // The probe waits 5 s: until then the container is not ready, and the gate says so — even
    // to a client that guesses at the kubelet's header.
    let (status, body) = get_with(port, "/", &[("wasmlet-kubelet", "guess")])
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("container web is not ready"), "{body}");
    assert!(!ready(&pod));
    wait_ready(&pod).await;
    assert_eq!(
        get(port, "/").await.unwrap(),
        (200, "hello from wasmlet\n".into())
    );
    // The probe's own requests passed the gate; their header never reached the guest.
    let (_, echoed) = get(port, "/echo").await.unwrap();
    assert!(!echoed.contains("wasmlet-kubelet"), "{echoed}");
    pod.delete(None);
    let status = finished(&pod).await;
    let web = &status.container_statuses.unwrap()[0];
    assert_eq!(
        web.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_100_requests_in_flight_finish_and_refuses_new_connections() {
    let port = free_port();
    let pod = start(web("drain", port, 30, "")).await;
    wait_ready(&pod).await;
    // Each request asks for a sleep of its own length, so that each answer says whose it is.
    let sleeps: Vec<u64> = (4000..4100).collect();
    let clients: Vec<_> = sleeps
        .iter()
        .map(|ms| {
            let path = format!("/sleep?ms={ms}");
            tokio::spawn(async move { get(port, &path).await })
        })
        .collect();
    // Every request has reached its handler before the delete (4 s each: even on a loaded
    // machine none has finished by then).
    wait_for_lines(&pod, "sleeping 40", 100).await;
    pod.delete(Some(Duration::from_secs(30)));
    tokio::time::timeout(
        Duration::from_secs(10),
        pod.wait_until(|status| {
            !status
                .container_statuses
                .as_ref()
                .is_some_and(|all| all[0].ready)
        }),
    )
    .await
    .unwrap();
    // The drain has begun: the listener is closed, so a new connection is refused (or, caught
    // in the closing listener's backlog, reset).
    wait_for_event(&pod, "Draining").await;
    let refused = get(port, "/").await;
    assert!(refused.is_err(), "{refused:?}");
    // Every request in flight finished, and got its own answer.
    for (ms, client) in sleeps.iter().zip(clients) {
        assert_eq!(client.await.unwrap(), Ok((200, format!("slept {ms} ms\n"))));
    }
    let terminated = terminated(&finished(&pod).await, 0);
    assert_eq!(terminated.exit_code, 0, "{terminated:?}");
    let pod_events = events(&history(&pod).await);
    let draining = event_message(&pod_events, "Draining").unwrap();
    assert!(draining.contains("100 requests in flight"), "{draining}");
    let drained = event_message(&pod_events, "Drained").unwrap();
    assert!(
        drained.contains("100 in-flight requests finished"),
        "{drained}"
    );
    assert!(event_message(&pod_events, "KilledRequests").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_still_running_at_the_deadline_fail_and_are_counted() {
    let port = free_port();
    let pod = start(web("deadline", port, 2, "")).await;
    wait_ready(&pod).await;
    let slow: Vec<_> = (0..10)
        .map(|_| tokio::spawn(async move { get(port, "/sleep?ms=60000").await }))
        .collect();
    let quick: Vec<_> = (0..5)
        .map(|_| tokio::spawn(async move { get(port, "/sleep?ms=300").await }))
        .collect();
    wait_for_lines(&pod, "sleeping", 15).await;
    pod.delete(None);
    for client in quick {
        assert_eq!(
            client.await.unwrap(),
            Ok((200, "slept 300 ms\n".to_string()))
        );
    }
    for client in slow {
        let answer = tokio::time::timeout(Duration::from_secs(20), client)
            .await
            .expect("a killed handler's client gets its answer at the deadline")
            .unwrap();
        match answer {
            Ok((503, body)) => assert!(body.contains("the handler was killed"), "{body}"),
            other => panic!("expected 503 from a killed handler, got {other:?}"),
        }
    }
    let terminated = terminated(&finished(&pod).await, 0);
    assert_eq!(terminated.exit_code, 137, "{terminated:?}");
    let pod_events = events(&history(&pod).await);
    let killed = event_message(&pod_events, "KilledRequests").unwrap();
    assert!(
        killed.starts_with("10 requests still in flight"),
        "{killed}"
    );
}

#[tokio::test]
async fn the_seed_pre_stop_hook_calls_shutdown_over_loopback_before_terminate() {
    // As written: random-generator declares no port; its preStop's 8080 is where it listens.
    let pod = start(
        wasmlet::PodSpec::from_file(wasmlet_examples::pods_dir().join("pre-stop-hook.yaml"))
            .unwrap(),
    )
    .await;
    pod.wait_running().await;
    let (status, body) = get(8080, "/").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("{\"random\": "), "{body}");
    pod.delete(Some(Duration::from_secs(5)));
    let status = finished(&pod).await;
    let all = history(&pod).await;
    let output = lines(&all);
    let shutdown = output
        .iter()
        .position(|line| line.contains("[random-generator:http] random-generator: GET /shutdown"))
        .unwrap_or_else(|| panic!("{output:#?}"));
    let terminate = output
        .iter()
        .position(|line| line.contains("shutting down (TerminationReason::PodDeleted)"))
        .unwrap();
    assert!(shutdown < terminate, "{output:#?}");
    let hook = event_message(&events(&all), "PreStopHook").unwrap();
    assert!(
        hook.starts_with("preStop httpGet http://127.0.0.1:8080/shutdown answered 200 OK"),
        "{hook}"
    );
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
}

#[tokio::test]
async fn an_http_get_hook_sends_its_headers_and_any_status_succeeds() {
    let port = free_port();
    let pod = start(web(
        "hook-headers",
        port,
        5,
        &format!(
            "lifecycle:\n  postStart:\n    httpGet:\n      port: {port}\n      path: /echo\n      \
             httpHeaders: [{{name: X-Probe, value: hello}}]\n  preStop:\n    httpGet: {{port: \
             {port}, path: /missing}}"
        ),
    ))
    .await;
    pod.wait_running().await;
    pod.delete(None);
    finished(&pod).await;
    let all = history(&pod).await;
    let output = lines(&all);
    assert!(
        output.iter().any(|l| l == "[web:http] echo x-probe: hello"),
        "{output:#?}"
    );
    assert!(
        output
            .iter()
            .any(|l| l.starts_with("[web:http] echo user-agent: kube-lifecycle/wasmlet-")),
        "{output:#?}"
    );
    assert!(
        !output.iter().any(|l| l.contains("wasmlet-kubelet")),
        "{output:#?}"
    );
    let pod_events = events(&all);
    // A 404 is still a hook that ran: recorded as a warning, not a failure.
    let pre_stop = event_message(&pod_events, "PreStopHook").unwrap();
    assert!(pre_stop.contains("answered 404 Not Found"), "{pre_stop}");
    assert!(event_message(&pod_events, "FailedPreStopHook").is_none());
}

#[tokio::test]
async fn a_liveness_probe_failing_over_http_kills_the_container() {
    let port = free_port();
    let pod = start(web(
        "liveness-http",
        port,
        5,
        &format!(
            "livenessProbe:\n  httpGet: {{path: /healthz, port: {port}}}\n  periodSeconds: 1\n  \
             timeoutSeconds: 5\n  failureThreshold: 2\nreadinessProbe:\n  tcpSocket: {{port: \
             {port}}}\n  periodSeconds: 1\n  timeoutSeconds: 5"
        ),
    ))
    .await;
    wait_ready(&pod).await;
    assert_eq!(get(port, "/fail").await.unwrap().0, 200);
    let terminated = terminated(&finished(&pod).await, 0);
    // http-hello drains and ends on terminate: a clean exit after the kill was asked for.
    assert_eq!(terminated.exit_code, 0, "{terminated:?}");
    let pod_events = events(&history(&pod).await);
    // (On a loaded machine a probe may also time out now and then: look for the 500.)
    assert!(
        pod_events.iter().any(|event| event.reason == "Unhealthy"
            && event
                .message
                .starts_with("Liveness probe failed: HTTP probe failed with statuscode: 500")),
        "{pod_events:#?}"
    );
    let killing = event_message(&pod_events, "Killing").unwrap();
    // Under restartPolicy Never the kubelet's message promises no restart.
    assert!(
        killing.contains("failed liveness probe") && !killing.contains("will be restarted"),
        "{killing}"
    );
}

#[tokio::test]
async fn a_handler_that_traps_answers_500_and_the_container_serves_on() {
    let port = free_port();
    let pod = start(web("trapping", port, 2, "")).await;
    wait_ready(&pod).await;
    let (status, body) = get(port, "/panic").await.unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("the handler trapped"), "{body}");
    // Every request has an instance of its own: the next one is fine.
    assert_eq!(get(port, "/").await.unwrap().0, 200);
    pod.delete(None);
    let status = finished(&pod).await;
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    let all = history(&pod).await;
    let failed = event_message(&events(&all), "HandlerFailed").unwrap();
    assert!(failed.contains("an HTTP handler trapped"), "{failed}");
    assert!(
        lines(&all)
            .iter()
            .any(|line| line.contains("asked to panic")),
        "{:#?}",
        lines(&all)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_finds_memory_no_earlier_request_wrote() {
    // Instances come from the pool's slots, reused as soon as a request ends: a slot handed
    // back must be as a new one, whatever its last instance wrote.
    let port = free_port();
    let pod = start(web("fresh", port, 2, "")).await;
    wait_ready(&pod).await;
    for _ in 0..100 {
        assert_eq!(get(port, "/count").await.unwrap(), (200, "1\n".into()));
    }
    for _ in 0..5 {
        let together: Vec<_> = (0..32).map(|_| tokio::spawn(get(port, "/count"))).collect();
        for request in together {
            assert_eq!(request.await.unwrap().unwrap(), (200, "1\n".into()));
        }
    }
    pod.delete(None);
    finished(&pod).await;
}

#[tokio::test]
async fn a_port_in_use_is_a_start_error_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let pod = start(web("port-in-use", port, 1, "")).await;
    let terminated = terminated(&finished(&pod).await, 0);
    assert_eq!(terminated.exit_code, 128);
    assert_eq!(terminated.reason.as_deref(), Some("StartError"));
    let message = terminated.message.unwrap();
    assert!(
        message.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{message}"
    );
    drop(taken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_that_times_out_over_tcp_leaves_no_handler_running() {
    // A host of its own, so that the instances it counts are this pod's alone.
    let host = wasmlet::Host::new(wasmlet::HostConfig::default()).unwrap();
    let port = free_port();
    let pod = host
        .start_pod(web(
            "hanging-probe-tcp",
            port,
            30,
            &format!(
                "readinessProbe:\n  httpGet: {{path: \"/sleep?ms=3600000\", port: {port}}}\n  \
                 periodSeconds: 1\n  timeoutSeconds: 1"
            ),
        ))
        .await
        .unwrap();
    // http-hello has no `run`: its only instances are the handlers of the probe's requests.
    // Each time a new one has started, the one before it has timed out; its kill may still be
    // on its way (the server learns of it when the connection closes), so two may overlap.
    let mut watch = pod.watch();
    let mut alive = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while alive.len() < 6 {
            match watch.next().await {
                Some(PodUpdate::Log(line)) if line.line == "sleeping 3600000 ms" => {
                    alive.push(host.stats().live_instances);
                }
                Some(_) => {}
                None => panic!("the pod ended"),
            }
        }
    })
    .await
    .expect("six probe requests within 30 s");
    assert!(alive.iter().all(|n| *n <= 2), "handlers alive: {alive:?}");
    // The probe in progress goes with the container's stop, and its handler with it: nothing
    // is left to drain.
    pod.delete(None);
    let status = tokio::time::timeout(Duration::from_secs(10), pod.wait())
        .await
        .expect("the stop should not wait for the probe's handler");
    assert_eq!(terminated(&status, 0).reason.as_deref(), Some("Completed"));
    let pod_events = events(&history(&pod).await);
    assert!(
        event_message(&pod_events, "KilledRequests").is_none(),
        "{pod_events:#?}"
    );
}

#[tokio::test]
async fn a_container_makes_its_tmp_when_its_first_instance_runs_and_removes_it_at_its_end() {
    // A host of its own, so that the directories it counts are this pod's alone.
    let host = wasmlet::Host::new(wasmlet::HostConfig::default()).unwrap();
    let port = free_port();
    let pod = host.start_pod(web("lazy-tmp", port, 30, "")).await.unwrap();
    wait_ready(&pod).await;
    // http-hello has no `run`: no instance yet, so no directory.
    assert_eq!(host.stats().tmp_dirs, 0);
    assert_eq!(get(port, "/").await.unwrap().0, 200);
    assert_eq!(host.stats().tmp_dirs, 1, "the first handler's /tmp");
    assert_eq!(get(port, "/").await.unwrap().0, 200);
    assert_eq!(host.stats().tmp_dirs, 1, "one per container run");
    pod.delete(None);
    pod.wait().await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while host.stats().tmp_dirs > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the directory should be removed after the container's end");
}
