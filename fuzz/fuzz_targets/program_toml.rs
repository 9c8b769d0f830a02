//! The program.toml loader on arbitrary text (`lp_host::fuzzing`).
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none program_toml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lp_host::fuzzing::program_toml(data));
