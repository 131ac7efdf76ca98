//! An embedder's own host interfaces ([`Imports`]): what its `bindgen!`-generated
//! `add_to_linker` adds to the linker guests are linked with, and the per-instance state those
//! functions work on, made for each instance that uses it ([`EmbedderStates`]).
//!
//! The state lives in the instance's store beside wasmlet's own, so it is dropped with the
//! instance — at its end or at its kill — and no two instances share one unless the embedder
//! puts something shared (an `Arc`) into it.

use std::any::{Any, TypeId};
use std::sync::Arc;

use wasmtime::component::Linker;

use super::store::GuestState;
use crate::events::LogSource;

/// Adds one set of host functions to a linker.
type AddToLinker = dyn Fn(&mut Linker<GuestState>) -> wasmtime::Result<()> + Send + Sync;
/// Makes the state of one set for one instance.
type MakeState = dyn Fn(&InstanceInfo) -> Box<dyn Any + Send> + Send + Sync;

/// Host interfaces of the embedder's that guests may import, beside WASI, `wasi:http` and
/// `wasmlet:lifecycle/control`: for the whole host
/// ([`HostConfig::imports`](crate::HostConfig::imports)) or for one pod
/// ([`Host::start_pod_with`](crate::Host::start_pod_with)).
///
/// Each set is what `wasmtime::component::bindgen!` generates for a WIT interface or world —
/// its `add_to_linker` — with a state type `D` of the embedder's, which the generated host
/// trait is implemented for. wasmlet makes a `D` for each instance that calls one of the set's
/// functions (with what [`InstanceInfo`] says of the instance), and the getter handed to
/// `add_to_linker` finds it with [`GuestState::embedder_data`]:
///
/// ```ignore
/// wasmtime::component::bindgen!({ path: "wit", world: "plugin" });
///
/// struct PluginHost { container: String }
/// impl example::plugins::host::Host for PluginHost { /* log, get-config, … */ }
///
/// let imports = wasmlet::Imports::new().with(
///     "example:plugins/host",
///     |linker| {
///         example::plugins::host::add_to_linker::<_, wasmtime::component::HasSelf<PluginHost>>(
///             linker,
///             |state| state.embedder_data::<PluginHost>(),
///         )
///     },
///     |instance| PluginHost { container: instance.container.clone() },
/// );
/// ```
///
/// A component that imports something neither wasmlet nor these sets provide is refused when
/// it is loaded, with the name of what is missing.
#[derive(Clone, Default)]
pub struct Imports {
    sets: Vec<Arc<ImportSet>>,
}

struct ImportSet {
    /// Which set it is: unique in the process, never reused.
    id: u64,
    /// What the set provides, as the embedder names it (for errors).
    name: String,
    add_to_linker: Box<AddToLinker>,
    state_type: TypeId,
    make_state: Box<MakeState>,
}

impl std::fmt::Debug for Imports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.sets.iter().map(|set| &set.name))
            .finish()
    }
}

/// What an embedder's state is made for: the instance, and whose it is.
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    /// The pod's name.
    pub pod: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The container's name.
    pub container: String,
    /// What the instance is for: the main process, a hook, an HTTP handler, a call.
    pub source: LogSource,
}

impl Imports {
    /// No host interfaces of the embedder's.
    pub fn new() -> Imports {
        Imports::default()
    }

    /// These imports and one more set: `name` says what it provides (for errors: the
    /// interface or world, `example:plugins/host`), `add_to_linker` adds its functions, and
    /// `make_state` makes the state they run on, once per instance that calls one of them.
    ///
    /// Each set has a state type of its own: two sets with the same `D` would share one state
    /// per instance, made by the first.
    pub fn with<D: Send + 'static>(
        mut self,
        name: impl Into<String>,
        add_to_linker: impl Fn(&mut Linker<GuestState>) -> wasmtime::Result<()> + Send + Sync + 'static,
        make_state: impl Fn(&InstanceInfo) -> D + Send + Sync + 'static,
    ) -> Imports {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        self.sets.push(Arc::new(ImportSet {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            name: name.into(),
            add_to_linker: Box::new(add_to_linker),
            state_type: TypeId::of::<D>(),
            make_state: Box::new(move |info| Box::new(make_state(info))),
        }));
        self
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// What they provide, as their names say: `a, b and c`.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.sets.iter().map(|set| set.name.as_str()).collect()
    }

    /// Adds every set's functions to `linker`.
    pub(crate) fn add_to_linker(&self, linker: &mut Linker<GuestState>) -> anyhow::Result<()> {
        for set in &self.sets {
            (set.add_to_linker)(linker).map_err(|error| {
                anyhow::Error::from(error).context(format!(
                    "adding the embedder's host interface `{}` to the linker",
                    set.name
                ))
            })?;
        }
        Ok(())
    }

    /// These and `more`, `more`'s after.
    pub(crate) fn and(&self, more: &Imports) -> Imports {
        Imports {
            sets: self.sets.iter().chain(&more.sets).cloned().collect(),
        }
    }

    /// An identity of the sets (which linker they make): equal for clones of one `Imports`,
    /// never for another.
    pub(crate) fn key(&self) -> Vec<u64> {
        self.sets.iter().map(|set| set.id).collect()
    }

    /// A handle that tells whether these sets are still in use (held by a config or a pod).
    pub(crate) fn watch(&self) -> ImportsInUse {
        ImportsInUse(self.sets.iter().map(Arc::downgrade).collect())
    }
}

/// Whether an [`Imports`]' sets are still held by anyone.
pub(crate) struct ImportsInUse(Vec<std::sync::Weak<ImportSet>>);

impl ImportsInUse {
    pub fn in_use(&self) -> bool {
        self.0.iter().all(|set| set.strong_count() > 0)
    }
}

/// Whose instances an [`Imports`]' states are made for: the sets a container's instances are
/// linked with, and what the states are told of the container.
#[derive(Debug, Clone)]
pub(crate) struct EmbedderScope {
    pub imports: Imports,
    pub pod: String,
    pub namespace: String,
    pub container: String,
}

/// One instance's states of the embedder's sets, made when first asked for.
pub(crate) struct EmbedderStates {
    scope: Option<Arc<EmbedderScope>>,
    source: LogSource,
    states: Vec<Box<dyn Any + Send>>,
}

impl EmbedderStates {
    pub fn new(scope: Option<Arc<EmbedderScope>>, source: LogSource) -> Self {
        EmbedderStates {
            scope,
            source,
            states: Vec::new(),
        }
    }

    /// The state of type `D`, made now if this instance has none yet.
    fn get<D: 'static>(&mut self) -> &mut D {
        let index = match self.states.iter().position(|state| state.is::<D>()) {
            Some(index) => index,
            None => {
                // Only a set's own functions ask for its state, and they are linked only where
                // its scope is: a `D` with no set is a getter that names the wrong type.
                let scope = self.scope.as_ref().expect(
                    "GuestState::embedder_data: this instance was linked with no embedder imports",
                );
                let set = scope
                    .imports
                    .sets
                    .iter()
                    .find(|set| set.state_type == TypeId::of::<D>())
                    .unwrap_or_else(|| {
                        panic!(
                            "GuestState::embedder_data::<{}>: no set of Imports makes this type \
                             (its getter names another type than its `make_state` returns)",
                            std::any::type_name::<D>()
                        )
                    });
                let info = InstanceInfo {
                    pod: scope.pod.clone(),
                    namespace: scope.namespace.clone(),
                    container: scope.container.clone(),
                    source: self.source,
                };
                self.states.push((set.make_state)(&info));
                self.states.len() - 1
            }
        };
        self.states[index]
            .downcast_mut()
            .expect("found by its type")
    }
}

impl GuestState {
    /// The instance's state of type `D`, of the [`Imports`] set whose `make_state` returns a
    /// `D` (made on first use): what the getter given to a `bindgen!` `add_to_linker` returns.
    ///
    /// # Panics
    ///
    /// If no set of the instance's imports makes a `D` — a getter that names another type than
    /// its set's `make_state` returns.
    pub fn embedder_data<D: 'static>(&mut self) -> &mut D {
        self.embedder.get::<D>()
    }
}
