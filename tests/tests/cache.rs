//! Compiled components are cached by content hash: a second load of the
//! same bytes compiles nothing.

use lp_host::Sandbox;
use lp_host::launch::plan;
use lp_host::program::load;
use lp_tests::path;

#[test]
fn a_second_start_does_not_recompile() {
    let dir = tempfile::tempdir().unwrap();
    let program = || load(&path("examples/consumer_producers/program.toml"), &[]).unwrap();

    let first = std::sync::Arc::new(Sandbox::new(Some(dir.path().to_path_buf())).unwrap());
    plan(program(), first.clone()).unwrap();
    assert_eq!(
        first.cache().stats(),
        (2, 0),
        "producer and consumer compiled once each"
    );
    let cached = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(cached, 2);

    // A new engine (as a new process would have) finds both ready-made.
    let second = std::sync::Arc::new(Sandbox::new(Some(dir.path().to_path_buf())).unwrap());
    plan(program(), second.clone()).unwrap();
    assert_eq!(second.cache().stats(), (0, 2));
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
