//! libFuzzer target: arbitrary bytes as a checkpoint `.index` file. `Index::parse` must return
//! (Ok or a `CkptError`) without panicking, overflowing or allocating without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vaepipe_tfckpt::Index::parse(std::path::Path::new("fuzz.index"), data);
});
