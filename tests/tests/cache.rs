//! Compiled components are cached by content hash: a second load of the
//! same bytes compiles nothing. Loading a compiled component runs its
//! machine code, so an entry that was changed, swapped, cut short, put
//! behind a symlink or left writable by others is compiled again, and a
//! directory others can write is not used at all.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lp_host::Sandbox;
use lp_host::launch::plan;
use lp_host::program::load;
use lp_tests::{fifo_in, lines_of, path, run_in};

const HELLO: &str = "examples/hello_world/program.toml";
const CONSUMER_PRODUCERS: &str = "examples/consumer_producers/program.toml";

/// A new engine with its cache in `dir`, as a new process would have.
fn sandbox_in(dir: &Path) -> Arc<Sandbox> {
    Arc::new(Sandbox::new(Some(dir.to_path_buf())).unwrap())
}

/// Load (compiling or not) every component of `program`.
fn plan_in(sandbox: &Arc<Sandbox>, program: &str) {
    plan(load(&path(program), &[]).unwrap(), sandbox.clone()).unwrap();
}

/// The compiled components in the cache directory, sorted.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    found.sort();
    found
}

/// The cache's only entry, after compiling hello_world into `dir`.
fn cached_hello(dir: &Path) -> PathBuf {
    let first = sandbox_in(dir);
    plan_in(&first, HELLO);
    assert_eq!(first.cache().stats(), (1, 0));
    let found = entries(dir);
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

/// hello_world runs in `sandbox` and greets.
fn assert_hello_runs(sandbox: Arc<Sandbox>) {
    let (outcome, lines) = run_in(sandbox, HELLO, &[]).unwrap();
    assert!(outcome.success(), "{:?}", outcome.failures);
    assert_eq!(lines_of(&lines, "hello"), ["Hello World!!!"]);
}

/// The byte range of the machine code (the ELF `.text` section) in a
/// cache entry.
fn machine_code(entry: &[u8]) -> std::ops::Range<usize> {
    let start = entry
        .windows(4)
        .position(|w| w == b"\x7fELF")
        .expect("an entry holds an ELF object");
    let elf = &entry[start..];
    let int = |at: usize, len: usize| -> usize {
        let mut bytes = [0u8; 8];
        bytes[..len].copy_from_slice(&elf[at..at + len]);
        u64::from_le_bytes(bytes) as usize
    };
    let (headers, header_size, count, names) =
        (int(0x28, 8), int(0x3a, 2), int(0x3c, 2), int(0x3e, 2));
    let header = |i: usize| headers + i * header_size;
    let strings = int(header(names) + 24, 8);
    for i in 0..count {
        let name = strings + int(header(i), 4);
        if elf[name..].starts_with(b".text\0") {
            let (offset, size) = (int(header(i) + 24, 8), int(header(i) + 32, 8));
            assert!(size > 0);
            return start + offset..start + offset + size;
        }
    }
    panic!("the entry's ELF object has no .text section");
}

#[test]
fn a_second_start_does_not_recompile() {
    let dir = tempfile::tempdir().unwrap();

    let first = sandbox_in(dir.path());
    plan_in(&first, CONSUMER_PRODUCERS);
    assert_eq!(
        first.cache().stats(),
        (2, 0),
        "producer and consumer compiled once each"
    );
    assert_eq!(entries(dir.path()).len(), 2);

    // A new engine (as a new process would have) finds both ready-made.
    let second = sandbox_in(dir.path());
    plan_in(&second, CONSUMER_PRODUCERS);
    assert_eq!(second.cache().stats(), (0, 2));
}

#[test]
fn an_entry_whose_machine_code_was_changed_is_compiled_again_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let entry = cached_hello(dir.path());
    let mut bytes = std::fs::read(&entry).unwrap();
    // int3 over the whole of the code: run, it would end in SIGTRAP.
    let code = machine_code(&bytes);
    bytes[code].fill(0xcc);
    std::fs::write(&entry, &bytes).unwrap();

    let sandbox = sandbox_in(dir.path());
    plan_in(&sandbox, HELLO);
    assert_eq!(
        sandbox.cache().stats(),
        (1, 0),
        "the changed entry was loaded"
    );
    assert_hello_runs(sandbox.clone());
    // The entry was replaced by a good one: the run loaded it.
    assert_eq!(sandbox.cache().stats(), (1, 1));
    assert!(
        std::fs::read(&entry).unwrap() != bytes,
        "the entry was not replaced"
    );
}

#[test]
fn an_entry_copied_over_another_ones_name_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    plan_in(&sandbox_in(dir.path()), CONSUMER_PRODUCERS);
    let found = entries(dir.path());
    assert_eq!(found.len(), 2);
    std::fs::copy(&found[0], &found[1]).unwrap();

    let sandbox = sandbox_in(dir.path());
    let planned = plan(
        load(&path(CONSUMER_PRODUCERS), &[]).unwrap(),
        sandbox.clone(),
    );
    assert_eq!(
        sandbox.cache().stats(),
        (1, 1),
        "the copy was loaded as the other component"
    );
    planned.unwrap();
    let again = sandbox_in(dir.path());
    plan_in(&again, CONSUMER_PRODUCERS);
    assert_eq!(again.cache().stats(), (0, 2), "the copy was replaced");
}

#[test]
fn a_truncated_entry_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let entry = cached_hello(dir.path());
    let bytes = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();

    let sandbox = sandbox_in(dir.path());
    assert_hello_runs(sandbox.clone());
    assert_eq!(sandbox.cache().stats(), (1, 0));
    let again = sandbox_in(dir.path());
    plan_in(&again, HELLO);
    assert_eq!(
        again.cache().stats(),
        (0, 1),
        "the entry was rewritten whole"
    );
}

#[test]
fn an_entry_others_can_write_is_compiled_again_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let entry = cached_hello(dir.path());
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();

    let sandbox = sandbox_in(dir.path());
    plan_in(&sandbox, HELLO);
    assert_eq!(sandbox.cache().stats(), (1, 0));
    let mode = std::fs::metadata(&entry).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[test]
fn a_directory_others_can_write_is_not_used_and_the_program_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();

    let first = sandbox_in(dir.path());
    assert_hello_runs(first.clone());
    assert_eq!(first.cache().stats(), (1, 0));
    let second = sandbox_in(dir.path());
    assert_hello_runs(second.clone());
    assert_eq!(second.cache().stats(), (1, 0), "compiled in memory again");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "wrote into the directory: {left:?}");
}

#[test]
fn a_new_cache_directory_is_private() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("a/cache");
    plan_in(&sandbox_in(&dir), HELLO);
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    assert_eq!(entries(&dir).len(), 1);
}

#[test]
fn a_symlink_at_an_entry_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let entry = cached_hello(dir.path());
    // The good entry moved away, a symlink to it in its place.
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = elsewhere.path().join("moved.cwasm");
    std::fs::rename(&entry, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &entry).unwrap();
    let bytes = std::fs::read(&moved).unwrap();

    let sandbox = sandbox_in(dir.path());
    plan_in(&sandbox, HELLO);
    assert_eq!(
        sandbox.cache().stats(),
        (1, 0),
        "loaded through the symlink"
    );
    assert!(std::fs::symlink_metadata(&entry).unwrap().is_file());
    assert!(
        std::fs::read(&moved).unwrap() == bytes,
        "wrote through the symlink"
    );
}

#[test]
fn a_symlink_where_a_temporary_file_would_go_is_not_followed() {
    // The entry's name, from a first cache.
    let first = tempfile::tempdir().unwrap();
    let name = cached_hello(first.path());
    let name = name.file_name().unwrap().to_string_lossy().into_owned();

    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("victim");
    std::fs::write(&victim, b"not yours").unwrap();
    let temporary = format!("{name}.{}.0.tmp", std::process::id());
    std::os::unix::fs::symlink(&victim, dir.path().join(temporary)).unwrap();

    let sandbox = sandbox_in(dir.path());
    plan_in(&sandbox, HELLO);
    let victim_now = std::fs::read(&victim).unwrap();
    assert!(victim_now == b"not yours", "wrote through the symlink");
    assert!(
        std::fs::symlink_metadata(dir.path().join(&name))
            .unwrap()
            .is_file()
    );
    let again = sandbox_in(dir.path());
    plan_in(&again, HELLO);
    assert_eq!(again.cache().stats(), (0, 1), "the entry was stored");
}

#[test]
fn files_that_are_not_components_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(Some(dir.path().to_path_buf())).unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm at all").unwrap();
    let err = sandbox.load(&garbage).unwrap_err().to_string();
    assert!(err.contains("is not a WebAssembly file"), "{err}");
    let module = dir.path().join("module.wasm");
    // The smallest core module: magic and version 1.
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let err = sandbox.load(&module).unwrap_err().to_string();
    assert!(
        err.contains("is a core WebAssembly module, not a component"),
        "{err}"
    );
}

#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = fifo_in(dir.path(), "fifo.wasm");
    let sandbox = sandbox_in(dir.path());
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(sandbox.load(&fifo).map(|_| ()).map_err(|e| e.to_string()));
    });
    let err = receive
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("loading a FIFO blocked")
        .unwrap_err();
    assert!(
        err.contains("is a FIFO (named pipe), not a regular file"),
        "{err}"
    );
}
