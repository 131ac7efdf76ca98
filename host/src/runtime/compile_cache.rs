//! The compile cache ([`CompileCache`]): components compiled once and kept on disk, keyed by
//! their bytes and the engine's settings, so that a later load — in this process or the
//! next — maps the compiled code from its file instead of compiling.
//!
//! A cached build is used in place: the file is mapped into memory as it is, with nothing to
//! decompress or copy and nothing written back on a load but its modification time (which
//! orders eviction). That is what makes a second `wasmlet run` of a small component cost
//! little more than the process itself.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context as _;
use sha2::Digest as _;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where in the cache directory the compiled components are.
const COMPONENTS: &str = "components";
/// How a file of compiled code ends.
const EXTENSION: &str = "cwasm";
/// When the compiled components take more than this, the least recently used go.
const SIZE_LIMIT: u64 = 1 << 30;
/// How the name of a build being written begins…
const PARTIAL: &str = ".partial-";
/// …and how old such a file is when the process that wrote it is surely gone (a compilation
/// takes seconds, the writing of its build less).
const ABANDONED: std::time::Duration = std::time::Duration::from_secs(3600);

/// The SHA-256 of a component's bytes, which names its builds (a component cannot be made to
/// collide with another's build). Computed once per load, however many engines the component
/// is compiled for: hashing a 20 MB component takes some 15 ms.
#[derive(Debug, Clone)]
pub(crate) struct ComponentDigest(String);

impl ComponentDigest {
    pub fn of(bytes: &[u8]) -> ComponentDigest {
        let mut hex = String::with_capacity(64);
        for byte in sha2::Sha256::digest(bytes) {
            hex.push_str(&format!("{byte:02x}"));
        }
        ComponentDigest(hex)
    }
}

/// Compiled components kept in a directory of their own.
#[derive(Debug)]
pub(crate) struct CompileCache {
    directory: PathBuf,
}

impl CompileCache {
    /// The cache kept under `directory` (made when the first component is stored).
    pub fn new(directory: &Path) -> CompileCache {
        let directory = std::path::absolute(directory).unwrap_or(directory.to_path_buf());
        CompileCache {
            directory: directory.join(COMPONENTS),
        }
    }

    /// The component `bytes` (whose digest is `digest`) compiled for `engine`: from the cache
    /// if it holds that build, else compiled, and stored for the next time. A cache that cannot
    /// be read or written costs a compilation, never the component.
    pub fn compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &ComponentDigest,
    ) -> wasmtime::Result<Component> {
        let entry = self.entry(engine, digest);
        if entry.exists() {
            match load(engine, &entry) {
                Ok(component) => {
                    // Its time orders eviction: this build was used now.
                    let used = std::fs::File::options().write(true).open(&entry);
                    // The file system's time is real time, whatever the host's clock.
                    let _ = used.and_then(|file| file.set_modified(SystemTime::now()));
                    return Ok(component);
                }
                // The build is whole (its name says an engine of these settings made it) but
                // this engine will not use the component — it needs more than a slot of the
                // instance pool holds: compiling it again would not change that.
                Err(error) if matches!(Engine::detect_precompiled_file(&entry), Ok(Some(_))) => {
                    return Err(error);
                }
                // Not compiled code (damaged): compiled again below, and replaced.
                Err(error) => {
                    tracing::debug!("compile cache: not using `{}`: {error:#}", entry.display())
                }
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        // Stored before it is used: a component the engine refuses (above) is refused from
        // its stored build next time, without compiling.
        if let Err(error) = self.store(&entry, &compiled) {
            tracing::warn!(
                "not keeping the compiled component in `{}`: {error:#}",
                self.directory.display()
            );
        }
        // SAFETY: `compiled` was made by `engine` itself just now, which is what
        // `Component::deserialize` asks of its bytes.
        #[allow(unsafe_code)]
        unsafe {
            Component::deserialize(engine, &compiled)
        }
    }

    /// Whether the cache holds the build for `engine` of the component whose digest is
    /// `digest`.
    pub fn holds(&self, engine: &Engine, digest: &ComponentDigest) -> bool {
        self.entry(engine, digest).exists()
    }

    /// The file for the build for `engine` of the component whose digest is `digest`: named by
    /// the digest and a hash of the engine's compilation settings and version, so that engines
    /// of other settings keep builds of their own.
    fn entry(&self, engine: &Engine, digest: &ComponentDigest) -> PathBuf {
        use std::hash::{Hash as _, Hasher as _};
        let mut settings = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut settings);
        self.directory.join(format!(
            "{}-{:016x}.{EXTENSION}",
            digest.0,
            settings.finish()
        ))
    }

    /// Writes `compiled` as `entry`, whole or not at all: under a name of its own first, then
    /// renamed into place (so that neither a reader nor another process storing the same
    /// build ever sees part of it, and a file once in place never changes).
    fn store(&self, entry: &Path, compiled: &[u8]) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.directory)
            .with_context(|| format!("creating `{}`", self.directory.display()))?;
        let mut partial = tempfile::NamedTempFile::with_prefix_in(PARTIAL, &self.directory)
            .with_context(|| format!("creating a file in `{}`", self.directory.display()))?;
        std::io::Write::write_all(&mut partial, compiled)
            .with_context(|| format!("writing `{}`", partial.path().display()))?;
        partial
            .persist(entry)
            .with_context(|| format!("renaming to `{}`", entry.display()))?;
        self.evict();
        Ok(())
    }

    /// Removes the least recently used builds while all of them take more than
    /// [`SIZE_LIMIT`], and what a process that ended while storing a build left behind.
    fn evict(&self) {
        let Ok(files) = std::fs::read_dir(&self.directory) else {
            return;
        };
        let mut builds: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for file in files.flatten() {
            let (path, Ok(metadata)) = (file.path(), file.metadata()) else {
                continue;
            };
            let Ok(modified) = metadata.modified() else {
                continue;
            };
            if path.extension().is_some_and(|ext| ext == EXTENSION) {
                builds.push((modified, metadata.len(), path));
            } else if file.file_name().to_string_lossy().starts_with(PARTIAL)
                // The file system's times are real time, whatever the host's clock.
                && modified.elapsed().is_ok_and(|age| age > ABANDONED)
            {
                let _ = std::fs::remove_file(&path);
            }
        }
        let mut total: u64 = builds.iter().map(|(_, len, _)| len).sum();
        builds.sort();
        for (_, len, path) in builds {
            if total <= SIZE_LIMIT {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// Maps the compiled component in `entry` for `engine`.
fn load(engine: &Engine, entry: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize_file` asks for a file of compiled code made by wasmtime
    // that does not change while it is mapped. The cache's files are written by
    // `Engine::precompile_component` alone (in `compile`), whole, under a temporary name and
    // renamed into place: no file in place is ever written to again (eviction and a newer
    // build of the same name replace it with another inode, and a mapping keeps the old one).
    // Builds of another wasmtime version or other settings are refused by wasmtime, from the
    // header it checks before using anything. The directory is the user's own, as is
    // wasmtime's own compile cache, whose files it deserializes on the same trust.
    #[allow(unsafe_code)]
    unsafe {
        Component::deserialize_file(engine, entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component of no imports and no exports, as text.
    const EMPTY: &str = "(component)";

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).unwrap()
    }

    #[test]
    fn a_second_compile_maps_the_stored_build() {
        let directory = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(directory.path());
        let engine = engine();
        let bytes = wat::parse_str(EMPTY).unwrap();
        let digest = ComponentDigest::of(&bytes);
        assert!(!cache.holds(&engine, &digest));
        cache.compile(&engine, &bytes, &digest).unwrap();
        assert!(cache.holds(&engine, &digest));
        let entry = cache.entry(&engine, &digest);
        let stored = std::fs::read(&entry).unwrap();
        // An engine of other settings keeps a build of its own.
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        assert!(!cache.holds(&other, &digest));
        // The stored build is used as it is: loaded, not compiled and written again.
        cache.compile(&engine, &bytes, &digest).unwrap();
        assert_eq!(std::fs::read(&entry).unwrap(), stored);
        assert_eq!(std::fs::read_dir(cache.directory).unwrap().count(), 1);
    }

    #[test]
    fn a_damaged_build_is_compiled_again_and_replaced() {
        let directory = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(directory.path());
        let engine = engine();
        let bytes = wat::parse_str(EMPTY).unwrap();
        let digest = ComponentDigest::of(&bytes);
        let entry = cache.entry(&engine, &digest);
        std::fs::create_dir_all(entry.parent().unwrap()).unwrap();
        std::fs::write(&entry, b"not compiled code").unwrap();
        cache.compile(&engine, &bytes, &digest).unwrap();
        assert_ne!(std::fs::read(&entry).unwrap(), b"not compiled code");
        cache.compile(&engine, &bytes, &digest).unwrap();
    }

    #[test]
    fn a_component_the_engine_refuses_is_refused_again_from_its_stored_build() {
        use std::os::unix::fs::MetadataExt as _;
        let directory = tempfile::tempdir().unwrap();
        let cache = CompileCache::new(directory.path());
        // An instance pool whose slots hold no linear memory, and a component that has one.
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.max_memories_per_component(0)
            .max_memories_per_module(0);
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).unwrap();
        let bytes = wat::parse_str(
            "(component (core module $m (memory 1)) (core instance (instantiate $m)))",
        )
        .unwrap();
        let digest = ComponentDigest::of(&bytes);
        let first = cache
            .compile(&engine, &bytes, &digest)
            .map(drop)
            .unwrap_err();
        let entry = cache.entry(&engine, &digest);
        let stored = std::fs::metadata(&entry).unwrap().ino();
        let again = cache
            .compile(&engine, &bytes, &digest)
            .map(drop)
            .unwrap_err();
        assert_eq!(format!("{again:#}"), format!("{first:#}"));
        // Refused from the build it had: not compiled and stored anew.
        assert_eq!(std::fs::metadata(&entry).unwrap().ino(), stored);
    }
}
