//! Compiled components cached on disk by content hash, so a second start of
//! a program does not compile its components again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of `<sha256 of wasm + engine config>.cwasm` files.
pub struct ComponentCache {
    dir: PathBuf,
    engine_hash: u64,
    compiled: AtomicUsize,
    hits: AtomicUsize,
}

impl ComponentCache {
    pub fn new(engine: &Engine, dir: PathBuf) -> Self {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        ComponentCache {
            dir,
            engine_hash: h.finish(),
            compiled: AtomicUsize::new(0),
            hits: AtomicUsize::new(0),
        }
    }

    /// Where compiled components are kept.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// How many components this cache compiled, and how many it loaded
    /// ready-made, since it was created.
    pub fn stats(&self) -> (usize, usize) {
        (
            self.compiled.load(Ordering::Relaxed),
            self.hits.load(Ordering::Relaxed),
        )
    }

    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> Result<Component> {
        let mut hasher = Sha256::new();
        hasher.update(self.engine_hash.to_le_bytes());
        hasher.update(wasm);
        let path = self
            .dir
            .join(format!("{}.cwasm", hex::encode(hasher.finalize())));
        if path.is_file() {
            // SAFETY: the file was written by `Component::serialize` of this
            // engine configuration (its name hashes both), in a directory
            // this host owns.
            if let Ok(component) = unsafe { Component::deserialize_file(engine, &path) } {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(component);
            }
        }
        let component = Component::new(engine, wasm).map_err(anyhow::Error::from)?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(
                "could not cache compiled component at {}: {e:#}",
                path.display()
            );
        }
        Ok(component)
    }

    fn store(&self, path: &std::path::Path, component: &Component) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let bytes = component.serialize().map_err(anyhow::Error::from)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}
