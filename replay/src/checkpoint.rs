//! Checkpoints: the tables written to one file and read back whole.
//!
//! The file is the line `lp-replay checkpoint 1\n`, a postcard body, and a
//! trailer: the body's length (u64 LE) and its SHA-256. The body holds the
//! next key, every item once (tables refer to items by key, so an item in
//! several tables stays shared), and per table its name, selectors, sizes,
//! counters and (key, priority, times_sampled) per item in position order.
//! A checkpoint is a snapshot taken under the lock (the items' `Arc`s
//! cloned) and written without it, to `<path>.tmp` (mode 0600), fsynced and
//! renamed over `path`. A restore checks everything and builds the new
//! tables before swapping them in: on any error the replay is unchanged.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Counters, Selector};
use crate::replay::Replay;
use crate::table::{Table, check_priority};
use crate::types::{CheckpointSummary, Item, ReplayError};

/// The file's first line.
pub const MAGIC: &[u8] = b"lp-replay checkpoint 1\n";
/// Body length and SHA-256.
const TRAILER: usize = 8 + 32;

/// Written with borrowed items and tables (`D` = `&Item`, `T` =
/// `&StoredTable`), read with owned ones: the same encoding.
#[derive(Serialize, Deserialize)]
struct Body<D, T> {
    next_key: u64,
    items: Vec<StoredItem<D>>,
    tables: Vec<T>,
}

type WriteBody<'a> = Body<&'a Item, &'a StoredTable>;
type ReadBody = Body<Item, StoredTable>;

#[derive(Serialize, Deserialize)]
struct StoredItem<D> {
    key: u64,
    data: D,
}

#[derive(Serialize, Deserialize)]
struct StoredTable {
    name: String,
    sampler: Selector,
    remover: Selector,
    max_size: u64,
    max_times_sampled: u32,
    inserts: u64,
    samples: u64,
    deletes: u64,
    entries: Vec<StoredEntry>,
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    key: u64,
    priority: f64,
    times_sampled: u32,
}

/// A table as the lock saw it.
struct TableSnapshot {
    table: StoredTable,
    data: Vec<(u64, Item)>,
}

/// What a checkpoint holds, taken under the replay's lock (cheap: the
/// items' buffers are shared, not copied) and written without it, on any
/// thread, so a replay can go on serving while a large checkpoint is
/// written.
pub struct Snapshot {
    next_key: u64,
    tables: Vec<TableSnapshot>,
    /// The replay's: one checkpoint file written at a time.
    writing: Arc<Mutex<()>>,
}

impl Replay {
    /// Write every table to `path` (atomically: a reader sees the old file
    /// or the new one). The lock is held only to take the snapshot.
    pub fn checkpoint(&self, path: &Path) -> Result<CheckpointSummary, ReplayError> {
        let writing = Arc::clone(&self.checkpoint_lock);
        let _one_at_a_time = writing.lock().unwrap_or_else(PoisonError::into_inner);
        self.snapshot().write_unlocked(path)
    }

    /// A function that returns (blocking) once no checkpoint of this
    /// replay is being written: to call, e.g. on a thread of its own,
    /// before the process ends, so a write in progress is not cut short
    /// and leaves no partial file behind.
    pub fn checkpoint_waiter(&self) -> impl FnOnce() + Send + 'static {
        let writing = Arc::clone(&self.checkpoint_lock);
        move || drop(writing.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The tables as they are now, to write with [`Snapshot::write`].
    pub fn snapshot(&self) -> Snapshot {
        let state = self.lock();
        let tables: Vec<TableSnapshot> = state
            .tables
            .iter()
            .map(|t| TableSnapshot {
                table: StoredTable {
                    name: t.config.name.clone(),
                    sampler: t.config.sampler.clone(),
                    remover: t.config.remover.clone(),
                    max_size: t.config.max_size,
                    max_times_sampled: t.config.max_times_sampled,
                    inserts: t.counters.inserts,
                    samples: t.counters.samples,
                    deletes: t.counters.deletes,
                    entries: t
                        .entries()
                        .iter()
                        .map(|e| StoredEntry {
                            key: e.key,
                            priority: e.priority,
                            times_sampled: e.times_sampled,
                        })
                        .collect(),
                },
                data: t
                    .entries()
                    .iter()
                    .map(|e| (e.key, e.data.clone()))
                    .collect(),
            })
            .collect();
        Snapshot {
            next_key: state.next_key,
            tables,
            writing: Arc::clone(&self.checkpoint_lock),
        }
    }
}

impl Snapshot {
    /// Write it to `path` (atomically: a reader sees the old file or the
    /// new one), after any other checkpoint of the same replay that is
    /// being written.
    pub fn write(&self, path: &Path) -> Result<CheckpointSummary, ReplayError> {
        let _one_at_a_time = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        self.write_unlocked(path)
    }

    fn write_unlocked(&self, path: &Path) -> Result<CheckpointSummary, ReplayError> {
        let (next_key, snapshots) = (self.next_key, &self.tables);
        // Each item once, by key (an item has one key in every table).
        let mut items: Vec<&(u64, Item)> = snapshots.iter().flat_map(|s| s.data.iter()).collect();
        if snapshots.len() > 1 {
            items.sort_unstable_by_key(|(key, _)| *key);
            items.dedup_by_key(|(key, _)| *key);
        }
        let body = Body {
            next_key,
            items: items
                .iter()
                .map(|(key, data)| StoredItem { key: *key, data })
                .collect(),
            tables: snapshots.iter().map(|s| &s.table).collect::<Vec<_>>(),
        };
        let bytes = write_file(path, &body).map_err(|e| {
            ReplayError::Checkpoint(format!(
                "could not write checkpoint {}: {e} (its directory must exist and be writable)",
                path.display()
            ))
        })?;
        Ok(CheckpointSummary {
            path: path.to_path_buf(),
            tables: body.tables.len() as u32,
            items: body.items.len() as u64,
            bytes,
        })
    }
}

impl Replay {
    /// Replace every table's contents with `path`'s. Refused, with the
    /// replay unchanged, when the file is not a whole checkpoint of these
    /// tables; a configured table the file lacks starts empty.
    pub fn restore(&self, path: &Path) -> Result<CheckpointSummary, ReplayError> {
        let fail = |what: String| {
            ReplayError::Checkpoint(format!("checkpoint {}: {what}", path.display()))
        };
        let bytes = fs::read(path).map_err(|e| fail(format!("could not read it: {e}")))?;
        let body = read_body(&bytes).map_err(|e| {
            fail(format!(
                "{e}; restore another checkpoint, or move this one away to start with empty tables"
            ))
        })?;
        let file_len = bytes.len() as u64;
        drop(bytes);
        let tables_in_file = body.tables.len() as u32;
        let items_in_file = body.items.len() as u64;
        let (mut tables, next_key) = self.build(body).map_err(fail)?;
        let old = {
            let mut state = self.lock();
            for (new, old) in tables.iter_mut().zip(&state.tables) {
                new.waiting_inserts = old.waiting_inserts;
                new.waiting_samples = old.waiting_samples;
            }
            // Keys are never reused, also not those issued since the
            // checkpoint was written.
            state.next_key = state.next_key.max(next_key);
            std::mem::replace(&mut state.tables, tables)
        };
        drop(old);
        self.wake_all();
        Ok(CheckpointSummary {
            path: path.to_path_buf(),
            tables: tables_in_file,
            items: items_in_file,
            bytes: file_len,
        })
    }

    /// The tables a checked body describes, in configuration order.
    fn build(&self, body: ReadBody) -> Result<(Vec<Table>, u64), String> {
        let corrupt = |what: String| format!("the checkpoint is corrupt: {what}");
        let next_key = body.next_key;
        let mut items: HashMap<u64, Item> = HashMap::with_capacity(body.items.len());
        for StoredItem { key, data } in body.items {
            if key == 0 || key >= next_key {
                return Err(corrupt(format!("item key {key} is outside 1..{next_key}")));
            }
            if items.insert(key, data).is_some() {
                return Err(corrupt(format!("item {key} is stored twice")));
            }
        }
        let mut tables: Vec<Option<Table>> = self.configs.iter().map(|_| None).collect();
        let mut seen = HashSet::new();
        for stored in body.tables {
            let name = stored.name;
            let Some(t) = self.configs.iter().position(|c| c.name == name) else {
                let configured: Vec<&str> = self.configs.iter().map(|c| c.name.as_str()).collect();
                return Err(format!(
                    "it holds table {name:?}, which this replay node does not have (its tables: {}); configure that table or restore another checkpoint",
                    configured.join(", ")
                ));
            };
            if !seen.insert(t) {
                return Err(corrupt(format!("table {name:?} is in it twice")));
            }
            let config = &self.configs[t];
            for (what, theirs, ours) in [
                ("sampler", &stored.sampler, &config.sampler),
                ("remover", &stored.remover, &config.remover),
            ] {
                if theirs.kind() != ours.kind() {
                    return Err(format!(
                        "table {name:?} was written with {what} {}, but its {what} is now {}: configure {what} {} to restore it",
                        theirs.kind(),
                        ours.kind(),
                        theirs.kind()
                    ));
                }
            }
            if stored.entries.len() as u64 > config.max_size {
                return Err(format!(
                    "table {name:?} holds {} items, more than its max_size {}: raise max_size to at least {} to restore it",
                    stored.entries.len(),
                    config.max_size,
                    stored.entries.len()
                ));
            }
            if stored.inserts.checked_sub(stored.deletes) != Some(stored.entries.len() as u64) {
                return Err(corrupt(format!(
                    "table {name:?} holds {} items, but counts {} inserts and {} deletes",
                    stored.entries.len(),
                    stored.inserts,
                    stored.deletes
                )));
            }
            let m = config.max_times_sampled;
            let mut table = Table::new(config.clone());
            for e in stored.entries {
                let Some(data) = items.get(&e.key) else {
                    return Err(corrupt(format!(
                        "table {name:?} holds item {}, which is not stored",
                        e.key
                    )));
                };
                if table.contains(e.key) {
                    return Err(corrupt(format!(
                        "table {name:?} holds item {} twice",
                        e.key
                    )));
                }
                check_priority(config, e.priority).map_err(corrupt)?;
                if m > 0 && e.times_sampled >= m {
                    return Err(format!(
                        "table {name:?} holds item {} sampled {} times, but its max_times_sampled is now {m}: raise it above {} to restore it",
                        e.key, e.times_sampled, e.times_sampled
                    ));
                }
                table.push(e.key, e.priority, data.clone(), e.times_sampled);
            }
            table.set_counters(Counters {
                inserts: stored.inserts,
                samples: stored.samples,
                deletes: stored.deletes,
            });
            tables[t] = Some(table);
        }
        let tables = tables
            .into_iter()
            .zip(&self.configs)
            .map(|(t, config)| t.unwrap_or_else(|| Table::new(config.clone())))
            .collect();
        Ok((tables, next_key))
    }
}

/// Check the magic, length and hash; decode the body.
fn read_body(bytes: &[u8]) -> Result<ReadBody, String> {
    let head = &bytes[..bytes.len().min(MAGIC.len())];
    if head != &MAGIC[..head.len()] {
        let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(&line[..line.len().min(60)]);
        return Err(if line.starts_with("lp-replay checkpoint ") {
            format!(
                "it is a checkpoint of another format ({line:?}); this lp-replay reads {:?}",
                String::from_utf8_lossy(&MAGIC[..MAGIC.len() - 1])
            )
        } else {
            format!(
                "not an lp-replay checkpoint: it does not start with {:?}",
                String::from_utf8_lossy(&MAGIC[..MAGIC.len() - 1])
            )
        });
    }
    if bytes.len() < MAGIC.len() + TRAILER {
        return Err(format!(
            "the checkpoint is truncated: {} bytes, shorter than any checkpoint",
            bytes.len()
        ));
    }
    let (body, trailer) = bytes[MAGIC.len()..].split_at(bytes.len() - MAGIC.len() - TRAILER);
    let stored_len = u64::from_le_bytes(trailer[..8].try_into().expect("8 bytes"));
    if stored_len != body.len() as u64 {
        // A cut file ends inside its body, so its "trailer" is body bytes.
        return Err(format!(
            "the checkpoint is truncated or corrupt: {} bytes do not end with the length and SHA-256 of what precedes them (was it cut short while copied, or written by something else?)",
            bytes.len()
        ));
    }
    if Sha256::digest(body).as_slice() != &trailer[8..] {
        return Err("the checkpoint is corrupt: its SHA-256 does not match its contents".into());
    }
    match postcard::take_from_bytes::<ReadBody>(body) {
        Ok((body, [])) => Ok(body),
        Ok((_, rest)) => Err(format!(
            "the checkpoint is corrupt: {} bytes follow its body",
            rest.len()
        )),
        Err(e) => Err(format!(
            "the checkpoint is corrupt: its body does not decode ({e})"
        )),
    }
}

/// Hashes and counts what passes through to the file.
struct Hashing {
    file: File,
    hasher: Sha256,
    len: u64,
    /// postcard hides the writer's errors; this keeps the first.
    error: Option<io::Error>,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.write(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.len += n as u64;
                Ok(n)
            }
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error.get_or_insert(e);
                Err(copy)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// `<path>.tmp`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Write the file; its size.
fn write_file(path: &Path, body: &WriteBody<'_>) -> io::Result<u64> {
    let tmp = tmp_path(path);
    let written = write_tmp(&tmp, body).and_then(|bytes| {
        fs::rename(&tmp, path)?;
        sync_dir(path)?;
        Ok(bytes)
    });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn write_tmp(tmp: &Path, body: &WriteBody<'_>) -> io::Result<u64> {
    // A leftover of a failed write may have another mode: start afresh.
    match fs::remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(tmp)?;
    file.write_all(MAGIC)?;
    let mut out = BufWriter::with_capacity(
        1 << 20,
        Hashing {
            file,
            hasher: Sha256::new(),
            len: 0,
            error: None,
        },
    );
    if let Err(e) = postcard::to_io(body, &mut out) {
        return Err(out
            .get_mut()
            .error
            .take()
            .unwrap_or_else(|| io::Error::other(e)));
    }
    let Hashing {
        mut file,
        hasher,
        len,
        ..
    } = out.into_inner().map_err(|e| e.into_error())?;
    file.write_all(&len.to_le_bytes())?;
    file.write_all(&hasher.finalize())?;
    file.sync_all()?;
    Ok((MAGIC.len() + TRAILER) as u64 + len)
}

/// Make the rename durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
