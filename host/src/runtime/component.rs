//! Compiled components ([`LoadedComponent`]): loading, the checks that refuse what no instance
//! could run (wrong kind of module, missing imports, exports of the wrong type, too many
//! memories or tables), and the exports an instance may call ([`Entry`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::{ComponentExportIndex, InstancePre};

use super::compile_cache::{CompileCache, ComponentDigest};
use super::memory::{MAX_MEMORIES, MAX_TABLES};
use super::store::GuestState;

/// The compiled components of one container: its image, and the exec commands its hooks and
/// probes run.
#[derive(Clone)]
pub(crate) struct LoadedContainer {
    pub main: Arc<LoadedComponent>,
    pub exec: HashMap<PathBuf, Arc<LoadedComponent>>,
    /// The bundled shell, if an exec hook uses it.
    pub shell: Option<Arc<LoadedComponent>>,
    pub load_time: Duration,
    /// How the main component was compiled.
    pub compilation: super::Compilation,
}

/// Which export an instance calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// `wasi:cli/run#run`: the main process, or an exec command component.
    Run,
    /// `wasmlet:lifecycle/hooks#post-start`.
    PostStart,
    /// `wasmlet:lifecycle/hooks#pre-stop`.
    PreStop,
    /// `wasi:http/incoming-handler#handle`, with the request in
    /// [`InstanceIo::http`](super::InstanceIo::http).
    Handle,
    /// The embedder's calls, in [`InstanceIo::call`](super::InstanceIo::call), into whatever
    /// the component exports.
    Call,
}

/// A compiled component, ready to instantiate, with its exports looked up once.
pub struct LoadedComponent {
    pub(crate) pre: InstancePre<GuestState>,
    run: Option<ComponentExportIndex>,
    post_start: Option<ComponentExportIndex>,
    pre_stop: Option<ComponentExportIndex>,
    handler: Option<ComponentExportIndex>,
    /// For a component compiled for the instance pool's engine: how to compile it for the
    /// engine that allocates on demand, for an instance that does not fit the pool
    /// ([`WasmEngine::place`](super::engine::WasmEngine::place)), and that build once made.
    pub(crate) on_demand: Option<OnDemandTwin>,
}

/// The build of a pooled component for the engine that allocates on demand: made when an
/// instance of it first does not fit the pool, then kept.
pub(crate) struct OnDemandTwin {
    pub(crate) made: std::sync::OnceLock<std::sync::Arc<LoadedComponent>>,
    pub(crate) make: Box<dyn Fn() -> anyhow::Result<LoadedComponent> + Send + Sync>,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // What it exports; the compiled code says nothing readable.
        f.debug_struct("LoadedComponent")
            .field("run", &self.run.is_some())
            .field("post_start", &self.post_start.is_some())
            .field("pre_stop", &self.pre_stop.is_some())
            .field("handler", &self.handler.is_some())
            .finish_non_exhaustive()
    }
}

impl LoadedComponent {
    /// This pooled component's build for the engine that allocates on demand, made on the
    /// first call (which blocks while it compiles) and kept.
    pub(crate) fn on_demand_build(&self) -> anyhow::Result<Arc<LoadedComponent>> {
        let twin = self
            .on_demand
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the component has no build beyond the pool"))?;
        if let Some(made) = twin.made.get() {
            return Ok(made.clone());
        }
        let made = Arc::new((twin.make)()?);
        Ok(twin.made.get_or_init(|| made).clone())
    }

    /// Compiles a component given as bytes (from `cache`, if it holds the build, and into it;
    /// with the bytes' digest); `path` names it in errors.
    pub(crate) fn from_bytes(
        engine: &Engine,
        cache: Option<(&CompileCache, &ComponentDigest)>,
        linker: &wasmtime::component::Linker<GuestState>,
        bytes: &[u8],
        path: &Path,
        embedder: &[String],
    ) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        if !bytes.starts_with(b"\0asm") {
            anyhow::bail!(
                "`{}` is not WebAssembly (it does not start with the `\\0asm` magic); expected a \
                 component built for wasm32-wasip2",
                path.display()
            );
        }
        if wasmparser_is_core_module(bytes) {
            anyhow::bail!(
                "`{}` is a core WebAssembly module, not a component; build it for \
                 wasm32-wasip2 (or wrap it with `wasm-tools component new`)",
                path.display()
            );
        }
        let component = match cache {
            Some((cache, digest)) => cache.compile(engine, bytes, digest),
            None => wasmtime::component::Component::new(engine, bytes),
        }
        .map_err(anyhow::Error::from)
        .with_context(|| format!("compiling component `{}`", path.display()))?;
        // What no instance could hold is refused now, by name, rather than at every start. (The
        // count of core instances is not known before instantiation: the store's limit holds it.)
        if let Some(needed) = component.resources_required() {
            for (count, what, most) in [
                (needed.num_memories, "linear memories", MAX_MEMORIES),
                (needed.num_tables, "tables", MAX_TABLES),
            ] {
                anyhow::ensure!(
                    usize::try_from(count).is_ok_and(|count| count <= most),
                    "component `{}` defines {count} {what}; wasmlet allows one instance at most \
                     {most}",
                    path.display()
                );
            }
        }
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                let besides = if embedder.is_empty() {
                    String::new()
                } else {
                    format!(", and the embedder's {}", embedder.join(", "))
                };
                format!(
                    "component `{}` imports something wasmlet does not provide \
                     (wasmlet provides WASI 0.2, wasi:http and wasmlet:lifecycle/control{besides})",
                    path.display()
                )
            })?;
        let export_of = |interface_prefix: &str, function: &str| {
            let ty = component.component_type();
            let (name, _) = ty
                .exports(engine)
                .find(|(name, _)| name.starts_with(interface_prefix))?;
            let interface = component.get_export_index(None, name)?;
            component.get_export_index(Some(&interface), function)
        };
        // An export of the right name must have the right type: caught here, with its name,
        // rather than as a failed call when the container runs.
        use wasmtime::component::types::ComponentItem;
        use wasmtime::component::types::Type;
        let ty = component.component_type();
        for (interface_prefix, function, expected, fits) in [
            (
                "wasi:cli/run@0.2.",
                "run",
                "func() -> result",
                (&|f: &wasmtime::component::types::ComponentFunc| {
                    f.params().len() == 0
                        && f.results().len() == 1
                        && f.results().all(|r| {
                            matches!(r, Type::Result(ref r) if r.ok().is_none() && r.err().is_none())
                        })
                }) as &dyn Fn(&wasmtime::component::types::ComponentFunc) -> bool,
            ),
            (
                "wasmlet:lifecycle/hooks@0.1.",
                "post-start",
                "func() -> hook-outcome",
                &|f| f.params().len() == 0 && f.results().len() == 1,
            ),
            (
                "wasmlet:lifecycle/hooks@0.1.",
                "pre-stop",
                "func() -> hook-outcome",
                &|f| f.params().len() == 0 && f.results().len() == 1,
            ),
            (
                "wasi:http/incoming-handler@0.2.",
                "handle",
                "func(request: incoming-request, response-out: response-outparam)",
                &|f| f.params().len() == 2 && f.results().len() == 0,
            ),
        ] {
            let Some((name, exported)) = ty
                .exports(engine)
                .find(|(name, _)| name.starts_with(interface_prefix))
            else {
                continue;
            };
            let ComponentItem::ComponentInstance(instance) = exported.ty else {
                continue;
            };
            let found = instance
                .exports(engine)
                .find(|(export, _)| *export == function)
                .map(|(_, item)| item.ty);
            let fitting = match &found {
                Some(ComponentItem::ComponentFunc(func)) => fits(func),
                None => continue,
                Some(_) => false,
            };
            anyhow::ensure!(
                fitting,
                "component `{}`: its export `{name}#{function}` has the wrong type; wasmlet \
                 expects `{function}: {expected}` (is it built against another version of the \
                 interface?)",
                path.display()
            );
        }
        // A component built with wasmlet-sdk says which hooks it implements; one that does not
        // say is asked at each hook, and may answer not-implemented.
        let (has_post_start, has_pre_stop) = declared_hooks(bytes).unwrap_or((true, true));
        Ok(LoadedComponent {
            run: export_of("wasi:cli/run@0.2.", "run"),
            post_start: export_of("wasmlet:lifecycle/hooks@0.1.", "post-start")
                .filter(|_| has_post_start),
            pre_stop: export_of("wasmlet:lifecycle/hooks@0.1.", "pre-stop")
                .filter(|_| has_pre_stop),
            handler: export_of("wasi:http/incoming-handler@0.2.", "handle"),
            pre,
            on_demand: None,
        })
    }

    /// Whether the component exports `entry`.
    pub(crate) fn exports(&self, entry: Entry) -> bool {
        match entry {
            Entry::Call => self.exports_functions_of_its_own(),
            _ => self.export(entry).is_some(),
        }
    }

    /// Whether the component has a postStart hook of its own (one it implements, as far as
    /// wasmlet can tell before calling it).
    pub fn has_post_start(&self) -> bool {
        self.post_start.is_some()
    }

    /// Whether the component has a preStop hook of its own.
    pub fn has_pre_stop(&self) -> bool {
        self.pre_stop.is_some()
    }

    pub(super) fn export(&self, entry: Entry) -> Option<&ComponentExportIndex> {
        match entry {
            Entry::Run => self.run.as_ref(),
            Entry::PostStart => self.post_start.as_ref(),
            Entry::PreStop => self.pre_stop.as_ref(),
            Entry::Handle => self.handler.as_ref(),
            Entry::Call => None,
        }
    }

    /// Whether the component exports anything beside `wasi:cli/run`, wasi:http's handler and
    /// wasmlet's hooks: functions of its own, for the embedder to call.
    pub(crate) fn exports_functions_of_its_own(&self) -> bool {
        let engine = self.pre.engine();
        self.pre
            .component()
            .component_type()
            .exports(engine)
            .any(|(name, _)| {
                ![
                    "wasi:cli/run@",
                    "wasi:http/incoming-handler@",
                    "wasmlet:lifecycle/hooks@",
                ]
                .iter()
                .any(|known| name.starts_with(known))
            })
    }
}

/// The hooks a component built with wasmlet-sdk declares in its `wasmlet-hooks` custom section
/// (postStart, preStop), wherever in the component's modules the section is.
fn declared_hooks(bytes: &[u8]) -> Option<(bool, bool)> {
    wasmparser::Parser::new(0)
        .parse_all(bytes)
        .filter_map(Result::ok)
        .find_map(|payload| match payload {
            wasmparser::Payload::CustomSection(section) if section.name() == "wasmlet-hooks" => {
                match section.data() {
                    [post_start, pre_stop, ..] => Some((*post_start != 0, *pre_stop != 0)),
                    _ => None,
                }
            }
            _ => None,
        })
}

/// A core module starts with the magic and version 1; a component has the same magic and a
/// different version/layer field.
fn wasmparser_is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[0..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}
