//! The sandbox: the wasmtime engine every node runs in, the compiled
//! component cache, each node's WASI context, and what a component imports
//! and exports. Knows nothing of program.toml or of how calls are routed.

mod cache;
pub mod interface;
mod stdio;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

pub use cache::ComponentCache;
pub use interface::{ClientImport, Function, NodeInterface, ServiceExport, inspect};
pub use stdio::{LineWriter, OUTPUT_CREDIT};

/// The engine shared by every node of a program, and its component cache.
pub struct Sandbox {
    engine: Engine,
    cache: ComponentCache,
}

impl Sandbox {
    /// An engine for lp nodes; compiled components are cached in `cache_dir`
    /// (see [`default_cache_dir`]).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self> {
        Self::configured(cache_dir, false, None)
    }

    /// An engine for seeded runs: wasm also counts fuel, so it can yield
    /// after a fixed amount of work rather than at clock ticks. (Compiled
    /// code differs, so the cache keeps both builds.)
    pub fn deterministic(cache_dir: Option<PathBuf>) -> Result<Self> {
        Self::configured(cache_dir, true, None)
    }

    /// An engine with fuel counting or not, and a wasm stack limit (KiB;
    /// `None`: wasmtime's 512 KiB).
    pub fn configured(
        cache_dir: Option<PathBuf>,
        fuel: bool,
        stack_kib: Option<u64>,
    ) -> Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.wasm_component_model_async(true);
        config.concurrency_support(true);
        config.epoch_interruption(true);
        config.consume_fuel(fuel);
        if let Some(kib) = stack_kib {
            let bytes = usize::try_from(kib.saturating_mul(1024)).unwrap_or(usize::MAX);
            // Async calls run on a fiber stack that must hold the wasm stack.
            config.max_wasm_stack(bytes);
            config.async_stack_size(bytes.saturating_add(1 << 20).max(2 << 20));
        }
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
        let cache = ComponentCache::new(&engine, cache_dir.unwrap_or_else(default_cache_dir));
        Ok(Sandbox { engine, cache })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn cache(&self) -> &ComponentCache {
        &self.cache
    }

    /// Load the component at `path`, compiling it only if the cache has no
    /// build of these exact bytes for this engine.
    pub fn load(&self, path: &Path) -> Result<Component> {
        self.load_as(path, path)
    }

    /// Like [`Sandbox::load`], naming the component `shown` when it says
    /// that it compiles it (a built node's sources, not its cache entry).
    pub fn load_as(&self, path: &Path, shown: &Path) -> Result<Component> {
        let bytes = crate::files::read_regular(path, crate::files::Symlinks::Follow)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot read component {}: {e}\n  help: name a .wasm component file, built with `cargo build --target wasm32-wasip2`",
                    path.display()
                )
            })?;
        check_is_component(path, &bytes)?;
        self.cache.load(&self.engine, &bytes, shown).map_err(|e| {
            anyhow::anyhow!(
                "cannot compile component {}: {e:#}\n  help: the file is damaged or not a WebAssembly component; rebuild it for wasm32-wasip2",
                path.display()
            )
        })
    }
}

/// `$LP_CACHE_DIR`, else `$XDG_CACHE_HOME/lp`, else `~/.cache/lp`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LP_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("lp");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("lp"),
        None => std::env::temp_dir().join("lp-cache"),
    }
}

/// A clear error for files that are not components (a core module, or not
/// wasm at all).
fn check_is_component(path: &Path, bytes: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        bail!(
            "{} is not a WebAssembly file (no \\0asm header)\n  help: give a component built with `cargo build --target wasm32-wasip2`",
            path.display()
        );
    }
    // Bytes 4..8: version and layer; layer 1 is a component, 0 a core module.
    if bytes[6..8] == [0, 0] {
        bail!(
            "{} is a core WebAssembly module, not a component\n  help: build it with `--target wasm32-wasip2` (or `cargo component build`)",
            path.display()
        );
    }
    Ok(())
}
