//! The field tables: which fields of the Kubernetes Pod API wasmlet supports, and the ones it
//! refuses with a message of their own. [`super::yaml`] checks every field of a manifest
//! against them.

/// Fields wasmlet runs as Kubernetes does. `[]` stands for any list index, `*` for any map key.
pub(super) const SUPPORTED: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels.*",
    "metadata.annotations.*",
    "spec.terminationGracePeriodSeconds",
    "spec.restartPolicy",
    "spec.initContainers",
    "spec.volumes[].name",
    "spec.volumes[].emptyDir",
    "spec.volumes[].hostPath.path",
    "spec.volumes[].hostPath.type",
    "spec.containers[].volumeMounts[].name",
    "spec.containers[].volumeMounts[].mountPath",
    "spec.containers[].volumeMounts[].readOnly",
    "spec.containers[].volumeMounts[].subPath",
    "spec.containers[].restartPolicy",
    "spec.containers[].name",
    "spec.containers[].image",
    "spec.containers[].imagePullPolicy",
    "spec.containers[].command[]",
    "spec.containers[].args[]",
    "spec.containers[].workingDir",
    "spec.containers[].env[].name",
    "spec.containers[].env[].value",
    "spec.containers[].env[].valueFrom.fieldRef.fieldPath",
    "spec.containers[].env[].valueFrom.fieldRef.apiVersion",
    "spec.containers[].resources.limits.memory",
    "spec.containers[].resources.requests.memory",
    "spec.containers[].lifecycle.hook.exec.command[]",
    "spec.containers[].lifecycle.hook.sleep.seconds",
    "spec.containers[].lifecycle.hook.httpGet.host",
    "spec.containers[].lifecycle.hook.httpGet.port",
    "spec.containers[].lifecycle.hook.httpGet.path",
    "spec.containers[].lifecycle.hook.httpGet.scheme",
    "spec.containers[].lifecycle.hook.httpGet.httpHeaders[].name",
    "spec.containers[].lifecycle.hook.httpGet.httpHeaders[].value",
    "spec.containers[].ports[].containerPort",
    "spec.containers[].ports[].name",
    "spec.containers[].ports[].protocol",
    // `hook` stands for postStart and preStop; `probe` for livenessProbe, readinessProbe and
    // startupProbe.
    "spec.containers[].probe.exec.command[]",
    "spec.containers[].probe.httpGet.host",
    "spec.containers[].probe.httpGet.port",
    "spec.containers[].probe.httpGet.path",
    "spec.containers[].probe.httpGet.scheme",
    "spec.containers[].probe.httpGet.httpHeaders[].name",
    "spec.containers[].probe.httpGet.httpHeaders[].value",
    "spec.containers[].probe.tcpSocket.host",
    "spec.containers[].probe.tcpSocket.port",
    "spec.containers[].probe.initialDelaySeconds",
    "spec.containers[].probe.periodSeconds",
    "spec.containers[].probe.timeoutSeconds",
    "spec.containers[].probe.successThreshold",
    "spec.containers[].probe.failureThreshold",
    "spec.containers[].probe.terminationGracePeriodSeconds",
];

/// Fields with a message of their own instead of the generic "not supported".
pub(super) const EXPLAINED: &[(&str, &str)] = &[
    (
        "spec.containers[].lifecycle.hook.tcpSocket",
        "deprecated, not supported (Kubernetes rejects it too); use exec, httpGet or sleep",
    ),
    (
        "spec.containers[].probe.grpc",
        "not supported: wasmlet has no gRPC health checking; use httpGet, tcpSocket or exec",
    ),
    (
        "spec.containers[].ports[].hostPort",
        "not supported: every containerPort is already a port of the host (wasmlet binds it on \
         127.0.0.1, or the host's configured address); drop `hostPort`",
    ),
    (
        "spec.containers[].ports[].hostIP",
        "not supported: the host chooses the address its pods listen on (`wasmlet run \
         --address`); drop `hostIP`",
    ),
    (
        "spec.containers[].resources.limits.cpu",
        "not supported: wasmlet time-slices guests fairly but does not cap CPU",
    ),
    (
        "spec.containers[].resources.requests.cpu",
        "not supported: wasmlet time-slices guests fairly but does not reserve CPU",
    ),
    (
        "spec.containers[].env[].valueFrom.secretKeyRef",
        "not supported: wasmlet has no Secrets; give a literal `value`",
    ),
    (
        "spec.containers[].env[].valueFrom.configMapKeyRef",
        "not supported: wasmlet has no ConfigMaps; give a literal `value`",
    ),
    (
        "spec.containers[].env[].valueFrom.resourceFieldRef",
        "not supported: wasmlet reserves no CPU and sets limits itself; give a literal `value`",
    ),
    (
        "spec.volumes[].emptyDir.medium",
        "not supported: an emptyDir is a directory on the host's disk (no tmpfs); drop `medium`",
    ),
    (
        "spec.volumes[].emptyDir.sizeLimit",
        "not supported: wasmlet does not limit a volume's size; drop `sizeLimit`",
    ),
    (
        "spec.volumes[].configMap",
        "not supported: wasmlet has no ConfigMaps; put the files in a hostPath directory",
    ),
    (
        "spec.volumes[].secret",
        "not supported: wasmlet has no Secrets; put the files in a hostPath directory",
    ),
    (
        "spec.volumes[].persistentVolumeClaim",
        "not supported: wasmlet has no persistent volumes; use a hostPath directory",
    ),
    (
        "spec.containers[].volumeMounts[].subPathExpr",
        "not supported: give a fixed `subPath`",
    ),
    (
        "spec.containers[].envFrom",
        "not supported: wasmlet has no ConfigMaps or Secrets; list the variables in `env`",
    ),
];
