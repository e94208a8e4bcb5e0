//! libFuzzer target: arbitrary text as `list_attr_celeba.txt`, `list_eval_partition.txt` and
//! `identity_CelebA.txt`. Each parser must return (Ok or an error naming the file) without
//! panicking or allocating without bound; the error must render.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaepipe_facedata::celeba;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = std::path::Path::new("fuzz.txt");
    if let Err(e) = celeba::parse_attributes(path, &text) {
        assert!(e.to_string().starts_with("fuzz.txt"));
    }
    if let Err(e) = celeba::parse_partitions(path, &text) {
        assert!(e.to_string().starts_with("fuzz.txt"));
    }
    if let Err(e) = celeba::parse_identities(path, &text) {
        assert!(e.to_string().starts_with("fuzz.txt"));
    }
});
