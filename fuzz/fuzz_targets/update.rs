//! Fuzz target: `beacon::fuzz::update` (see src/fuzz.rs); its corpus is
//! replayed on stable by tests/fuzz_corpus.rs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    beacon::fuzz::update(data);
});
