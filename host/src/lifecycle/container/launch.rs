//! What every instance of a container run is made from ([`launcher`]): its components, context,
//! command line and environment, files and log.

use std::sync::Arc;

use crate::events::PodUpdate;
use crate::lifecycle::shared::{PodShared, expand_references};
use crate::manifest::ContainerSpec;
use crate::runtime::{
    ContainerContext, ContainerTmp, EmbedderScope, Launcher, LoadedContainer, Mount,
};

/// What every instance of one run of the container of `spec` is made from: its components,
/// its context, its command line and environment (resolved), its files, and its output to the
/// pod's log.
pub(super) fn launcher(
    pod: &Arc<PodShared>,
    spec: &ContainerSpec,
    loaded: LoadedContainer,
    context: Arc<ContainerContext>,
    mounts: Vec<Mount>,
    tmp_dir: Arc<ContainerTmp>,
) -> Launcher {
    let env = pod.container_env(spec);
    // `command` then `args` (or its name then `args`), with `$(NAME)` references to its
    // environment expanded, as Kubernetes does.
    let start = if spec.command.is_empty() {
        vec![spec.name.clone()]
    } else {
        spec.command.clone()
    };
    let argv = start
        .iter()
        .chain(&spec.args)
        .map(|arg| expand_references(arg, &env))
        .collect();
    let sink = pod.clone();
    Launcher {
        runtime: pod.host.runtime.clone(),
        name: spec.name.as_str().into(),
        loaded,
        context,
        argv,
        env,
        working_dir: spec.working_dir.clone(),
        mounts,
        tmp_dir: Some(tmp_dir),
        log_sink: Arc::new(move |line| sink.hub.publish(PodUpdate::Log(line))),
        embedder: Arc::new(EmbedderScope {
            imports: pod.imports.clone(),
            pod: pod.spec.name.clone(),
            namespace: pod.spec.namespace.clone(),
            container: spec.name.clone(),
        }),
    }
}
