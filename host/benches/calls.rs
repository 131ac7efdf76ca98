//! The plugin-call benchmark: what a call into a plugin costs when wasmlet gives every call a
//! fresh instance under the container's lifecycle, against plain wasmtime in the same run —
//! an instance made once and called again and again (what Extism-style plugin hosts do), and
//! a fresh instantiation and call by hand (what wasmlet adds to that is its lifecycle).
//!
//! ```text
//! cargo bench -p wasmlet --bench calls          # -- --calls 2000 --rounds 5
//! ```
//!
//! Every figure is a call of `on-message("world")` of the `greeter-plugin` example, which calls
//! its host back once (`get-config`), through `bindgen!`'s typed bindings, one call at a time.
//! The rounds are interleaved (wasmlet, reuse, fresh, wasmlet, …) so that a noisy machine
//! slows each of them alike; each row gives the median over the rounds of each round's p50 and
//! p99, with the range in brackets, and the CPU time per call (this process's user + system
//! time over the round).

use std::time::{Duration, Instant};

use wasmlet::wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmlet::wasmtime::{Config, Engine, Store};
use wasmlet::{CallOptions, Host, HostConfig, Imports, PodSpec};
use wasmlet_examples::components;
use wasmlet_examples::plugins::{Plugin, PluginPre, example};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

mod common;
use common::{cpu_time, percentile, show};

/// The host side of `example:plugins/host`, for both wasmlet's plugin and the peers'.
struct PluginHost;

impl example::plugins::host::Host for PluginHost {
    async fn log(&mut self, _message: String) {}

    async fn get_config(&mut self, _key: String) -> Option<String> {
        Some("Hello".into())
    }
}

/// A peer's store: WASI and the plugin host, nothing else.
struct PeerState {
    wasi: WasiCtx,
    table: ResourceTable,
    host: PluginHost,
}

impl WasiView for PeerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn peer_store(engine: &Engine) -> Store<PeerState> {
    Store::new(
        engine,
        PeerState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            host: PluginHost,
        },
    )
}

struct Args {
    calls: usize,
    rounds: usize,
}

fn args() -> Args {
    let mut args = Args {
        calls: 2000,
        rounds: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse().ok()).expect("a number");
        match arg.as_str() {
            "--calls" => args.calls = value(),
            "--rounds" => args.rounds = value(),
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

/// One round's latencies, sorted, and its CPU time per call.
struct Round {
    latencies: Vec<Duration>,
    cpu_per_call: Duration,
}

/// Makes `$calls` calls, each `$call` (an expression that may `.await`), one at a time: a
/// [`Round`].
macro_rules! measure {
    ($calls:expr, $call:expr) => {{
        let mut latencies = Vec::with_capacity($calls);
        let cpu = cpu_time();
        for _ in 0..$calls {
            let began = Instant::now();
            let answer: String = $call;
            latencies.push(began.elapsed());
            assert_eq!(answer, "Hello, world!");
        }
        let cpu_per_call = (cpu_time() - cpu) / $calls as u32;
        latencies.sort();
        Round {
            latencies,
            cpu_per_call,
        }
    }};
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args();
    let component_path = components::GREETER_PLUGIN;

    // wasmlet: the plugin in a pod, each call on a fresh instance.
    let imports = Imports::new().with(
        "example:plugins/host",
        |linker| {
            example::plugins::host::add_to_linker::<_, HasSelf<PluginHost>>(linker, |state| {
                state.embedder_data::<PluginHost>()
            })
        },
        |_| PluginHost,
    );
    let host = Host::new(HostConfig {
        imports,
        ..HostConfig::default()
    })?;
    let spec = PodSpec::component(component_path)
        .name("plugin")
        .container_name("plugin")
        .build()?;
    let pod = host.start_pod(spec).await?;
    pod.wait_running().await;
    // Plain wasmtime, default configuration with async support, the same component.
    let mut config = Config::new();
    #[allow(deprecated)]
    config.async_support(true);
    let engine = Engine::new(&config)?;
    let component = Component::from_file(&engine, component_path)?;
    let mut linker: Linker<PeerState> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    example::plugins::host::add_to_linker::<_, HasSelf<PluginHost>>(&mut linker, |state| {
        &mut state.host
    })?;
    let pre = PluginPre::new(linker.instantiate_pre(&component)?)?;
    // Reuse: one instance, called again and again.
    let mut reused_store = peer_store(&engine);
    let reused = pre.instantiate_async(&mut reused_store).await?;

    let mut rows: Vec<(&str, Vec<Round>)> = vec![
        ("wasmlet Pod::call, fresh instance", Vec::new()),
        ("wasmtime, one instance reused", Vec::new()),
        ("wasmtime, instantiate + call", Vec::new()),
    ];
    for round in 0..args.rounds {
        eprintln!("round {}/{}", round + 1, args.rounds);
        rows[0].1.push(measure!(
            args.calls,
            pod.call("plugin", CallOptions::default(), |store, instance| {
                Box::pin(async move {
                    let plugin = Plugin::new(&mut *store, instance)?;
                    let handler = plugin.example_plugins_handler();
                    handler.call_on_message(&mut *store, "world").await
                })
            })
            .await
            .expect("the call")
            .expect("an answer")
        ));
        rows[1].1.push(measure!(
            args.calls,
            reused
                .example_plugins_handler()
                .call_on_message(&mut reused_store, "world")
                .await
                .expect("the call")
                .expect("an answer")
        ));
        rows[2].1.push(measure!(args.calls, {
            let mut store = peer_store(&engine);
            let plugin = pre.instantiate_async(&mut store).await.expect("instance");
            plugin
                .example_plugins_handler()
                .call_on_message(&mut store, "world")
                .await
                .expect("the call")
                .expect("an answer")
        }));
    }
    pod.kill();
    pod.wait().await;

    println!(
        "plugin calls: {} sequential calls per round, {} rounds; median over the rounds \
         [range]",
        args.calls, args.rounds
    );
    println!(
        "{:<36} {:>24} {:>24} {:>24}",
        "", "p50", "p99", "CPU per call"
    );
    for (name, rounds) in &rows {
        let stat = |of: &dyn Fn(&Round) -> Duration| {
            let mut values: Vec<Duration> = rounds.iter().map(of).collect();
            values.sort();
            format!(
                "{} [{}–{}]",
                show(values[values.len() / 2]),
                show(values[0]),
                show(values[values.len() - 1])
            )
        };
        println!(
            "{name:<36} {:>24} {:>24} {:>24}",
            stat(&|round| percentile(&round.latencies, 0.5)),
            stat(&|round| percentile(&round.latencies, 0.99)),
            stat(&|round| round.cpu_per_call),
        );
    }
    Ok(())
}
