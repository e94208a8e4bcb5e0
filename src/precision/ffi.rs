//! The only foreign calls in vaepipe: the C functions of `shim.cpp` (built by build.rs against
//! the libtorch tch links). Kept to plain integers in and out, and every C++ exception is
//! caught on the C++ side, so each call is as safe as a Rust function; `super` wraps them.
#![allow(unsafe_code)] // FFI to shim.cpp; the signatures below match it exactly.

use std::os::raw::c_int;

extern "C" {
    fn vaepipe_set_tf32(cublas: c_int, cudnn: c_int) -> c_int;
    fn vaepipe_tf32_state() -> c_int;
    fn vaepipe_autocast_bf16_enter(device: c_int) -> c_int;
    fn vaepipe_autocast_exit(device: c_int, previous: c_int) -> c_int;
}

/// 0 on success, -1 when libtorch threw.
pub fn set_tf32(cublas: bool, cudnn: bool) -> i32 {
    // SAFETY: takes and returns integers; the C++ side catches every exception.
    unsafe { vaepipe_set_tf32(c_int::from(cublas), c_int::from(cudnn)) }
}

/// Bit 0 cuBLAS, bit 1 cuDNN; -1 when libtorch threw.
pub fn tf32_state() -> i32 {
    // SAFETY: as above.
    unsafe { vaepipe_tf32_state() }
}

/// Previous autocast state of the device type (0/1); -1 when libtorch threw.
pub fn autocast_bf16_enter(cuda: bool) -> i32 {
    // SAFETY: as above; autocast state is thread-local in libtorch.
    unsafe { vaepipe_autocast_bf16_enter(c_int::from(cuda)) }
}

/// 0 on success; -1 when libtorch threw.
pub fn autocast_exit(cuda: bool, previous: bool) -> i32 {
    // SAFETY: as above.
    unsafe { vaepipe_autocast_exit(c_int::from(cuda), c_int::from(previous)) }
}
