//! vaepipe's one integration-test binary (one binary, because each links libtorch).
//! Modules by topic; each drives the real `vaepipe` executable or the real libtorch.

#![allow(clippy::unwrap_used)] // a panic in a test is a test failure

mod golden_keys;
mod align;
mod gpu;
mod faults;
mod fuzz;
mod hardening;
mod pipeline;
mod root_layers;
mod results;
mod support;
mod tidy;
mod toolchain;
