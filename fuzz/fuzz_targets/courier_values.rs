//! Decoding courier values from arbitrary bytes (`lp_host::fuzzing`).
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none courier_values`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lp_host::fuzzing::courier_values(data));
