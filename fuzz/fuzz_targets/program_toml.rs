//! The program.toml loader on arbitrary text: it may refuse the input (a
//! diagnostic), never panic. Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none program_toml`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Relative component paths resolve against a directory that has none
    // of them, so loading stops at the first missing file at worst.
    let file = std::path::Path::new("/nonexistent/fuzz/program.toml");
    if let Err(diagnostic) = lp_host::program::load_str(file, &text, &[]) {
        // Every diagnostic renders (locations inside the text).
        let _ = diagnostic.to_string();
    }
});
