//! Compiled components cached on disk by content hash, so a second start of
//! a program does not compile its components again.
//!
//! Loading a compiled component runs its machine code, so an entry is
//! loaded only if this user's lp-host stored it: each carries an
//! HMAC-SHA256 over its name (the hash of the wasm and of the engine's
//! configuration) and its bytes, keyed by a random key in a file only this
//! user can read. An entry is read into memory, checked, and deserialized
//! from those same bytes. A directory or key others can write is not used
//! (compiling in memory instead, said once); an entry that is not a regular
//! file of ours, or whose tag does not match, is compiled again and
//! replaced. Entries are written to a new file (never through a symlink)
//! and renamed into place.

use std::fs::{Metadata, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, Result, bail};
use hmac::{Hmac, Mac as _};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::files::{self, Symlinks};

/// An entry is `MAGIC`, its tag, then the serialized component.
const MAGIC: &[u8; 8] = b"lpcwasm1";
const TAG_LEN: usize = 32;
const HEADER_LEN: usize = MAGIC.len() + TAG_LEN;
/// The file, in the cache directory, of the key entries are tagged with.
const KEY_FILE: &str = "key";
const KEY_LEN: usize = 32;
/// How many temporary names a store tries before it gives up.
const TEMPORARY_NAMES: u32 = 16;

type Tagger = Hmac<Sha256>;

/// A directory of `<sha256 of wasm + engine config>.cwasm` files and their
/// key.
/// Components this large are said to be compiling (it takes seconds).
const SAYS_COMPILING_FROM: usize = 4 << 20;

pub struct ComponentCache {
    dir: PathBuf,
    engine_hash: u64,
    /// The key, once the directory and its key file were found to be this
    /// user's alone; `None`: nothing is cached (and why was said).
    key: OnceLock<Option<[u8; KEY_LEN]>>,
    compiled: AtomicUsize,
    hits: AtomicUsize,
}

/// What the cache holds under an entry's name.
enum Found {
    Absent,
    /// Tagged by our key: the whole file, header first.
    Verified(Vec<u8>),
    /// Not an entry of this format (an older lp-host's, untagged).
    Untagged,
    /// Not to be loaded, and why.
    Refused(String),
}

impl ComponentCache {
    pub fn new(engine: &Engine, dir: PathBuf) -> Self {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        ComponentCache {
            dir,
            engine_hash: h.finish(),
            key: OnceLock::new(),
            compiled: AtomicUsize::new(0),
            hits: AtomicUsize::new(0),
        }
    }

    /// Where compiled components are kept.
    pub fn dir(&self) -> &Path {
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

    /// Whether compiled components are kept (the directory and its key are
    /// this user's alone); checked, and a refusal said, on first use.
    pub fn usable(&self) -> bool {
        self.key().is_some()
    }

    /// Compile nothing to disk and load nothing from it (a process whose
    /// launcher found the cache unusable, and said so). Only before the
    /// first load.
    pub fn disable(&self) {
        let _ = self.key.set(None);
    }

    fn key(&self) -> Option<&[u8; KEY_LEN]> {
        self.key
            .get_or_init(|| match open(&self.dir) {
                Ok(key) => Some(key),
                Err(e) => {
                    tracing::warn!("not caching compiled components: {e:#}");
                    None
                }
            })
            .as_ref()
    }

    /// The component of `wasm` (read from `source`, which a long compile
    /// names on stderr): from the cache, else compiled and cached.
    pub fn load(&self, engine: &Engine, wasm: &[u8], source: &Path) -> Result<Component> {
        let mut hasher = Sha256::new();
        hasher.update(self.engine_hash.to_le_bytes());
        hasher.update(wasm);
        let name = format!("{}.cwasm", hex::encode(hasher.finalize()));
        let Some(key) = self.key() else {
            return self.compile(engine, wasm, source);
        };
        let path = self.dir.join(&name);
        match read_entry(&path, &name, key) {
            Found::Absent => {}
            Found::Verified(bytes) => {
                // SAFETY: the bytes carry this user's key's tag over this
                // entry's name (the hash of these wasm bytes and of this
                // engine's configuration) and over themselves, so this cache
                // stored them, from `Component::serialize` of such an
                // engine; they are in memory, unchanged since the check.
                match unsafe { Component::deserialize(engine, &bytes[HEADER_LEN..]) } {
                    Ok(component) => {
                        self.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(component);
                    }
                    Err(e) => tracing::debug!("cannot load {}: {e:#}", path.display()),
                }
            }
            Found::Untagged => tracing::debug!(
                "{} is not a tagged entry (an older lp-host's?); compiling again",
                path.display()
            ),
            Found::Refused(why) => tracing::warn!(
                "ignored the cached component {}: it {why}; compiling it again\n  help: lp-host replaces it; if this recurs, find what else writes to {}",
                path.display(),
                self.dir.display()
            ),
        }
        let component = self.compile(engine, wasm, source)?;
        if let Err(e) = store(&self.dir, &name, key, &component) {
            tracing::warn!(
                "could not cache compiled component at {}: {e:#}",
                path.display()
            );
        }
        Ok(component)
    }

    fn compile(&self, engine: &Engine, wasm: &[u8], source: &Path) -> Result<Component> {
        if wasm.len() >= SAYS_COMPILING_FROM {
            // A Python node's component (~19 MB) takes seconds.
            crate::errln!(
                "compiling {} ({:.0} MB; once: it is cached for later runs)",
                source.display(),
                wasm.len() as f64 / 1e6
            );
        }
        let component = Component::new(engine, wasm).map_err(anyhow::Error::from)?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        Ok(component)
    }
}

/// The tag of the entry `name` holding `code`.
fn tagger(key: &[u8; KEY_LEN], name: &str, code: &[u8]) -> Tagger {
    let mut mac = Tagger::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(name.as_bytes());
    mac.update(&[0]);
    mac.update(code);
    mac
}

/// What is at `path`, read whole and checked.
fn read_entry(path: &Path, name: &str, key: &[u8; KEY_LEN]) -> Found {
    let (mut file, meta) = match files::open_regular(path, Symlinks::Refuse) {
        Ok(opened) => opened,
        Err(e) if e.kind() == ErrorKind::NotFound => return Found::Absent,
        Err(e) => return Found::Refused(e.to_string()),
    };
    if let Some(why) = not_ours_alone(&meta, 0o022) {
        return Found::Refused(why);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    if let Err(e) = file.read_to_end(&mut bytes) {
        return Found::Refused(format!("cannot be read: {e}"));
    }
    if !bytes.starts_with(MAGIC) {
        return match bytes.starts_with(b"\x7fELF") {
            true => Found::Untagged,
            false => Found::Refused("is not a cache entry".into()),
        };
    }
    if bytes.len() < HEADER_LEN
        || tagger(key, name, &bytes[HEADER_LEN..])
            .verify_slice(&bytes[MAGIC.len()..HEADER_LEN])
            .is_err()
    {
        return Found::Refused(
            "does not carry this cache's tag (it was changed, cut short, or is another entry's)"
                .into(),
        );
    }
    Found::Verified(bytes)
}

/// Write `component` as the entry `name`: to a new file, then renamed into
/// place (replacing whatever is there, a symlink itself included).
fn store(dir: &Path, name: &str, key: &[u8; KEY_LEN], component: &Component) -> Result<()> {
    let code = component.serialize().map_err(anyhow::Error::from)?;
    let tag = tagger(key, name, &code).finalize().into_bytes();
    let temporary = write_new(dir, name, &[MAGIC, &tag, &code])?;
    std::fs::rename(&temporary, dir.join(name)).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })?;
    Ok(())
}

/// A new file (never opened through a symlink, never an existing one) in
/// `dir`, mode 0600, holding `parts`; named `<name>.<pid>.<n>.tmp`.
fn write_new(dir: &Path, name: &str, parts: &[&[u8]]) -> Result<PathBuf> {
    for n in 0..TEMPORARY_NAMES {
        let path = dir.join(format!("{name}.{}.{n}.tmp", std::process::id()));
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        };
        let written = file
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .and_then(|()| parts.iter().try_for_each(|part| file.write_all(part)));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(e).with_context(|| format!("writing {}", path.display()));
        }
        return Ok(path);
    }
    bail!(
        "every temporary name {name}.{}.*.tmp in {} is taken",
        std::process::id(),
        dir.display()
    )
}

/// The key of the cache in `dir`, once the directory (made 0700 if it is
/// new) and the key file were found to be this user's alone; a new key if
/// there is none.
fn open(dir: &Path) -> Result<[u8; KEY_LEN]> {
    files::create_private_dir(dir)
        .with_context(|| format!("cannot create the cache directory {}", dir.display()))?;
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the cache directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "the cache directory {} {}\n  help: set LP_CACHE_DIR (or --cache-dir) to a directory",
            dir.display(),
            files::not_regular(&meta).unwrap_or_default()
        );
    }
    if let Some(why) = not_ours_alone(&meta, 0o022) {
        bail!(
            "the cache directory {} {why}\n  help: `chmod 700 {}` if it is yours, or set LP_CACHE_DIR (or --cache-dir) to a directory only you can write; until then every start compiles its components",
            dir.display(),
            dir.display()
        );
    }
    let path = dir.join(KEY_FILE);
    if let Some(key) = read_key(&path)? {
        return Ok(key);
    }
    let mut key = [0; KEY_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .context("cannot read /dev/urandom for the cache key")?;
    let temporary = write_new(dir, KEY_FILE, &[&key])?;
    // A link, unlike a rename, never replaces the key of a process that
    // made one first.
    let linked = std::fs::hard_link(&temporary, &path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            read_key(&path)?.with_context(|| format!("the cache key {} went away", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot create the cache key {}", path.display())),
    }
}

/// The key in the file at `path` (`None` if there is none), if it is a
/// regular file of ours that nobody else can read or write.
fn read_key(path: &Path) -> Result<Option<[u8; KEY_LEN]>> {
    let help = format!(
        "\n  help: remove {} (lp-host makes a new key, and compiles again what it had cached)",
        path.display()
    );
    let (mut file, meta) = match files::open_regular(path, Symlinks::Refuse) {
        Ok(opened) => opened,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!("the cache key {} {e}{help}", path.display()),
    };
    if let Some(why) = not_ours_alone(&meta, 0o077) {
        bail!("the cache key {} {why}{help}", path.display());
    }
    let mut key = [0; KEY_LEN];
    if meta.len() != KEY_LEN as u64 || file.read_exact(&mut key).is_err() {
        bail!(
            "the cache key {} is not {KEY_LEN} bytes long{help}",
            path.display()
        );
    }
    Ok(Some(key))
}

/// Why a file or directory is not this user's alone: another owner, or one
/// of the `forbidden` mode bits (0o022: writable by others; 0o077: any
/// access by others).
fn not_ours_alone(meta: &Metadata, forbidden: u32) -> Option<String> {
    let us = effective_uid();
    if meta.uid() != us {
        return Some(format!(
            "belongs to uid {}, not to this user (uid {us})",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    (mode & forbidden != 0).then(|| {
        let what = if forbidden & 0o044 != 0 {
            "read or written"
        } else {
            "written"
        };
        format!("can be {what} by other users (mode {mode:04o})")
    })
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
