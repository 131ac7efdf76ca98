//! Manifests as `kubectl apply -f` reads them: several documents, ConfigMaps and Secrets that
//! feed volumes and variables, claims that outlive their pods, workloads and Jobs, the fields a
//! single host accepts, ignores (with an event) or refuses (saying why).

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmlet::{Host, HostConfig, Manifests, PodSpec, PodUpdate, WorkloadKind};

use crate::support::{finished, history, host, lines, reasons, start};

fn manifests(yaml: &str) -> Manifests {
    Manifests::from_yaml(yaml, &wasmlet_examples::pods_dir(), "app.yaml").unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// Every problem of `yaml`, as `(document, path, message)`.
fn refused(yaml: &str) -> Vec<(Option<String>, String, String)> {
    let errors = Manifests::from_yaml(yaml, &wasmlet_examples::pods_dir(), "app.yaml")
        .expect_err("the manifests should be refused");
    errors
        .into_iter()
        .flat_map(|error| {
            assert_eq!(error.file, "app.yaml");
            let document = error.document.clone();
            error
                .problems
                .into_iter()
                .map(move |p| (document.clone(), p.path, p.message))
        })
        .collect()
}

fn has(problems: &[(Option<String>, String, String)], path: &str, words: &str) {
    assert!(
        problems
            .iter()
            .any(|(_, p, m)| p == path && m.contains(words)),
        "no problem at {path} mentioning {words:?} in {problems:#?}"
    );
}

const CONFIG: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data:
  GREETING: Bonjour
  color: blue
  1st: skipped by envFrom
---
apiVersion: v1
kind: Secret
metadata: {name: credentials}
data:
  password: c2VjcmV0
stringData:
  user: admin
"#;

fn pod_with(container_extra: &str, spec_extra: &str) -> String {
    let indent = |text: &str, by: usize| {
        text.lines()
            .map(|line| format!("{}{line}\n", " ".repeat(by)))
            .collect::<String>()
    };
    format!(
        "{CONFIG}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  labels: {{tier: web}}\n\
         spec:\n  restartPolicy: Never\n{}  containers:\n    - name: app\n      \
         image: ../../target/components/hello.wasm\n{}",
        indent(spec_extra, 2),
        indent(container_extra, 6)
    )
}

#[tokio::test]
async fn config_maps_and_secrets_feed_volumes_and_variables() {
    let yaml = pod_with(
        r#"args: ["--env", "PASSWORD", "--env", "GREETING", "--env", "APP_color", "--env", "MEMORY",
       "--read", "/etc/app/color", "--read", "/etc/secret/pass", "--read", "/etc/info/labels",
       "--write", "/etc/app/color", "red"]
envFrom:
  - configMapRef: {name: settings}
  - configMapRef: {name: settings}
    prefix: APP_
  - configMapRef: {name: missing, optional: true}
env:
  - name: PASSWORD
    valueFrom: {secretKeyRef: {name: credentials, key: password}}
  - name: MEMORY
    valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
resources: {limits: {memory: 64Mi}}
volumeMounts:
  - {name: app, mountPath: /etc/app}
  - {name: secret, mountPath: /etc/secret}
  - {name: info, mountPath: /etc/info}"#,
        r#"volumes:
  - name: app
    configMap: {name: settings, items: [{key: color, path: color}]}
  - name: secret
    secret: {secretName: credentials, defaultMode: 0400, items: [{key: password, path: pass}]}
  - name: info
    projected:
      sources:
        - downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
        - configMap: {name: settings, items: [{key: GREETING, path: greeting}]}
"#,
    );
    let manifests = manifests(&yaml);
    let [workload] = manifests.workloads() else {
        panic!("one workload")
    };
    assert_eq!(workload.kind(), WorkloadKind::Pod);
    let pod = start(workload.pods()[0].clone()).await;
    let status = finished(&pod).await;
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    let output = lines(&history(&pod).await).join("\n");
    for line in [
        "env PASSWORD=secret",
        "env GREETING=Bonjour",
        "env APP_color=blue",
        "env MEMORY=64",
        "read /etc/app/color: blue",
        "read /etc/secret/pass: secret",
        "read /etc/info/labels: tier=\"web\"",
    ] {
        assert!(output.contains(line), "no `{line}` in:\n{output}");
    }
    // A ConfigMap's volume is read-only, as in Kubernetes.
    assert!(output.contains("write /etc/app/color failed"), "{output}");
}

/// As the API server, validation accepts a pod whose ConfigMap or Secret is not there yet; as
/// the kubelet, wasmlet does not start it, and says what is missing.
#[tokio::test]
async fn missing_objects_and_keys_are_named() {
    let manifests = manifests(&pod_with(
        r#"env:
  - name: A
    valueFrom: {configMapKeyRef: {name: nowhere, key: a}}
  - name: B
    valueFrom: {configMapKeyRef: {name: settings, key: colour}}
  - name: C
    valueFrom: {configMapKeyRef: {name: nowhere, key: c, optional: true}}"#,
        "volumes:\n  - name: s\n    secret: {secretName: other}\n",
    ));
    let spec = manifests.workloads()[0].pods()[0].clone();
    assert_eq!(
        spec.missing(),
        [
            "Secret `other` (namespace `default`) is not among the manifests given: put it in \
             the same file or another file given with it, or set `optional: true`",
            "ConfigMap `nowhere` (namespace `default`) is not among the manifests given: put it \
             in the same file or another file given with it, or set `optional: true`",
            "ConfigMap `settings` has no key `colour` (it has: `1st`, `GREETING`, `color`)",
        ]
    );
    let error = host().start_pod(spec).await.expect_err("nothing starts");
    assert!(
        error
            .to_string()
            .starts_with("pod `app` cannot start: Secret `other`"),
        "{error}"
    );
    // An invalid one names its document, with the line it starts at.
    let problems = refused(&pod_with("", "volumes:\n  - name: Bad\n    emptyDir: {}\n"));
    let document = problems[0].0.clone().unwrap();
    assert!(
        document.starts_with("document 3 (Pod `app`, line 18)"),
        "{document}"
    );
}

#[test]
fn syntax_errors_give_the_line_in_the_file() {
    let yaml = format!("{CONFIG}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: [}}\n");
    let problems = refused(&yaml);
    assert!(
        problems[0]
            .2
            .starts_with("not valid YAML at line 20 column"),
        "{problems:#?}"
    );
}

#[test]
fn what_a_sandbox_gives_is_accepted_and_what_it_cannot_is_refused_with_why() {
    let accepted = manifests(&pod_with(
        r#"securityContext:
  runAsNonRoot: true
  runAsUser: 1000
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  privileged: false
  capabilities: {drop: [ALL]}
  seccompProfile: {type: RuntimeDefault}
terminationMessagePolicy: FallbackToLogsOnError"#,
        r#"securityContext: {}
nodeSelector: {disktype: ssd}
tolerations: [{key: k, operator: Exists}]
affinity: {nodeAffinity: {}}
serviceAccountName: app
priorityClassName: high
dnsPolicy: ClusterFirst
hostNetwork: true
imagePullSecrets: [{name: registry}]
"#,
    ));
    let spec = &accepted.workloads()[0].pods()[0];
    assert_eq!(
        spec.ignored(),
        [
            "spec.nodeSelector",
            "spec.tolerations",
            "spec.affinity",
            "spec.serviceAccountName",
            "spec.priorityClassName",
            "spec.dnsPolicy",
            "spec.hostNetwork",
            "spec.imagePullSecrets",
            "spec.containers[0].terminationMessagePolicy",
        ]
    );
    let problems = refused(&pod_with(
        r#"securityContext:
  privileged: true
  capabilities: {add: [NET_ADMIN]}"#,
        "hostPID: true\nsecurityContext: {sysctls: [{name: net.core.somaxconn, value: \"1024\"}]}\n",
    ));
    has(&problems, "spec.hostPID", "cannot see the host's processes");
    has(
        &problems,
        "spec.securityContext.sysctls",
        "no kernel of its own",
    );
    has(
        &problems,
        "spec.containers[0].securityContext.privileged",
        "cannot be given the host's devices",
    );
    has(
        &problems,
        "spec.containers[0].securityContext.capabilities.add",
        "no Linux capabilities to gain (NET_ADMIN)",
    );
}

#[tokio::test]
async fn the_ignored_fields_are_one_event() {
    let manifests = manifests(&pod_with(
        "",
        "nodeSelector: {a: b}\nschedulerName: custom\n",
    ));
    let pod = start(manifests.workloads()[0].pods()[0].clone()).await;
    finished(&pod).await;
    let history = history(&pod).await;
    let ignored: Vec<_> = history
        .iter()
        .filter_map(|update| match update {
            PodUpdate::Event(event) if event.reason == "IgnoredFields" => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(ignored.len(), 1, "{:?}", reasons(&history));
    assert_eq!(ignored[0].kind, wasmlet::EventType::Normal);
    assert_eq!(
        ignored[0].message,
        "A single host ignores spec.nodeSelector, spec.schedulerName"
    );
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy: {type: Recreate}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: app
          image: ../../target/components/hello.wasm
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
"#;

#[test]
fn workloads_run_their_template_and_other_kinds_are_skipped() {
    let manifests = manifests(DEPLOYMENT);
    let [deployment] = manifests.workloads() else {
        panic!("one workload")
    };
    assert_eq!(deployment.kind(), WorkloadKind::Deployment);
    let names: Vec<&str> = deployment.pods().iter().map(PodSpec::name).collect();
    assert_eq!(names, ["web-0", "web-1", "web-2"]);
    assert_eq!(deployment.pods()[0].ignored(), ["spec.strategy"]);
    assert_eq!(
        manifests.skipped(),
        [
            "app.yaml: skipped Service `web`: wasmlet has no Services; a pod serves on the host's \
          address and its ports"
        ]
    );
    // Replicas that serve no port share the host's address.
    assert!(deployment.pods().iter().all(|pod| pod.replica() == 0));
    // A selector that does not select the template's pods, and a Job that would restart forever.
    let problems =
        refused(&DEPLOYMENT.replace("{app: web}}\n  strategy", "{app: api}}\n  strategy"));
    has(&problems, "spec.selector", "selects `app: api`");
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  podFailurePolicy: {rules: []}\n  template:\n    spec:\n      containers: [{name: a, image: ../../target/components/hello.wasm}]\n";
    let problems = refused(job);
    has(
        &problems,
        "spec.template.spec.restartPolicy",
        "`restartPolicy: Never` or `OnFailure`",
    );
    has(
        &problems,
        "spec.template.spec.restartPolicy",
        "must be `Never` with a podFailurePolicy",
    );
}

/// Replicas that listen on a port each get an address of their own: the host's, then the
/// loopback addresses after it, as each pod has its IP in Kubernetes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_that_listen_serve_each_on_an_address_of_its_own() {
    let with_ports = DEPLOYMENT.replace(
        "image: ../../target/components/hello.wasm",
        "image: ../../target/components/http-hello.wasm\n          ports: [{containerPort: 18431}]",
    );
    let manifests = manifests(&with_ports);
    let [deployment] = manifests.workloads() else {
        panic!("one workload")
    };
    let replicas: Vec<u32> = deployment.pods().iter().map(PodSpec::replica).collect();
    assert_eq!(replicas, [0, 1, 2]);
    let mut pods = Vec::new();
    for spec in deployment.pods() {
        pods.push(crate::support::start(spec.clone()).await);
    }
    for pod in &pods {
        pod.wait_until(|status| {
            let containers = status.container_statuses.iter().flatten();
            containers.clone().count() == 1 && containers.clone().all(|c| c.ready)
        })
        .await;
    }
    for last in 1..=3 {
        let answer = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream =
                std::net::TcpStream::connect(("127.0.0.".to_string() + &last.to_string(), 18431))
                    .expect("each replica listens on its own address");
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        })
        .await
        .unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "127.0.0.{last}: {answer}"
        );
    }
    for pod in &pods {
        pod.delete(None);
    }
    for pod in &pods {
        crate::support::finished(pod).await;
    }
}

/// A StatefulSet's claims, and a pod started again on the same claim, see the data of the one
/// before: a claim is a directory under the host's data directory.
#[tokio::test]
async fn claims_outlive_their_pods() {
    let data = tempfile::tempdir().unwrap();
    let host = Host::new(HostConfig {
        data_dir: Some(data.path().to_path_buf()),
        ..HostConfig::default()
    })
    .unwrap();
    let statefulset = |args: &str| {
        format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db}}\nspec:\n  \
             selector: {{matchLabels: {{app: db}}}}\n  serviceName: db\n  template:\n    \
             metadata: {{labels: {{app: db}}}}\n    spec:\n      containers:\n        - name: db\n          \
             image: ../../target/components/hello.wasm\n          args: {args}\n          \
             volumeMounts: [{{name: data, mountPath: /data}}]\n  volumeClaimTemplates:\n    \
             - metadata: {{name: data}}\n      spec: {{accessModes: [ReadWriteOnce]}}\n"
        )
    };
    let first = manifests(&statefulset(
        r#"["--write", "/data/note", "kept", "--exit", "0"]"#,
    ));
    let spec = first.workloads()[0].pods()[0].clone();
    assert_eq!(spec.name(), "db-0");
    let pod = host.start_pod(spec).await.unwrap();
    // Restarted at once (restartPolicy Always): wait for the write, then delete.
    crate::support::wait_for_line(&pod, "wrote /data/note").await;
    pod.delete(None);
    finished(&pod).await;
    assert_eq!(
        std::fs::read_to_string(data.path().join("claims/default/data-db-0/note")).unwrap(),
        "kept"
    );
    let second = manifests(&statefulset(r#"["--read", "/data/note"]"#));
    let pod = host
        .start_pod(second.workloads()[0].pods()[0].clone())
        .await
        .unwrap();
    crate::support::wait_for_line(&pod, "read /data/note: kept").await;
    pod.kill();
    finished(&pod).await;
}

fn wasmlet() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmlet"));
    command.current_dir(workspace());
    command
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn a_job_runs_to_completion_and_fails_at_its_backoff_limit() {
    let out = wasmlet()
        .args(["run", "examples/workloads/job.yaml"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for index in 0..3 {
        assert!(
            stdout.contains(&format!("env JOB_COMPLETION_INDEX={index}")),
            "{stdout}"
        );
        assert!(
            stderr.contains(&format!("Created pod: indexed-{index}")),
            "{stderr}"
        );
    }
    assert_eq!(
        stdout
            .matches("read /config/greeting: Hello from a ConfigMap")
            .count(),
        3
    );
    assert!(
        stderr.contains("job/indexed") && stderr.contains("Job completed"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("failing.yaml");
    let component = workspace().join("target/components/hello.wasm");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: failing}}\nspec:\n  backoffLimit: 0\n  \
             template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: task\n          \
             image: {}\n          args: [\"--exit\", \"3\"]\n",
            component.display()
        ),
    )
    .unwrap();
    let out = wasmlet().arg("run").arg(&manifest).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("BackoffLimitExceeded"), "{stderr}");
    assert_eq!(
        stderr.matches("Created pod: failing-").count(),
        1,
        "{stderr}"
    );
}

/// Runs a Job named `name` with `spec` (indented lines of its spec beside the template) through
/// `wasmlet run`, its one container `hello --exit EXIT` with restartPolicy Never, from a manifest
/// in `dir`: the exit code and stderr.
fn run_job(dir: &Path, name: &str, spec: &str, exit: &str) -> (Option<i32>, String) {
    let component = workspace().join("target/components/hello.wasm");
    let manifest = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n{spec}  \
             template:\n    spec:\n      restartPolicy: Never\n      containers:\n        \
             - name: task\n          image: {}\n          args: [\"--exit\", \"{exit}\"]\n",
            component.display()
        ),
    )
    .unwrap();
    let out = wasmlet().arg("run").arg(&manifest).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `podFailurePolicy` (a WASI command exits 0 or 1): a FailJob rule fails the Job at the first
/// matching exit, however large `backoffLimit` is; an Ignore rule replaces the pod without counting it, so that a Job with
/// `backoffLimit: 0` keeps trying until its deadline.
#[test]
fn a_pod_failure_policy_fails_or_ignores_by_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let job = |name: &str, spec: &str| run_job(dir.path(), name, spec, "1");
    let (code, stderr) = job(
        "fail-job",
        "  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n      - action: FailJob\n        \
         onExitCodes: {containerName: task, operator: In, values: [1]}\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("Container task failed with exit code 1 matching FailJob rule at index 0"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("Created pod: fail-job-").count(),
        1,
        "{stderr}"
    );

    let (code, stderr) = job(
        "ignored",
        "  backoffLimit: 0\n  activeDeadlineSeconds: 1\n  podFailurePolicy:\n    rules:\n      \
         - action: Ignore\n        onExitCodes: {operator: In, values: [1]}\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("DeadlineExceeded"), "{stderr}");
    assert!(!stderr.contains("BackoffLimitExceeded"), "{stderr}");
    assert!(
        stderr.matches("Created pod: ignored-").count() > 1,
        "ignored failures are replaced: {stderr}"
    );
}

/// Indexed Jobs whose index 0 succeeds and the others fail (`--exit $(JOB_COMPLETION_INDEX)`):
/// a `successPolicy` ends the job at index 0's success, starting no other; with
/// `backoffLimitPerIndex` a failing index fails alone and the job fails at its end
/// (`FailedIndexes`), or at once past `maxFailedIndexes`; a `FailIndex` rule fails an index
/// without retrying it.
#[test]
fn indexed_jobs_succeed_by_policy_and_fail_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let job = |name: &str, spec: &str| {
        let spec = format!("  completionMode: Indexed\n  completions: 3\n{spec}");
        run_job(dir.path(), name, &spec, "$(JOB_COMPLETION_INDEX)")
    };

    let (code, stderr) = job(
        "leader",
        "  parallelism: 1\n  successPolicy:\n    rules: [{succeededIndexes: \"0\"}]\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Job completed"), "{stderr}");
    assert_eq!(
        stderr.matches("Created pod: leader-").count(),
        1,
        "{stderr}"
    );

    let (code, stderr) = job("per-index", "  parallelism: 3\n  backoffLimitPerIndex: 0\n");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("FailedIndexes"), "{stderr}");
    assert!(!stderr.contains("BackoffLimitExceeded"), "{stderr}");
    assert_eq!(
        stderr.matches("Created pod: per-index-").count(),
        3,
        "no index is retried: {stderr}"
    );

    let (code, stderr) = job(
        "bounded",
        "  parallelism: 1\n  backoffLimitPerIndex: 0\n  maxFailedIndexes: 0\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("MaxFailedIndexesExceeded"), "{stderr}");
    assert_eq!(
        stderr.matches("Created pod: bounded-").count(),
        2,
        "index 0 succeeded, index 1 failed the job: {stderr}"
    );

    let (code, stderr) = job(
        "fail-index",
        "  parallelism: 3\n  backoffLimitPerIndex: 5\n  podFailurePolicy:\n    rules:\n      \
         - {action: FailIndex, onExitCodes: {operator: In, values: [1]}}\n",
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("FailedIndexes"), "{stderr}");
    assert_eq!(
        stderr.matches("Created pod: fail-index-").count(),
        3,
        "FailIndex retries nothing: {stderr}"
    );
}

#[test]
fn validate_reads_several_files_and_documents() {
    let out = wasmlet()
        .args([
            "validate",
            "examples/workloads/web.yaml",
            "examples/workloads/job.yaml",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("skipped Service `web`"), "{stdout}");
    assert!(stdout.contains("Deployment `web` of 2 pod(s)"), "{stdout}");
    assert!(stdout.contains("Job `indexed`"), "{stdout}");
    // The host used by the other tests is unaffected by any of this.
    let _ = host();
}
