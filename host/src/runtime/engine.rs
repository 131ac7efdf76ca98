//! The wasm engine ([`WasmEngine`]): the wasmtime `Engine` with the linker of all that guests
//! may import and the cache of compiled components, and the epoch ticker ([`EpochTicker`]) that
//! time-slices CPU-bound guests and hands freed memory back once instances end.
//!
//! A large component's first start does not wait for the optimising compiler (Cranelift takes
//! seconds for the 10-20 MB components Python and JavaScript toolchains make): it is compiled
//! by the baseline compiler (Winch, several times faster) and starts on that code, while a
//! background thread compiles the optimised build into the compile cache. Later loads, in this
//! process or the next, use the optimised build.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

use super::compile_cache::{CompileCache, ComponentDigest};
use super::component::{Entry, LoadedComponent, OnDemandTwin};
use super::imports::{Imports, ImportsInUse};
use super::release::MemoryReleaser;
use super::store::{GuestState, add_to_linker};

/// The slots of the pooling allocator ([`HostConfig::instance_pool`](crate::HostConfig::instance_pool)):
/// instances taken from slots reserved up front and reused without asking the kernel. What
/// does not fit — more instances alive at once than there are slots, a container whose memory
/// limit is above a slot's, a component larger than a slot — is allocated on demand instead,
/// as without a pool: a pool never refuses an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstancePool {
    /// Instances from the pool alive at once (main, hooks, handlers and exec commands
    /// together); the ones beyond are allocated on demand.
    pub instances: u32,
    /// The most memory one pooled instance may have; a container whose memory limit is larger,
    /// or that has none, gets its instances on demand when this is under 4 GiB (the most a
    /// 32-bit memory can have).
    pub max_memory: u64,
}

/// The most memory a 32-bit linear memory can have.
const FOUR_GIB: u64 = 1 << 32;

impl Default for InstancePool {
    /// The pool a host gets unless told otherwise: [`InstancePool::for_this_machine`].
    fn default() -> Self {
        InstancePool::for_this_machine()
    }
}

impl InstancePool {
    /// A pool of `instances` slots whose memories may have the full 4 GiB.
    pub fn with_slots(instances: u32) -> InstancePool {
        InstancePool {
            instances,
            max_memory: FOUR_GIB,
        }
    }

    /// A pool sized for this machine: a slot per 16 MiB of its memory, from 64 to 1000 slots.
    /// A slot reserves address space (4 GiB and a guard region for each of its memories, which
    /// is what lets compiled code skip bounds checks), not memory: an idle slot holds no
    /// resident pages. The cap keeps the fiber stacks, which the pool maps (with a guard page
    /// each) when the host starts, to a few milliseconds of start-up.
    pub fn for_this_machine() -> InstancePool {
        let memory = rustix::system::sysinfo();
        let bytes = u64::from(memory.mem_unit).max(1) * memory.totalram as u64;
        let slots = (bytes / (16 << 20)).clamp(64, 1000);
        InstancePool::with_slots(u32::try_from(slots).unwrap_or(1000))
    }
}

impl InstancePool {
    /// The pool for a host that runs `pods` and nothing else (the `wasmlet run` command): one
    /// when some container makes instances again and again — it serves HTTP (each request is
    /// an instance) or has probes (each check may be one) — with 64 slots for each such
    /// container, at most what [`InstancePool::for_this_machine`] gives; else none, since
    /// setting a pool up costs a few milliseconds of start-up that a pod making one instance
    /// per container never earns back.
    pub fn for_pods<'a>(
        pods: impl IntoIterator<Item = &'a crate::PodSpec>,
    ) -> Option<InstancePool> {
        let churning = pods
            .into_iter()
            .flat_map(|pod| pod.init_containers.iter().chain(&pod.containers))
            .filter(|container| !container.ports.is_empty() || container.probes().next().is_some())
            .count();
        let machine = InstancePool::for_this_machine();
        (churning > 0).then(|| InstancePool {
            instances: u32::try_from(churning * 64)
                .unwrap_or(u32::MAX)
                .min(machine.instances),
            ..machine
        })
    }
}

/// Memories and tables one pooled instance may define; a component with more is allocated on
/// demand. (A Rust, Python or JavaScript guest has one memory and a few tables.)
const POOLED_MEMORIES_PER_INSTANCE: u32 = 2;
const POOLED_TABLES_PER_INSTANCE: u32 = 8;
const POOLED_CORE_INSTANCES_PER_INSTANCE: u32 = 32;

/// The most of a pooled slot's linear memory, and of its table, that stays resident once its
/// instance has ended, so that the next instance in the slot finds it zeroed and mapped. It
/// bounds what the free slots hold: a slot keeps no more than its last instance wrote.
const KEEP_RESIDENT_MEMORY: usize = 256 << 10;
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// How running wasm is interrupted: by the epoch ticker (real time), or after a fixed amount of
/// fuel (deterministic mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interruption {
    Epoch,
    Fuel,
}

/// The engine, the linker and the compiled components: what hosts of one kind can share.
pub(crate) struct WasmEngine {
    /// The optimising compiler's engine: it takes instances from the pool, if there is one.
    pub engine: Engine,
    /// The linker of what wasmlet provides (WASI, `wasi:http`, `wasmlet:lifecycle/control`).
    pub linker: Linker<GuestState>,
    /// With an instance pool: its slots, and the engine that allocates on demand what does
    /// not fit them (its linker made on first use).
    pool: Option<Pool>,
    /// The baseline compiler's engine, for a large component's first start (real time only),
    /// and the size from which it is used.
    baseline: Option<(Engine, Linker<GuestState>, u64)>,
    /// Linkers with an embedder's host interfaces besides, by the interfaces' identity: the
    /// optimising engine's and the baseline one's.
    embedder_linkers: Mutex<HashMap<Vec<u64>, Arc<Linkers>>>,
    /// Compiled components kept between runs (for the optimising engines).
    compile_cache: Option<Arc<CompileCache>>,
    /// By path and the embedder interfaces they were linked with.
    components: Mutex<HashMap<(PathBuf, Vec<u64>), CachedComponent>>,
    /// Optimised builds being compiled in the background.
    optimizing: Mutex<Vec<JoinHandle<()>>>,
    /// The bundled shell, compiled on first use.
    shell: std::sync::OnceLock<Arc<LoadedComponent>>,
}

/// The instance pool: the slots wasmlet hands out, and the engine for the instances that do not
/// fit ([`WasmEngine::place`]).
struct Pool {
    config: InstancePool,
    /// Slots not handed out.
    free: Arc<std::sync::atomic::AtomicU32>,
    on_demand: Engine,
    on_demand_linker: std::sync::OnceLock<Linker<GuestState>>,
}

/// Where an instance goes ([`WasmEngine::place`]).
pub(crate) enum Placement {
    /// This component (in a slot of the pool, if one comes with it).
    Ready(Arc<LoadedComponent>, Option<PoolSlot>),
    /// On demand, on the engine given, on this pooled component's build for it, which is not
    /// made yet: [`LoadedComponent::on_demand_build`] makes it, blocking (a compilation, from
    /// the compile cache if it has it).
    OnDemand(Arc<LoadedComponent>, Engine),
}

/// A slot of the instance pool, handed back when dropped (after the instance's store).
pub(crate) struct PoolSlot(Arc<std::sync::atomic::AtomicU32>);

impl Drop for PoolSlot {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The linkers a component is checked and instantiated with: the optimising engine's, and the
/// baseline engine's if there is one; and what they provide beside wasmlet's own, for errors.
struct Linkers {
    optimized: Linker<GuestState>,
    baseline: Option<Linker<GuestState>>,
    /// The on-demand engine's, with an instance pool.
    on_demand: Option<Linker<GuestState>>,
    embedder: Vec<String>,
    /// Whether the embedder still holds the interfaces: once it does not, no pod can ask for
    /// these linkers again, and they and the components linked with them are dropped.
    in_use: ImportsInUse,
}

/// How a component was compiled, for its `Pulled` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compilation {
    /// By the optimising compiler (or from the compile cache).
    Optimized,
    /// By the baseline compiler, the optimised build following in the background.
    Baseline,
}

/// wasmlet's bundled shell (`host/sh`), built by `build.rs`.
const SHELL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sh.wasm"));

/// A component file against the components loaded before ([`WasmEngine::look_up`]).
struct Lookup {
    /// Its key in [`WasmEngine::components`].
    key: (PathBuf, Vec<u64>),
    /// The file's modification time and length, which a loaded component must match.
    modified: Option<SystemTime>,
    len: u64,
    /// Its compiled component, if it was loaded and the file is unchanged.
    found: Option<(Arc<LoadedComponent>, Compilation)>,
}

struct CachedComponent {
    modified: Option<SystemTime>,
    len: u64,
    component: Arc<LoadedComponent>,
    compilation: Compilation,
}

impl WasmEngine {
    /// An engine for `interruption`; `compile_cache`: where compiled code is kept between runs;
    /// `instance_pool`: the pooling allocator's slots, if any; `quick_first_start`: the size from
    /// which a component not yet optimised starts on the baseline compiler's code.
    pub fn new(
        interruption: Interruption,
        compile_cache: Option<&Path>,
        instance_pool: Option<InstancePool>,
        quick_first_start: Option<u64>,
    ) -> anyhow::Result<Arc<WasmEngine>> {
        let engine = Engine::new(&engine_config(
            interruption,
            instance_pool,
            wasmtime::Strategy::Cranelift,
        ))
        .map_err(anyhow::Error::from)
        .context("creating the wasmtime engine")?;
        let mut linker = Linker::new(&engine);
        add_to_linker(&mut linker)?;
        let pool = match instance_pool {
            Some(config) => Some(Pool {
                config,
                free: Arc::new(std::sync::atomic::AtomicU32::new(config.instances)),
                on_demand: Engine::new(&engine_config(
                    interruption,
                    None,
                    wasmtime::Strategy::Cranelift,
                ))
                .map_err(anyhow::Error::from)
                .context("creating the wasmtime engine for instances beyond the pool")?,
                on_demand_linker: std::sync::OnceLock::new(),
            }),
            None => None,
        };
        // Deterministic mode counts fuel, which must not depend on the compiler: no baseline.
        let baseline = match (interruption, quick_first_start) {
            (Interruption::Fuel, _) | (_, None) => None,
            (Interruption::Epoch, Some(from)) => {
                // Not cached: once the optimised build is, the baseline one is never used again.
                let config = engine_config(interruption, None, wasmtime::Strategy::Winch);
                match Engine::new(&config) {
                    Ok(engine) => {
                        let mut linker = Linker::new(&engine);
                        add_to_linker(&mut linker)?;
                        Some((engine, linker, from))
                    }
                    Err(error) => {
                        tracing::warn!("no baseline compiler: {error:#}");
                        None
                    }
                }
            }
        };
        Ok(Arc::new(WasmEngine {
            engine,
            linker,
            pool,
            baseline,
            embedder_linkers: Mutex::new(HashMap::new()),
            compile_cache: compile_cache.map(|directory| Arc::new(CompileCache::new(directory))),
            components: Mutex::new(HashMap::new()),
            optimizing: Mutex::new(Vec::new()),
            shell: std::sync::OnceLock::new(),
        }))
    }

    /// The engines instances may run on: the optimising one, the baseline one and the one
    /// beyond the instance pool, if any.
    pub fn engines(&self) -> Vec<Engine> {
        std::iter::once(self.engine.clone())
            .chain(self.baseline.as_ref().map(|(engine, ..)| engine.clone()))
            .chain(self.pool.as_ref().map(|pool| pool.on_demand.clone()))
            .collect()
    }

    /// Where an instance of `component` for a container whose memory limit is `memory_limit`
    /// goes: a slot of the instance pool if the component was compiled for it, a slot is free
    /// and the limit fits one; else on demand, on the component's build for the on-demand
    /// engine.
    pub fn place(&self, component: &Arc<LoadedComponent>, memory_limit: Option<u64>) -> Placement {
        let (Some(pool), Some(twin)) = (&self.pool, &component.on_demand) else {
            return Placement::Ready(component.clone(), None);
        };
        use std::sync::atomic::Ordering;
        let fits = pool.config.max_memory >= FOUR_GIB
            || memory_limit.is_some_and(|limit| limit <= pool.config.max_memory);
        if fits
            && pool
                .free
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                    free.checked_sub(1)
                })
                .is_ok()
        {
            return Placement::Ready(component.clone(), Some(PoolSlot(pool.free.clone())));
        }
        match twin.made.get() {
            Some(made) => Placement::Ready(made.clone(), None),
            None => Placement::OnDemand(component.clone(), pool.on_demand.clone()),
        }
    }

    /// The on-demand engine's linker with wasmlet's own interfaces (made on first use).
    fn on_demand_linker(pool: &Pool) -> anyhow::Result<Linker<GuestState>> {
        if let Some(linker) = pool.on_demand_linker.get() {
            return Ok(linker.clone());
        }
        let mut linker = Linker::new(&pool.on_demand);
        add_to_linker(&mut linker)?;
        Ok(pool.on_demand_linker.get_or_init(|| linker).clone())
    }

    /// Optimised builds still being compiled in the background.
    pub fn optimizing(&self) -> usize {
        let mut pending = self.optimizing.lock().unwrap();
        pending.retain(|thread| !thread.is_finished());
        pending.len()
    }

    /// Waits until the optimised builds being compiled in the background are in the compile
    /// cache; says how many there were.
    pub fn finish_optimizing(&self) -> usize {
        let pending = std::mem::take(&mut *self.optimizing.lock().unwrap());
        let count = pending.len();
        for thread in pending {
            let _ = thread.join();
        }
        count
    }
}

/// The engine configuration for `interruption` with `strategy`; `instance_pool`: the pooling
/// allocator's slots, if any.
fn engine_config(
    interruption: Interruption,
    instance_pool: Option<InstancePool>,
    strategy: wasmtime::Strategy,
) -> Config {
    {
        let mut engine_config = Config::new();
        engine_config.strategy(strategy);
        engine_config.wasm_component_model(true);
        match interruption {
            Interruption::Epoch => engine_config.epoch_interruption(true),
            Interruption::Fuel => engine_config.consume_fuel(true),
        };
        #[allow(deprecated)]
        engine_config.async_support(true);
        // Fewer memory mappings per instance (the kernel allows 65530 by default), so that one
        // host holds 10,000 pods: no guard region before linear memory (the one after it, which
        // bounds checks rely on, stays), and data segments copied rather than mapped.
        engine_config.guard_before_linear_memory(false);
        engine_config.memory_init_cow(false);
        if let Some(pool) = instance_pool {
            let mut config = wasmtime::PoolingAllocationConfig::new();
            // Every slot can hold a whole instance (wasmlet counts the slots it hands out, so
            // no total below runs out before the instances do); a component that needs more
            // than a slot fails to compile for this engine and is allocated on demand.
            let slots = pool.instances;
            config
                .total_component_instances(slots)
                .total_core_instances(slots.saturating_mul(POOLED_CORE_INSTANCES_PER_INSTANCE))
                .max_core_instances_per_component(POOLED_CORE_INSTANCES_PER_INSTANCE)
                .total_memories(slots.saturating_mul(POOLED_MEMORIES_PER_INSTANCE))
                .max_memories_per_component(POOLED_MEMORIES_PER_INSTANCE)
                .total_tables(slots.saturating_mul(POOLED_TABLES_PER_INSTANCE))
                .max_tables_per_component(POOLED_TABLES_PER_INSTANCE)
                .total_stacks(slots)
                .total_gc_heaps(slots)
                .max_memory_size(usize::try_from(pool.max_memory).unwrap_or(usize::MAX));
            // A slot handed back is reset by rewriting the pages its instance wrote, found with
            // the kernel's PAGEMAP_SCAN (Linux 6.7 and later), rather than by `madvise`: in a
            // process of several threads each `madvise` interrupts every other core to flush
            // its TLB, which held an HTTP handler's instances to a third of the requests they
            // serve without. Without PAGEMAP_SCAN, keeping memory resident would rewrite it
            // whole: slots are reset by `madvise` alone then.
            if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
                config
                    .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
                    .table_keep_resident(KEEP_RESIDENT_TABLE)
                    .pagemap_scan(wasmtime::Enabled::Yes);
            }
            engine_config
                .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(config));
        }
        engine_config
    }
}

impl WasmEngine {
    /// The bundled shell, if it was compiled already.
    pub fn loaded_shell(&self) -> Option<Arc<LoadedComponent>> {
        self.shell.get().cloned()
    }

    /// The bundled shell, compiled once.
    pub fn shell(&self) -> anyhow::Result<Arc<LoadedComponent>> {
        if let Some(shell) = self.shell.get() {
            return Ok(shell.clone());
        }
        let digest = self
            .compile_cache
            .as_ref()
            .map(|_| ComponentDigest::of(SHELL));
        let shell = Arc::new(LoadedComponent::from_bytes(
            &self.engine,
            self.compile_cache.as_deref().zip(digest.as_ref()),
            &self.linker,
            SHELL,
            Path::new("<wasmlet's sh>"),
            &[],
        )?);
        Ok(self.shell.get_or_init(|| shell).clone())
    }

    /// Compiles the component at `path` (or reuses the compiled one if the file is unchanged)
    /// and checks that wasmlet provides all it imports. A large component not yet optimised
    /// is compiled by the baseline compiler, the optimised build following in the background
    /// ([module docs](self)).
    pub fn load_component(
        self: &Arc<Self>,
        path: &Path,
    ) -> anyhow::Result<(Arc<LoadedComponent>, Compilation)> {
        self.load_component_with(path, &Imports::new())
    }

    /// The same, linked with the embedder's host interfaces `imports` besides wasmlet's own.
    pub fn load_component_with(
        self: &Arc<Self>,
        path: &Path,
        imports: &Imports,
    ) -> anyhow::Result<(Arc<LoadedComponent>, Compilation)> {
        let linkers = self.linkers(imports)?;
        let (optimized_linker, baseline_linker) = match &linkers {
            Some(linkers) => (&linkers.optimized, linkers.baseline.as_ref()),
            None => (
                &self.linker,
                self.baseline.as_ref().map(|(_, linker, _)| linker),
            ),
        };
        let embedder = linkers.as_ref().map_or(&[][..], |l| &l.embedder[..]);
        let Lookup {
            key,
            modified,
            len,
            found,
        } = self.look_up(path, imports)?;
        if let Some(found) = found {
            return Ok(found);
        }
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading component `{}`", path.display()))?;
        let digest = self
            .compile_cache
            .as_ref()
            .map(|_| ComponentDigest::of(&bytes));
        let optimized = |bytes: &[u8]| {
            self.optimized(
                (bytes, digest.as_ref()),
                optimized_linker,
                linkers.as_ref(),
                path,
                embedder,
                modified,
            )
        };
        let (component, compilation) = match (&self.baseline, baseline_linker) {
            (Some((engine, _, from)), Some(linker))
                if bytes.len() as u64 >= *from && !self.optimized_is_cached(digest.as_ref()) =>
            {
                // What the baseline compiler cannot compile (a proposal it lacks), the
                // optimising one may: only its error is the component's.
                match LoadedComponent::from_bytes(engine, None, linker, &bytes, path, embedder) {
                    Ok(quick) => (quick, Compilation::Baseline),
                    Err(error) => {
                        tracing::debug!("baseline compiler: {error:#}");
                        (optimized(&bytes)?, Compilation::Optimized)
                    }
                }
            }
            _ => (optimized(&bytes)?, Compilation::Optimized),
        };
        let component = Arc::new(component);
        anyhow::ensure!(
            component.exports(Entry::Run)
                || component.exports(Entry::Handle)
                || component.exports(Entry::Call),
            "component `{}` exports neither `wasi:cli/run` nor `wasi:http/incoming-handler` nor \
             functions of its own: a container needs an entrypoint (build a command with `fn \
             main`, use wasmlet-sdk's `export!`, or export an HTTP handler or an interface to call)",
            path.display()
        );
        self.components.lock().unwrap().insert(
            key.clone(),
            CachedComponent {
                modified,
                len,
                component: component.clone(),
                compilation,
            },
        );
        if compilation == Compilation::Baseline {
            let linker = optimized_linker.clone();
            let embedder = embedder.to_vec();
            let compiled = (bytes, digest);
            self.optimize_in_background(key, modified, compiled, linker, linkers, embedder);
        }
        Ok((component, compilation))
    }

    /// The component at `path` linked with `imports`, if it was loaded before and the file is
    /// unchanged since: what [`WasmEngine::load_component_with`] returns without reading or
    /// compiling anything, which takes a few system calls and never blocks for long.
    pub fn loaded_component(
        &self,
        path: &Path,
        imports: &Imports,
    ) -> anyhow::Result<Option<(Arc<LoadedComponent>, Compilation)>> {
        Ok(self.look_up(path, imports)?.found)
    }

    /// Where the file at `path` stands against the components loaded before.
    fn look_up(&self, path: &Path, imports: &Imports) -> anyhow::Result<Lookup> {
        let metadata = std::fs::metadata(path)
            .with_context(|| format!("reading component `{}`", path.display()))?;
        let key = (
            path.canonicalize().unwrap_or_else(|_| path.to_path_buf()),
            imports.key(),
        );
        let modified = metadata.modified().ok();
        let found = (self.components.lock().unwrap().get(&key))
            .filter(|cached| cached.modified == modified && cached.len == metadata.len())
            .map(|cached| (cached.component.clone(), cached.compilation));
        Ok(Lookup {
            key,
            modified,
            len: metadata.len(),
            found,
        })
    }

    /// Compiles `bytes` (the component at `path`, last modified at `modified`; with its digest
    /// if there is a compile cache) with the optimising compiler, linked by `linker`
    /// (`linkers`: the embedder's set it is from). With an instance pool it is compiled for the
    /// pool's engine, its build for the on-demand engine made when an instance first does not
    /// fit ([`WasmEngine::place`]); a component that does not fit a slot (more memories or
    /// tables, larger instances) is compiled for the on-demand engine alone.
    fn optimized(
        self: &Arc<Self>,
        (bytes, digest): (&[u8], Option<&ComponentDigest>),
        linker: &Linker<GuestState>,
        linkers: Option<&Arc<Linkers>>,
        path: &Path,
        embedder: &[String],
        modified: Option<SystemTime>,
    ) -> anyhow::Result<LoadedComponent> {
        let cache = self.compile_cache.as_deref().zip(digest);
        if self.pool.is_none() {
            return LoadedComponent::from_bytes(&self.engine, cache, linker, bytes, path, embedder);
        }
        let on_demand_linker = {
            let wasm = Arc::downgrade(self);
            let linkers = linkers.cloned();
            move || -> anyhow::Result<(Engine, Linker<GuestState>)> {
                let wasm = wasm.upgrade().context("the host's engine is gone")?;
                let pool = wasm
                    .pool
                    .as_ref()
                    .context("the host has no instance pool")?;
                let linker = match linkers.as_ref().and_then(|l| l.on_demand.clone()) {
                    Some(linker) => linker,
                    None => Self::on_demand_linker(pool)?,
                };
                Ok((pool.on_demand.clone(), linker))
            }
        };
        match LoadedComponent::from_bytes(&self.engine, cache, linker, bytes, path, embedder) {
            Ok(mut pooled) => {
                let (path, embedder, len) = (path.to_path_buf(), embedder.to_vec(), bytes.len());
                let cache = self.compile_cache.clone();
                let make = move || {
                    // Compiled again (from the compile cache, if there is one) rather than kept
                    // as bytes: most components never need it.
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("reading component `{}`", path.display()))?;
                    let now = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                    anyhow::ensure!(
                        bytes.len() == len && now == modified,
                        "component `{}` changed since it was loaded; an instance beyond the \
                         instance pool needs it as it was (start the pod again)",
                        path.display()
                    );
                    let (engine, linker) = on_demand_linker()?;
                    let digest = cache.as_ref().map(|_| ComponentDigest::of(&bytes));
                    LoadedComponent::from_bytes(
                        &engine,
                        cache.as_deref().zip(digest.as_ref()),
                        &linker,
                        &bytes,
                        &path,
                        &embedder,
                    )
                };
                pooled.on_demand = Some(OnDemandTwin {
                    made: std::sync::OnceLock::new(),
                    make: Box::new(make),
                });
                Ok(pooled)
            }
            Err(pool_error) => {
                // Too large for a slot, or not a component wasmtime can compile at all: the
                // on-demand engine's error is the one that says which.
                let (engine, linker) = on_demand_linker()?;
                let component =
                    LoadedComponent::from_bytes(&engine, cache, &linker, bytes, path, embedder)?;
                tracing::debug!(
                    "component `{}` is not taken from the instance pool: {pool_error:#}",
                    path.display()
                );
                Ok(component)
            }
        }
    }

    /// The linkers with `imports` besides wasmlet's own, made once for each set; `None` for no
    /// imports (wasmlet's own linkers).
    fn linkers(&self, imports: &Imports) -> anyhow::Result<Option<Arc<Linkers>>> {
        if imports.is_empty() {
            return Ok(None);
        }
        let mut linkers = self.embedder_linkers.lock().unwrap();
        if let Some(found) = linkers.get(&imports.key()) {
            return Ok(Some(found.clone()));
        }
        let with_imports = |base: &Linker<GuestState>| -> anyhow::Result<Linker<GuestState>> {
            let mut linker = base.clone();
            imports.add_to_linker(&mut linker)?;
            Ok(linker)
        };
        let made = Arc::new(Linkers {
            optimized: with_imports(&self.linker)?,
            baseline: match &self.baseline {
                Some((_, linker, _)) => Some(with_imports(linker)?),
                None => None,
            },
            on_demand: match &self.pool {
                Some(pool) => Some(with_imports(&Self::on_demand_linker(pool)?)?),
                None => None,
            },
            embedder: imports.names().into_iter().map(String::from).collect(),
            in_use: imports.watch(),
        });
        // An embedder that makes `Imports` per pod leaves linkers behind as its pods end.
        linkers.retain(|_, linkers| linkers.in_use.in_use());
        let live: std::collections::HashSet<_> = linkers.keys().cloned().collect();
        self.components
            .lock()
            .unwrap()
            .retain(|(_, key), _| key.is_empty() || live.contains(key));
        linkers.insert(imports.key(), made.clone());
        Ok(Some(made))
    }

    /// Compiles `bytes` (the component at `key`, with its digest if there is a compile cache)
    /// with the optimising compiler on a thread of low priority: into the compile cache, and
    /// in place of the baseline build for later loads in this process.
    fn optimize_in_background(
        self: &Arc<Self>,
        key: (PathBuf, Vec<u64>),
        modified: Option<SystemTime>,
        (bytes, digest): (Vec<u8>, Option<ComponentDigest>),
        linker: Linker<GuestState>,
        linkers: Option<Arc<Linkers>>,
        embedder: Vec<String>,
    ) {
        let wasm = self.clone();
        let name = key.0.display().to_string();
        let thread = std::thread::Builder::new()
            .name("wasmlet-optimize".into())
            .spawn(move || {
                super::lower_priority(19);
                let optimized = match wasm.optimized(
                    (&bytes, digest.as_ref()),
                    &linker,
                    linkers.as_ref(),
                    &key.0,
                    &embedder,
                    modified,
                ) {
                    Ok(optimized) => Arc::new(optimized),
                    Err(error) => {
                        tracing::warn!("{error:#}");
                        return;
                    }
                };
                let mut components = wasm.components.lock().unwrap();
                if let Some(cached) = components.get_mut(&key)
                    && cached.modified == modified
                    && cached.len == bytes.len() as u64
                {
                    cached.component = optimized;
                    cached.compilation = Compilation::Optimized;
                }
            });
        match thread {
            Ok(thread) => self.optimizing.lock().unwrap().push(thread),
            Err(error) => tracing::warn!("not optimising `{name}`: {error}"),
        }
    }

    /// Whether the compile cache holds the optimised build of the component whose digest is
    /// `digest`: for the pool's engine, or for the on-demand one when the component does not
    /// fit a slot.
    fn optimized_is_cached(&self, digest: Option<&ComponentDigest>) -> bool {
        let (Some(cache), Some(digest)) = (&self.compile_cache, digest) else {
            return false;
        };
        cache.holds(&self.engine, digest)
            || self
                .pool
                .as_ref()
                .is_some_and(|pool| cache.holds(&pool.on_demand, digest))
    }
}

/// Increments the engines' epoch every time slice while any instance is alive, so that every
/// running guest yields to the others; sleeps when there has been none for
/// [`TICKS_BEFORE_SLEEP`] ticks. It counts the instances, and tells the memory releaser when
/// one ends.
pub(crate) struct EpochTicker {
    state: Mutex<TickerState>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
    releaser: Option<Arc<MemoryReleaser>>,
}

/// Time slices the ticker goes on ticking after the last instance has ended, before it sleeps:
/// on a host whose instances come and go (one pod after another, an instance per HTTP request),
/// a start does not wait for the ticker's wake-up (a futex wake, ~10 µs on a virtual machine).
/// 25 ticks after the last instance cost an idle host nothing it would notice.
const TICKS_BEFORE_SLEEP: u32 = 25;

#[derive(Default)]
struct TickerState {
    live_instances: usize,
    /// The ticker is asleep until an instance is alive: the first one wakes it.
    asleep: bool,
    stopped: bool,
}

impl EpochTicker {
    /// A ticker with no thread, for deterministic mode (fuel slices time there).
    pub(super) fn idle() -> Arc<Self> {
        Arc::new(EpochTicker {
            state: Mutex::new(TickerState::default()),
            wake: Condvar::new(),
            thread: Mutex::new(None),
            releaser: None,
        })
    }

    pub(super) fn start(
        engines: Vec<Engine>,
        slice: Duration,
        releaser: Arc<MemoryReleaser>,
    ) -> Arc<Self> {
        let ticker = Arc::new(EpochTicker {
            state: Mutex::new(TickerState::default()),
            wake: Condvar::new(),
            thread: Mutex::new(None),
            releaser: Some(releaser),
        });
        let thread = std::thread::Builder::new()
            .name("wasmlet-epoch".into())
            .spawn({
                let ticker = ticker.clone();
                // Ticks since an instance was last alive: a new host sleeps at once.
                let mut idle_ticks = TICKS_BEFORE_SLEEP;
                move || loop {
                    let mut state = ticker.state.lock().unwrap();
                    if state.live_instances > 0 {
                        idle_ticks = 0;
                    } else if idle_ticks >= TICKS_BEFORE_SLEEP {
                        state.asleep = true;
                        while state.live_instances == 0 && !state.stopped {
                            state = ticker.wake.wait(state).unwrap();
                        }
                        state.asleep = false;
                        idle_ticks = 0;
                    } else {
                        idle_ticks += 1;
                    }
                    // Real time: a time slice is a share of this machine's CPU, whatever
                    // the host's clock says. Waited on the condition variable rather than
                    // slept, so that stopping the host does not wait out the slice.
                    let end = std::time::Instant::now() + slice;
                    loop {
                        if state.stopped {
                            return;
                        }
                        // Real time, as above.
                        let left = end.saturating_duration_since(std::time::Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        state = ticker.wake.wait_timeout(state, left).unwrap().0;
                    }
                    drop(state);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawning the epoch thread");
        *ticker.thread.lock().unwrap() = Some(thread);
        ticker
    }

    /// Counts an instance as alive until the returned guard is dropped.
    pub fn instance_alive(self: &Arc<Self>) -> LiveInstance {
        let mut state = self.state.lock().unwrap();
        state.live_instances += 1;
        // Only a sleeping ticker needs waking: one that is ticking would wake for nothing (a
        // futex wake and a context switch for every instance of a busy host).
        if state.asleep {
            self.wake.notify_one();
        }
        drop(state);
        LiveInstance(self.clone())
    }

    /// Instances alive now.
    pub fn live_instances(&self) -> usize {
        self.state.lock().unwrap().live_instances
    }

    pub(super) fn stop(&self) {
        self.state.lock().unwrap().stopped = true;
        self.wake.notify_one();
        if let Some(thread) = self.thread.lock().unwrap().take() {
            let _ = thread.join();
        }
        if let Some(releaser) = &self.releaser {
            releaser.stop();
        }
    }
}

/// Keeps the epoch ticker running while it lives; dropped after the instance's store.
pub(crate) struct LiveInstance(Arc<EpochTicker>);

impl Drop for LiveInstance {
    fn drop(&mut self) {
        self.0.state.lock().unwrap().live_instances -= 1;
        if let Some(releaser) = &self.0.releaser {
            releaser.memory_freed();
        }
    }
}
