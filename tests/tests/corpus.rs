//! The corpus of bad input (tests/corpus): programs that are wrong in one
//! way each, some naming bad components (garbage bytes, an empty file, a
//! core module, a truncated component, components that are not lp nodes).
//! Each program starts with `# expect: TEXT` lines: what its error must
//! say. `lp-host check` must refuse every one with that text and a hint of
//! what to do — never pass, never panic — and `lp-host run` must refuse it
//! the same way.

use std::path::{Path, PathBuf};

use lp_tests::path;

/// The corpus, copied to a temporary directory with its `.wat` components
/// built (and `truncated.wasm` cut from one of them).
fn corpus() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let components = dir.path().join("components");
    let programs = dir.path().join("programs");
    std::fs::create_dir_all(&components).unwrap();
    std::fs::create_dir_all(&programs).unwrap();
    for entry in std::fs::read_dir(path("tests/corpus/components")).unwrap() {
        let file = entry.unwrap().path();
        let name = file.file_name().unwrap();
        if file.extension().is_some_and(|e| e == "wat") {
            let wasm = wat::parse_file(&file).unwrap();
            std::fs::write(components.join(name).with_extension("wasm"), wasm).unwrap();
        } else {
            std::fs::copy(&file, components.join(name)).unwrap();
        }
    }
    let whole = std::fs::read(components.join("http-import.wasm")).unwrap();
    std::fs::write(components.join("truncated.wasm"), &whole[..whole.len() / 2]).unwrap();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path("tests/corpus/programs")).unwrap() {
        let file = entry.unwrap().path();
        let copy = programs.join(file.file_name().unwrap());
        std::fs::copy(&file, &copy).unwrap();
        files.push(copy);
    }
    files.sort();
    (dir, files)
}

/// The `# expect:` lines of a corpus program.
fn expectations(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# expect: ").map(str::to_string))
        .collect()
}

#[test]
fn check_refuses_every_bad_input_saying_what_and_what_to_do() {
    let (_dir, files) = corpus();
    assert!(files.len() >= 15, "{files:?}");
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let report = lp_host::check::check(&file, &[], Some(path("target/lp-test-cache")));
        assert!(!report.ok, "{name}: passed the check");
        let problem = &report.errors[0];
        let text = format!(
            "{}:{}: {}\nhelp: {}",
            problem.line.unwrap_or(0),
            problem.column.unwrap_or(0),
            problem.message,
            problem.help.as_deref().unwrap_or("")
        );
        println!("{name}: {text}");
        let expected = expectations(&file);
        assert!(!expected.is_empty(), "{name} has no `# expect:` line");
        for e in expected {
            assert!(text.contains(&e), "{name}: expected {e:?} in:\n{text}");
        }
        assert!(
            problem.help.is_some(),
            "{name}: no hint of what to do:\n{text}"
        );
    }
}
