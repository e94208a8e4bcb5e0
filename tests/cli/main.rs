//! vaepipe's one integration-test binary (one binary, because each links libtorch).
//! Modules by topic; each drives the real `vaepipe` executable or the real libtorch.

mod tidy;
mod toolchain;
