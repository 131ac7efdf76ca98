//! Sandbox: each test tries an escape — files, environment, network, another pod's emptyDir —
//! with the `intruder` example guest, which reports every attempt as `allowed` or `denied`.

use std::time::Duration;

use crate::support::{finished, history, lines, single, spec, start};

/// Runs intruder with `args` (and more container YAML) and returns its output lines.
async fn attempts(name: &str, args: &[&str], extra: &str) -> Vec<String> {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    let pod = start(single(
        name,
        "intruder",
        2,
        &format!("args: [{}]\n{extra}", args.join(", ")),
    ))
    .await;
    finished(&pod).await;
    lines(&history(&pod).await)
}

fn has(output: &[String], line: &str) {
    assert!(
        output.iter().any(|l| l.contains(line)),
        "no line with {line:?} in {output:#?}"
    );
}

#[tokio::test]
async fn a_guest_sees_only_the_env_args_and_files_its_manifest_grants() {
    let output = attempts(
        "grants",
        &[
            "--env",
            "GRANTED",
            "--env",
            "HOME",
            "--env",
            "PATH",
            "--vars",
            "--args",
            "--read",
            "/etc/hostname",
            "--read",
            "/proc/self/environ",
            "--list",
            "/",
            "--list",
            "/tmp",
        ],
        "env: [{name: GRANTED, value: \"yes\"}]",
    )
    .await;
    has(&output, "env GRANTED: set (yes)");
    has(&output, "env HOME: unset");
    has(&output, "env PATH: unset");
    has(&output, "vars: 1");
    // argv[0] (the container's name) and the 16 arguments.
    has(&output, "args: 17");
    has(&output, "read /etc/hostname: denied");
    has(&output, "read /proc/self/environ: denied");
    has(&output, "list /: denied");
    // Its own private /tmp, empty.
    has(&output, "list /tmp: allowed (0 entries)");
}

#[tokio::test]
async fn symlinks_and_dot_dot_cannot_leave_a_volume() {
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("secret.txt"), "host secret").unwrap();
    let volume = outer.path().join("vol");
    std::fs::create_dir(&volume).unwrap();
    std::fs::write(volume.join("inside.txt"), "fine").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", volume.join("absolute")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", volume.join("relative")).unwrap();
    std::os::unix::fs::symlink("inside.txt", volume.join("within")).unwrap();
    let pod = start(spec(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: symlinks}}\nspec:\n  restartPolicy: Never\n  \
         volumes: [{{name: vol, hostPath: {{path: {:?}}}}}]\n  containers:\n    - name: app\n      \
         image: ../../target/components/intruder.wasm\n      args: [--read, /vol/inside.txt, \
         --read, /vol/within, --read, /vol/absolute, --read, /vol/relative, --read, \
         /vol/../secret.txt, --read, /vol/../vol/../secret.txt]\n      volumeMounts: [{{name: \
         vol, mountPath: /vol, readOnly: true}}]\n",
        volume.display().to_string()
    )))
    .await;
    finished(&pod).await;
    let output = lines(&history(&pod).await);
    has(&output, "read /vol/inside.txt: allowed (4 bytes)");
    has(&output, "read /vol/within: allowed (4 bytes)");
    has(&output, "read /vol/absolute: denied");
    has(&output, "read /vol/relative: denied");
    has(&output, "read /vol/../secret.txt: denied");
    has(&output, "read /vol/../vol/../secret.txt: denied");
}

#[tokio::test]
async fn a_guest_has_no_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let output = attempts(
        "network",
        &[
            "--connect",
            &address,
            "--resolve",
            "localhost",
            "--resolve",
            "example.com",
        ],
        "",
    )
    .await;
    has(&output, &format!("connect {address}: denied"));
    has(&output, "resolve localhost: denied");
    has(&output, "resolve example.com: denied");
    // And nothing reached the listener.
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err());
}

/// A pod of one container with an emptyDir at /scratch.
fn with_scratch(name: &str, component: &str, args: &str) -> wasmlet::PodSpec {
    spec(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  restartPolicy: Never\n  \
         terminationGracePeriodSeconds: 1\n  volumes: [{{name: scratch, emptyDir: {{}}}}]\n  \
         containers:\n    - name: app\n      image: ../../target/components/{component}.wasm\n      \
         args: [{args}]\n      volumeMounts: [{{name: scratch, mountPath: /scratch}}]\n"
    ))
}

#[tokio::test]
async fn one_pod_cannot_read_another_pods_empty_dir() {
    let owner = start(with_scratch(
        "owner",
        "hello",
        "--write, /scratch/secret, mine, --sleep, \"30\"",
    ))
    .await;
    let mut updates = owner.watch();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(update) = updates.next().await {
            if let wasmlet::PodUpdate::Log(line) = update
                && line.line == "wrote /scratch/secret"
            {
                return;
            }
        }
    })
    .await
    .expect("the owner writes its secret");
    let other = start(with_scratch(
        "other",
        "intruder",
        "--read, /scratch/secret, --list, /scratch",
    ))
    .await;
    finished(&other).await;
    let output = lines(&history(&other).await);
    has(&output, "read /scratch/secret: denied");
    has(&output, "list /scratch: allowed (0 entries)");
    owner.delete(None);
    finished(&owner).await;
}

/// A component whose `run` grows a table by 100,000 elements at a time until refused, then
/// returns `ok`.
const TABLE_GROWER: &str = r#"
(component
  (core module $m
    (table $t 1 funcref)
    (func (export "run") (result i32)
      (block $refused
        (loop $grow
          (br_if $refused
            (i32.eq (table.grow $t (ref.null func) (i32.const 100000)) (i32.const -1)))
          (br $grow)))
      (i32.const 0)))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $run-instance (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run-instance)))
"#;

/// Runs the hand-written component `bytes` (saved as `file_name`) in a one-container pod with
/// `container_extra` YAML, and returns how its container ended.
async fn run_hand_written(
    file_name: &str,
    bytes: &[u8],
    container_extra: &str,
) -> wasmlet::k8s_openapi::api::core::v1::ContainerStateTerminated {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join(file_name);
    std::fs::write(&component, bytes).unwrap();
    let pod = start(spec(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: hand-written}}\nspec:\n  restartPolicy: \
         Never\n  containers:\n    - name: app\n      image: {:?}\n      {container_extra}\n",
        component.display().to_string()
    )))
    .await;
    let status = finished(&pod).await;
    crate::support::terminated(&status, 0)
}

#[tokio::test]
async fn a_table_cannot_grow_past_the_memory_limit_or_the_table_cap() {
    let component = wat::parse_str(TABLE_GROWER).unwrap();
    // With a memory limit the table's elements count against it; without one, the cap of ten
    // million elements holds. Either way growth is refused and run returns.
    for limit in ["resources: {limits: {memory: 16Mi}}", ""] {
        let end = run_hand_written("table-grower.wasm", &component, limit).await;
        assert_eq!(end.exit_code, 0, "{limit}: {end:?}");
    }
}

#[tokio::test]
async fn a_component_cannot_create_more_core_instances_than_the_limit() {
    // 999 empty instances and the one with `run`: exactly the limit, and it runs; one more is
    // refused when the instance is created.
    for (groups, per_group, allowed) in [(9, 111, true), (10, 100, false)] {
        let empties = groups * per_group;
        let component = crate::support::instantiated_times("", groups, per_group);
        let end = run_hand_written(&format!("instances-{empties}.wasm"), &component, "").await;
        if allowed {
            assert_eq!(end.exit_code, 0, "{empties}: {end:?}");
        } else {
            assert_eq!(end.reason.as_deref(), Some("Error"), "{end:?}");
            let message = end.message.unwrap_or_default();
            assert!(
                message.contains("instance count too high at 1001")
                    && message.contains("wasmlet allows one instance at most 1000 core instances"),
                "{message}"
            );
        }
    }
}
