//! The wasm engine ([`WasmEngine`]): one wasmtime `Engine` with the linker of all that guests
//! may import and the cache of compiled components, and the epoch ticker ([`EpochTicker`]) that
//! time-slices CPU-bound guests and hands freed memory back once instances end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

use super::component::{Entry, LoadedComponent};
use super::release::MemoryReleaser;
use super::store::{GuestState, add_to_linker};

/// The slots of the pooling allocator ([`HostConfig::instance_pool`](crate::HostConfig::instance_pool)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstancePool {
    /// Instances alive at once (main, hooks, handlers and exec commands together); one more
    /// fails to start, as a trap naming the limit.
    pub instances: u32,
    /// The most memory one instance may have; a container whose memory limit is larger is
    /// refused when its pod starts.
    pub max_memory: u64,
}

impl Default for InstancePool {
    fn default() -> Self {
        InstancePool {
            instances: 1000,
            max_memory: 1 << 30,
        }
    }
}

/// How running wasm is interrupted: by the epoch ticker (real time), or after a fixed amount of
/// fuel (deterministic mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interruption {
    Epoch,
    Fuel,
}

/// The engine, the linker and the compiled components: what hosts of one kind can share.
pub(crate) struct WasmEngine {
    pub engine: Engine,
    pub linker: Linker<GuestState>,
    components: Mutex<HashMap<PathBuf, CachedComponent>>,
    /// The bundled shell, compiled on first use.
    shell: std::sync::OnceLock<Arc<LoadedComponent>>,
}

/// wasmlet's bundled shell (`host/sh`), built by `build.rs`.
const SHELL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sh.wasm"));

struct CachedComponent {
    modified: Option<SystemTime>,
    len: u64,
    component: Arc<LoadedComponent>,
}

impl WasmEngine {
    /// An engine for `interruption`; `compile_cache`: where compiled code is kept between runs;
    /// `instance_pool`: the pooling allocator's slots, if any.
    pub fn new(
        interruption: Interruption,
        compile_cache: Option<&Path>,
        instance_pool: Option<InstancePool>,
    ) -> anyhow::Result<Arc<WasmEngine>> {
        let mut engine_config = Config::new();
        if let Some(directory) = compile_cache {
            let directory = std::path::absolute(directory).unwrap_or(directory.to_path_buf());
            let mut cache_config = wasmtime::CacheConfig::new();
            cache_config.with_directory(&directory);
            // A cache that cannot be used costs a compilation, never a pod.
            match wasmtime::Cache::new(cache_config) {
                Ok(cache) => {
                    engine_config.cache(Some(cache));
                }
                Err(error) => tracing::warn!(
                    "not caching compiled components in `{}`: {error:#}",
                    directory.display()
                ),
            }
        }
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
            // A component of a Rust guest has one memory and a few core instances and tables.
            config
                .total_component_instances(pool.instances)
                .total_core_instances(pool.instances.saturating_mul(4))
                .total_memories(pool.instances)
                .total_tables(pool.instances.saturating_mul(4))
                .total_stacks(pool.instances)
                .max_memory_size(usize::try_from(pool.max_memory).unwrap_or(usize::MAX));
            engine_config
                .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(config));
        }
        let engine = Engine::new(&engine_config)
            .map_err(anyhow::Error::from)
            .context("creating the wasmtime engine")?;
        let mut linker = Linker::new(&engine);
        add_to_linker(&mut linker)?;
        Ok(Arc::new(WasmEngine {
            engine,
            linker,
            components: Mutex::new(HashMap::new()),
            shell: std::sync::OnceLock::new(),
        }))
    }

    /// The bundled shell, compiled once.
    pub fn shell(&self) -> anyhow::Result<Arc<LoadedComponent>> {
        if let Some(shell) = self.shell.get() {
            return Ok(shell.clone());
        }
        let shell = Arc::new(LoadedComponent::from_bytes(
            &self.engine,
            &self.linker,
            SHELL,
            Path::new("<wasmlet's sh>"),
        )?);
        Ok(self.shell.get_or_init(|| shell).clone())
    }

    /// Compiles the component at `path` (or reuses the compiled one if the file is unchanged)
    /// and checks that wasmlet provides all it imports.
    pub fn load_component(&self, path: &Path) -> anyhow::Result<Arc<LoadedComponent>> {
        let metadata = std::fs::metadata(path)
            .with_context(|| format!("reading component `{}`", path.display()))?;
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let modified = metadata.modified().ok();
        if let Some(cached) = self.components.lock().unwrap().get(&key)
            && cached.modified == modified
            && cached.len == metadata.len()
        {
            return Ok(cached.component.clone());
        }
        let component = Arc::new(LoadedComponent::load(&self.engine, &self.linker, path)?);
        anyhow::ensure!(
            component.exports(Entry::Run) || component.exports(Entry::Handle),
            "component `{}` exports neither `wasi:cli/run` nor `wasi:http/incoming-handler`: a \
             container needs an entrypoint (build a command with `fn main`, use wasmlet-sdk's \
             `export!`, or export an HTTP handler)",
            path.display()
        );
        self.components.lock().unwrap().insert(
            key,
            CachedComponent {
                modified,
                len: metadata.len(),
                component: component.clone(),
            },
        );
        Ok(component)
    }
}

/// Increments the engine epoch every time slice while any instance is alive, so that every
/// running guest yields to the others; sleeps when there is none. It counts the instances, and
/// tells the memory releaser when one ends.
pub(crate) struct EpochTicker {
    state: Mutex<TickerState>,
    wake: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
    releaser: Option<Arc<MemoryReleaser>>,
}

#[derive(Default)]
struct TickerState {
    live_instances: usize,
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
        engine: Engine,
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
                move || loop {
                    {
                        let mut state = ticker.state.lock().unwrap();
                        while state.live_instances == 0 && !state.stopped {
                            state = ticker.wake.wait(state).unwrap();
                        }
                        if state.stopped {
                            return;
                        }
                    }
                    // Real time: a time slice is a share of this machine's CPU, whatever
                    // the host's clock says.
                    std::thread::sleep(slice);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        *ticker.thread.lock().unwrap() = Some(thread);
        ticker
    }

    /// Counts an instance as alive until the returned guard is dropped.
    pub fn instance_alive(self: &Arc<Self>) -> LiveInstance {
        self.state.lock().unwrap().live_instances += 1;
        self.wake.notify_one();
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
