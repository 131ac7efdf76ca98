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
    "spec.containers[].resources.limits.cpu",
    "spec.containers[].resources.requests.cpu",
    "spec.resources.limits.cpu",
    "spec.resources.requests.cpu",
    "spec.resources.limits.memory",
    "spec.resources.requests.memory",
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
    "spec.containers[].ports[].hostPort",
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
    // Config and storage from the same files: ConfigMaps, Secrets, the downward API, claims.
    "spec.containers[].env[].valueFrom.configMapKeyRef.name",
    "spec.containers[].env[].valueFrom.configMapKeyRef.key",
    "spec.containers[].env[].valueFrom.configMapKeyRef.optional",
    "spec.containers[].env[].valueFrom.secretKeyRef.name",
    "spec.containers[].env[].valueFrom.secretKeyRef.key",
    "spec.containers[].env[].valueFrom.secretKeyRef.optional",
    "spec.containers[].env[].valueFrom.resourceFieldRef.containerName",
    "spec.containers[].env[].valueFrom.resourceFieldRef.resource",
    "spec.containers[].env[].valueFrom.resourceFieldRef.divisor",
    "spec.containers[].envFrom[].prefix",
    "spec.containers[].envFrom[].configMapRef.name",
    "spec.containers[].envFrom[].configMapRef.optional",
    "spec.containers[].envFrom[].secretRef.name",
    "spec.containers[].envFrom[].secretRef.optional",
    "spec.volumes[].configMap.name",
    "spec.volumes[].configMap.optional",
    "spec.volumes[].configMap.defaultMode",
    "spec.volumes[].configMap.items[].key",
    "spec.volumes[].configMap.items[].path",
    "spec.volumes[].configMap.items[].mode",
    "spec.volumes[].secret.secretName",
    "spec.volumes[].secret.optional",
    "spec.volumes[].secret.defaultMode",
    "spec.volumes[].secret.items[].key",
    "spec.volumes[].secret.items[].path",
    "spec.volumes[].secret.items[].mode",
    "spec.volumes[].downwardAPI.defaultMode",
    "spec.volumes[].downwardAPI.items[].path",
    "spec.volumes[].downwardAPI.items[].mode",
    "spec.volumes[].downwardAPI.items[].fieldRef.fieldPath",
    "spec.volumes[].downwardAPI.items[].fieldRef.apiVersion",
    "spec.volumes[].downwardAPI.items[].resourceFieldRef.containerName",
    "spec.volumes[].downwardAPI.items[].resourceFieldRef.resource",
    "spec.volumes[].downwardAPI.items[].resourceFieldRef.divisor",
    "spec.volumes[].projected.defaultMode",
    "spec.volumes[].projected.sources[].configMap.name",
    "spec.volumes[].projected.sources[].configMap.optional",
    "spec.volumes[].projected.sources[].configMap.items[].key",
    "spec.volumes[].projected.sources[].configMap.items[].path",
    "spec.volumes[].projected.sources[].configMap.items[].mode",
    "spec.volumes[].projected.sources[].secret.name",
    "spec.volumes[].projected.sources[].secret.optional",
    "spec.volumes[].projected.sources[].secret.items[].key",
    "spec.volumes[].projected.sources[].secret.items[].path",
    "spec.volumes[].projected.sources[].secret.items[].mode",
    "spec.volumes[].projected.sources[].downwardAPI.items[].path",
    "spec.volumes[].projected.sources[].downwardAPI.items[].mode",
    "spec.volumes[].projected.sources[].downwardAPI.items[].fieldRef.fieldPath",
    "spec.volumes[].projected.sources[].downwardAPI.items[].fieldRef.apiVersion",
    "spec.volumes[].projected.sources[].downwardAPI.items[].resourceFieldRef.containerName",
    "spec.volumes[].projected.sources[].downwardAPI.items[].resourceFieldRef.resource",
    "spec.volumes[].projected.sources[].downwardAPI.items[].resourceFieldRef.divisor",
    "spec.volumes[].persistentVolumeClaim.claimName",
    "spec.volumes[].persistentVolumeClaim.readOnly",
    // securityContext: what a wasm sandbox already gives. The values that ask for more than it
    // can (`privileged: true`, `capabilities.add`, …) are refused by `convert`.
    "spec.securityContext.runAsUser",
    "spec.securityContext.runAsGroup",
    "spec.securityContext.runAsNonRoot",
    "spec.securityContext.fsGroup",
    "spec.securityContext.fsGroupChangePolicy",
    "spec.securityContext.supplementalGroups[]",
    "spec.securityContext.supplementalGroupsPolicy",
    "spec.securityContext.seccompProfile.type",
    "spec.securityContext.seccompProfile.localhostProfile",
    "spec.securityContext.appArmorProfile.type",
    "spec.securityContext.appArmorProfile.localhostProfile",
    "spec.securityContext.seLinuxOptions.*",
    "spec.securityContext.seLinuxChangePolicy",
    "spec.hostPID",
    "spec.hostIPC",
    "spec.hostUsers",
    "spec.shareProcessNamespace",
    "spec.containers[].securityContext.runAsUser",
    "spec.containers[].securityContext.runAsGroup",
    "spec.containers[].securityContext.runAsNonRoot",
    "spec.containers[].securityContext.allowPrivilegeEscalation",
    "spec.containers[].securityContext.readOnlyRootFilesystem",
    "spec.containers[].securityContext.privileged",
    "spec.containers[].securityContext.capabilities.drop[]",
    "spec.containers[].securityContext.capabilities.add[]",
    "spec.containers[].securityContext.seccompProfile.type",
    "spec.containers[].securityContext.seccompProfile.localhostProfile",
    "spec.containers[].securityContext.appArmorProfile.type",
    "spec.containers[].securityContext.appArmorProfile.localhostProfile",
    "spec.containers[].securityContext.seLinuxOptions.*",
    "spec.containers[].securityContext.procMount",
];

/// Fields about a cluster — scheduling, service accounts, DNS, image pulls — that mean nothing
/// on a single host. They are accepted, and each pod that has some gets one `Normal`
/// `IgnoredFields` event listing them, so that nothing is silently different. The second
/// column says why, for the documentation.
pub(super) const IGNORED: &[(&str, &str)] = &[
    ("spec.nodeSelector", "one host is the only node"),
    ("spec.nodeName", "one host is the only node"),
    ("spec.affinity", "one host is the only node"),
    (
        "spec.tolerations",
        "one host is the only node; it has no taints",
    ),
    (
        "spec.topologySpreadConstraints",
        "one host is the only node",
    ),
    ("spec.schedulerName", "there is no scheduler to choose"),
    (
        "spec.schedulingGates",
        "there is no scheduler to hold a pod back",
    ),
    (
        "spec.priorityClassName",
        "nothing is preempted on a single host",
    ),
    ("spec.priority", "nothing is preempted on a single host"),
    (
        "spec.preemptionPolicy",
        "nothing is preempted on a single host",
    ),
    ("spec.runtimeClassName", "wasmlet is the only runtime"),
    ("spec.overhead", "wasmlet is the only runtime"),
    ("spec.os", "a component runs on any OS"),
    (
        "spec.readinessGates",
        "there is no controller to set the conditions",
    ),
    (
        "spec.serviceAccountName",
        "there is no API server to authenticate to",
    ),
    (
        "spec.serviceAccount",
        "there is no API server to authenticate to",
    ),
    (
        "spec.automountServiceAccountToken",
        "there is no API server, so no token to mount",
    ),
    (
        "spec.imagePullSecrets",
        "a component is a local file: nothing is pulled",
    ),
    ("spec.enableServiceLinks", "there are no Services to link"),
    ("spec.dnsPolicy", "guests get no sockets, so no DNS"),
    ("spec.dnsConfig", "guests get no sockets, so no DNS"),
    (
        "spec.hostAliases",
        "guests get no sockets, so no name resolution",
    ),
    ("spec.hostname", "guests see no host name"),
    ("spec.subdomain", "guests see no host name"),
    ("spec.setHostnameAsFQDN", "guests see no host name"),
    (
        "spec.hostNetwork",
        "pods already listen on the host's address (`--address`)",
    ),
    (
        "spec.containers[].terminationMessagePath",
        "the end of a run is in its state and events",
    ),
    (
        "spec.containers[].terminationMessagePolicy",
        "the end of a run is in its state and events",
    ),
    (
        "spec.containers[].stdin",
        "a guest's standard input is empty",
    ),
    (
        "spec.containers[].stdinOnce",
        "a guest's standard input is empty",
    ),
    (
        "spec.containers[].tty",
        "a guest's output is lines, not a terminal",
    ),
    (
        "spec.containers[].resizePolicy",
        "resources are not resized in place",
    ),
    (
        "spec.containers[].resources.limits.ephemeral-storage",
        "volumes are not size-limited",
    ),
    (
        "spec.containers[].resources.requests.ephemeral-storage",
        "volumes are not size-limited",
    ),
    (
        "spec.volumes[].emptyDir.sizeLimit",
        "volumes are not size-limited",
    ),
    (
        "spec.volumes[].emptyDir.medium",
        "an emptyDir is a directory on the host's disk",
    ),
    (
        "spec.containers[].volumeMounts[].mountPropagation",
        "guests mount nothing, and see each volume's directory as the host has it",
    ),
    (
        "spec.containers[].volumeMounts[].recursiveReadOnly",
        "a read-only mount is read-only all the way down already: a guest reaches everything \
         under it through the one read-only directory",
    ),
    (
        "spec.resources.limits.pids",
        "a component is not a process and starts none",
    ),
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
        "spec.containers[].ports[].hostIP",
        "not supported: the host chooses the address its pods listen on (`wasmlet run \
         --address`); drop `hostIP`",
    ),
    (
        "spec.containers[].volumeMounts[].subPathExpr",
        "not supported: give a fixed `subPath`",
    ),
    (
        "spec.containers[].resources.limits.*",
        "not supported: a single host has no devices or extended resources to give a guest; \
         wasmlet limits `cpu` and `memory`",
    ),
    (
        "spec.containers[].resources.requests.*",
        "not supported: a single host has no devices or extended resources to give a guest; \
         wasmlet takes `cpu` and `memory` requests",
    ),
    (
        "spec.containers[].resources.claims",
        "not supported: a single host has no dynamically allocated devices",
    ),
    (
        "spec.containers[].volumeDevices",
        "not supported: a guest sees files, never block devices; use volumeMounts",
    ),
    (
        "spec.volumes[].image",
        "not supported: wasmlet pulls no images or artifacts; put the files in a directory and \
         mount it with hostPath",
    ),
    (
        "spec.volumes[].*",
        "not supported: one host has no network or cloud storage; it mounts emptyDir, hostPath, \
         configMap, secret, downwardAPI, projected and persistentVolumeClaim volumes",
    ),
    (
        "spec.volumes[].projected.sources[].serviceAccountToken",
        "not supported: there is no API server to issue a service-account token",
    ),
    (
        "spec.volumes[].projected.sources[].clusterTrustBundle",
        "not supported: there is no API server to hold trust bundles; mount the certificates \
         from a Secret or a hostPath",
    ),
    (
        "spec.volumes[].projected.sources[].podCertificate",
        "not supported: there is no API server or signer to issue a pod certificate; mount one \
         from a Secret or a hostPath",
    ),
    (
        "spec.resourceClaims",
        "not supported: a single host has no dynamically allocated devices",
    ),
    (
        "spec.securityContext.sysctls",
        "not supported: a guest has no kernel of its own to tune",
    ),
    (
        "spec.securityContext.windowsOptions",
        "not supported: a component is not a Windows container",
    ),
    (
        "spec.containers[].securityContext.windowsOptions",
        "not supported: a component is not a Windows container",
    ),
    (
        "spec.ephemeralContainers",
        "not supported: ephemeral containers are added to a running pod by `kubectl debug`",
    ),
];

/// What wasmlet does with a field of a workload's `spec` (beside its pod `template`).
#[derive(Clone, Copy)]
pub(super) enum Treat {
    /// Run as Kubernetes runs it.
    Run,
    /// Accepted and ignored (listed in each pod's `IgnoredFields` event). Why is in the
    /// comment beside it, and in docs/manifests.md. (A field of a workload's spec that is
    /// known but in neither list is refused as not supported yet.)
    Ignore,
}

/// The fields of the workloads' specs, by kind (`*`: every workload kind).
pub(super) const WORKLOAD_FIELDS: &[(&str, &str, Treat)] = &[
    ("*", "template", Treat::Run),
    ("*", "selector", Treat::Run),
    ("*", "minReadySeconds", Treat::Ignore), // nothing waits on availability
    ("*", "revisionHistoryLimit", Treat::Ignore), // a run keeps no revisions
    ("*", "updateStrategy", Treat::Ignore),  // a run does no rolling updates
    ("Deployment", "replicas", Treat::Run),
    ("Deployment", "strategy", Treat::Ignore), // a run does no rolling updates
    ("Deployment", "progressDeadlineSeconds", Treat::Ignore), // a run does no rollouts
    ("Deployment", "paused", Treat::Ignore),   // a run does no rollouts
    ("ReplicaSet", "replicas", Treat::Run),
    ("ReplicationController", "replicas", Treat::Run),
    ("StatefulSet", "replicas", Treat::Run),
    ("StatefulSet", "volumeClaimTemplates", Treat::Run),
    ("StatefulSet", "podManagementPolicy", Treat::Run),
    ("StatefulSet", "ordinals", Treat::Run),
    ("StatefulSet", "serviceName", Treat::Ignore), // there are no Services, so no DNS names
    (
        "StatefulSet",
        "persistentVolumeClaimRetentionPolicy",
        Treat::Ignore, // claims are directories, always kept
    ),
    ("Job", "parallelism", Treat::Run),
    ("Job", "completions", Treat::Run),
    ("Job", "backoffLimit", Treat::Run),
    ("Job", "completionMode", Treat::Run),
    ("Job", "activeDeadlineSeconds", Treat::Run),
    ("Job", "suspend", Treat::Run),
    ("Job", "manualSelector", Treat::Ignore), // the job's pods are its own
    ("Job", "ttlSecondsAfterFinished", Treat::Ignore), // nothing is cleaned up after a run
    ("Job", "podReplacementPolicy", Treat::Ignore), // a failed pod is replaced once it has ended
    ("Job", "managedBy", Treat::Ignore),      // wasmlet runs the job itself
    ("Job", "podFailurePolicy", Treat::Run),
    ("Job", "successPolicy", Treat::Run),
    ("Job", "backoffLimitPerIndex", Treat::Run),
    ("Job", "maxFailedIndexes", Treat::Run),
];
