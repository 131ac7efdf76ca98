//! Manifest validation: every problem at once, each with its field path and what is accepted.

use wasmlet::PodSpec;

fn problems(yaml: &str) -> Vec<(String, String)> {
    let error = PodSpec::from_yaml(yaml, &wasmlet_examples::pods_dir(), "bad.yaml")
        .expect_err("the manifest should be rejected");
    assert_eq!(error.file, "bad.yaml");
    error
        .problems
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect()
}

/// Asserts that `yaml` is a valid manifest.
fn accepted(yaml: &str) {
    let spec = PodSpec::from_yaml(yaml, &wasmlet_examples::pods_dir(), "good.yaml");
    assert!(spec.is_ok(), "{}", spec.unwrap_err());
}

fn has(problems: &[(String, String)], path: &str, words: &str) {
    assert!(
        problems.iter().any(|(p, m)| p == path && m.contains(words)),
        "no problem at {path} mentioning {words:?} in {problems:#?}"
    );
}

#[test]
fn the_example_pods_are_valid() {
    for entry in std::fs::read_dir(wasmlet_examples::pods_dir()).unwrap() {
        let path = entry.unwrap().path();
        PodSpec::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let found = problems(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: Bad_Name
spec:
  terminationGracePeriodSeconds: 5
  containers:
    - name: app
      image: ../../target/components/cooperative.wasm
      ports: [{containerPort: 8080, hostPort: 80}, {containerPort: 70000, protocol: UDP}]
      resources:
        limits:
          memory: lots
      lifecycle:
        preStop:
          tcpSocket:
            port: 8080
        postStart:
          httpGet:
            port: metrics
            path: /ready
            scheme: HTTPS
      livenessProbe:
        httpGet: {port: 8080}
        successThreshold: 2
        periodSeconds: -1
      readinessProbe:
        grpc: {port: 8080}
        terminationGracePeriodSeconds: 5
      startupProbe:
        exec: {command: ["../../target/components/hello.wasm"]}
        tcpSocket: {port: 8080}
    - name: app
      image: missing.wasm
      colour: blue
      lifecycle:
        preStop:
          sleep:
            seconds: 60
"#,
    );
    has(&found, "metadata.name", "not a valid name");
    has(
        &found,
        "spec.containers[0].ports[0].hostPort",
        "80 differs from containerPort 8080",
    );
    has(
        &found,
        "spec.containers[0].ports[1].containerPort",
        "70000 is not a port number",
    );
    has(&found, "spec.containers[0].ports[1].protocol", "use TCP");
    has(
        &found,
        "spec.containers[0].livenessProbe.successThreshold",
        "must be 1 for a liveness probe",
    );
    has(
        &found,
        "spec.containers[0].livenessProbe.periodSeconds",
        "must be 0 (the default) or more, got -1",
    );
    has(&found, "spec.containers[0].readinessProbe.grpc", "no gRPC");
    has(
        &found,
        "spec.containers[0].readinessProbe.terminationGracePeriodSeconds",
        "only liveness and startup probes",
    );
    has(
        &found,
        "spec.containers[0].startupProbe",
        "more than one action",
    );
    has(
        &found,
        "spec.containers[0].resources.limits.memory",
        "`lots` is not a memory quantity",
    );
    has(
        &found,
        "spec.containers[0].lifecycle.preStop.tcpSocket",
        "deprecated, not supported",
    );
    has(
        &found,
        "spec.containers[0].lifecycle.postStart.httpGet.port",
        "no port named `metrics`",
    );
    has(
        &found,
        "spec.containers[0].lifecycle.postStart.httpGet.scheme",
        "plain HTTP",
    );
    has(
        &found,
        "spec.containers[1].name",
        "duplicate container name",
    );
    has(
        &found,
        "spec.containers[1].image",
        "component `missing.wasm` not found",
    );
    has(&found, "spec.containers[1].colour", "unknown field");
    has(
        &found,
        "spec.containers[1].lifecycle.preStop.sleep.seconds",
        "longer than the grace period",
    );
}

#[test]
fn wrong_types_and_bad_yaml_name_the_place() {
    let found = problems(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n    - name: app\n      args: 5\n",
    );
    has(&found, "spec.containers[0].args", "invalid type");
    let found = problems("spec: [unclosed");
    assert!(found[0].1.contains("not valid YAML"), "{found:?}");
    let found = problems(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  terminationGracePeriodSeconds: -1\n  containers: []\n",
    );
    has(&found, "spec.terminationGracePeriodSeconds", "0 or more");
    has(&found, "spec.containers", "at least one container");
}

#[test]
fn handlers_need_exactly_one_action_and_a_real_component() {
    let found = problems(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: handlers}
spec:
  containers:
    - name: app
      image: ../../target/components/cooperative.wasm
      lifecycle:
        postStart:
          exec:
            command: ["../../target/components/no-such-hook.wasm"]
        preStop:
          exec: {command: ["../../target/components/hello.wasm"]}
          sleep: {seconds: 1}
"#,
    );
    has(
        &found,
        "spec.containers[0].lifecycle.postStart.exec.command[0]",
        "component `../../target/components/no-such-hook.wasm` not found",
    );
    has(
        &found,
        "spec.containers[0].lifecycle.preStop",
        "more than one handler",
    );
}

#[test]
fn restart_policies_are_the_three_of_kubernetes() {
    for policy in ["Always", "OnFailure", "Never"] {
        accepted(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: x}}\nspec:\n  restartPolicy: {policy}\n  containers:\n    - name: app\n      image: ../../target/components/hello.wasm\n"
        ));
    }
    let found = problems(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  restartPolicy: Sometimes\n  containers:\n    - name: app\n      image: ../../target/components/hello.wasm\n",
    );
    has(
        &found,
        "spec.restartPolicy",
        "expected Always, OnFailure or Never",
    );
}

#[test]
fn dotted_label_and_annotation_keys_are_accepted() {
    accepted(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: labelled
  labels:
    app.kubernetes.io/name: demo
  annotations:
    kubectl.kubernetes.io/default-container: app
spec:
  containers:
    - name: app
      image: ../../target/components/hello.wasm
"#,
    );
}

#[test]
fn huge_grace_periods_are_accepted_and_mean_never() {
    accepted(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: patient}\nspec:\n  terminationGracePeriodSeconds: 9223372036854775807\n  containers:\n    - name: app\n      image: ../../target/components/hello.wasm\n",
    );
}

#[test]
fn init_containers_and_sidecars_are_checked_as_kubernetes_does() {
    let found = problems(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: x}
spec:
  initContainers:
    - name: setup
      image: ../../target/components/hello.wasm
      restartPolicy: OnFailure
    - name: hooked
      image: ../../target/components/hello.wasm
      lifecycle:
        preStop: {sleep: {seconds: 1}}
    - name: probed
      image: ../../target/components/hello.wasm
      readinessProbe: {tcpSocket: {port: 8080}}
    - name: app
      image: ../../target/components/hello.wasm
  containers:
    - name: app
      image: ../../target/components/hello.wasm
      restartPolicy: Always
"#,
    );
    has(
        &found,
        "spec.initContainers[0].restartPolicy",
        "can only be `Always`",
    );
    has(
        &found,
        "spec.initContainers[1].lifecycle",
        "unless it is a sidecar",
    );
    has(
        &found,
        "spec.initContainers[2].readinessProbe",
        "may not be set for init containers without restartPolicy=Always",
    );
    has(
        &found,
        "spec.containers[0].name",
        "duplicate container name `app`",
    );
    has(
        &found,
        "spec.containers[0].restartPolicy",
        "only init containers",
    );
    accepted(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: x}
spec:
  initContainers:
    - name: proxy
      image: ../../target/components/cooperative.wasm
      restartPolicy: Always
      lifecycle:
        preStop: {sleep: {seconds: 1}}
  containers:
    - name: app
      image: ../../target/components/hello.wasm
"#,
    );
}

#[test]
fn env_sources_command_and_working_dir_are_checked() {
    let found = problems(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: x}
spec:
  containers:
    - name: app
      image: ../../target/components/hello.wasm
      command: ["server"]
      workingDir: relative/dir
      envFrom:
        - configMapRef: {name: settings}
      env:
        - name: IP
          valueFrom: {fieldRef: {fieldPath: status.phase}}
        - name: BOTH
          value: "1"
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: SECRET
          valueFrom: {secretKeyRef: {name: db, key: password}}
"#,
    );
    has(
        &found,
        "spec.containers[0].workingDir",
        "must be an absolute path",
    );
    has(
        &found,
        "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath",
        "`status.phase` is not supported",
    );
    has(&found, "spec.containers[0].env[1]", "not both");
    // ConfigMaps and Secrets not given beside the pod are not a problem of the manifest: the
    // pod cannot start without them (see the workloads tests).
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        !found.iter().any(|(path, _)| path.ends_with(".command")),
        "command is supported: {found:#?}"
    );
}

#[test]
fn volumes_and_mounts_are_checked() {
    let found = problems(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: x}
spec:
  volumes:
    - {name: cache, emptyDir: {medium: Memory}}
    - {name: cache, emptyDir: {}}
    - {name: settings, configMap: {name: app, defaultMode: 01000}}
    - {name: missing, hostPath: {path: /no/such/dir, type: Directory}}
    - {name: device, hostPath: {path: /dev/null, type: CharDevice}}
    - {name: nothing}
  containers:
    - name: app
      image: ../../target/components/hello.wasm
      volumeMounts:
        - {name: cache, mountPath: relative}
        - {name: ghost, mountPath: /ghost}
        - {name: cache, mountPath: /a, subPath: ../up}
        - {name: cache, mountPath: /b, subPathExpr: $(POD)}
        - {name: cache, mountPath: /a/}
"#,
    );
    has(
        &found,
        "spec.volumes[1].name",
        "duplicate volume name `cache`",
    );
    has(
        &found,
        "spec.volumes[2].configMap.defaultMode",
        "not a file mode",
    );
    has(
        &found,
        "spec.volumes[3].hostPath.path",
        "is not a directory",
    );
    has(
        &found,
        "spec.volumes[4].hostPath.type",
        "`CharDevice` is not supported",
    );
    has(
        &found,
        "spec.containers[0].volumeMounts[0].mountPath",
        "must be an absolute path",
    );
    has(
        &found,
        "spec.containers[0].volumeMounts[1].name",
        "no volume `ghost`",
    );
    has(
        &found,
        "spec.containers[0].volumeMounts[2].subPath",
        "without `..`",
    );
    has(
        &found,
        "spec.containers[0].volumeMounts[3].subPathExpr",
        "give a fixed `subPath`",
    );
    has(
        &found,
        "spec.containers[0].volumeMounts[4].mountPath",
        "mounted twice",
    );
    assert!(
        !found.iter().any(|(path, _)| path == "spec.volumes[2]"),
        "an unsupported source is reported once: {found:#?}"
    );
    // A volume without a source is an emptyDir, as Kubernetes defaults it.
    assert!(
        !found
            .iter()
            .any(|(path, _)| path.starts_with("spec.volumes[5]")),
        "{found:#?}"
    );
}

#[test]
fn exec_commands_resolve_to_the_shell_a_component_or_the_app() {
    use wasmlet::{ExecTarget, Handler};
    let spec = PodSpec::from_yaml(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: exec}
spec:
  initContainers:
    - name: shell
      image: ../../target/components/cooperative.wasm
      restartPolicy: Always
      lifecycle:
        postStart: {exec: {command: ["/bin/sh", "-c", "true"]}}
        preStop: {exec: {command: ["../../target/components/hello.wasm"]}}
  containers:
    - name: app
      image: ../../target/components/cooperative.wasm
      lifecycle:
        preStop: {exec: {command: ["app", "drain"]}}
"#,
        &wasmlet_examples::pods_dir(),
        "exec.yaml",
    )
    .unwrap();
    let target = |handler: Option<&Handler>| match handler {
        Some(Handler::Exec { target, .. }) => target.clone(),
        other => panic!("not an exec: {other:?}"),
    };
    let sidecar = &spec.init_containers()[0];
    assert_eq!(target(sidecar.post_start()), ExecTarget::Shell);
    assert!(
        matches!(target(sidecar.pre_stop()), ExecTarget::Component(path) if path.ends_with("hello.wasm"))
    );
    assert_eq!(
        target(spec.containers()[0].pre_stop()),
        ExecTarget::Container
    );
    // Another shell or a program of an image is not the app: refused, not run as the app.
    let found = problems(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n    - name: app\n      image: ../../target/components/hello.wasm\n      lifecycle:\n        preStop:\n          exec: {command: [\"/bin/bash\", \"-c\", \"true\"]}\n",
    );
    has(
        &found,
        "spec.containers[0].lifecycle.preStop.exec.command[0]",
        "is not a WebAssembly component",
    );
}

#[test]
fn a_host_port_equal_to_the_container_port_is_already_given() {
    let spec = crate::support::spec(
        "apiVersion: v1
kind: Pod
metadata:
  name: host-port
spec:
  containers:
    - name: web
      image: ../../target/components/http-hello.wasm
      ports: [{containerPort: 8080, hostPort: 8080}]
",
    );
    assert_eq!(spec.containers()[0].ports()[0].port(), 8080);
}
