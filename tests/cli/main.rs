//! vaepipe's one integration-test binary (one binary, because each links libtorch).
//! Modules by topic; each drives the real `vaepipe` executable or the real libtorch.

#![allow(clippy::unwrap_used)] // a panic in a test is a test failure

mod align;
mod faults;
mod fresh_checkout;
mod fuzz;
mod fuzz_bytes;
mod golden_keys;
mod gpu;
mod hardening;
mod pipeline;
mod remote_cache;
mod results;
mod root_layers;
mod startup;
mod support;
mod tidy;
mod toolchain;
mod warm_start;
