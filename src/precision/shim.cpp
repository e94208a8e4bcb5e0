// The few libtorch switches tch does not expose, as plain C functions for src/precision/ffi.rs:
// TF32 for cuBLAS matmuls and cuDNN convolutions (at::globalContext(), process-wide), and
// bf16 autocast for a device type (thread-local, like PyTorch's torch.autocast).
// Every function catches C++ exceptions: nothing may unwind into Rust.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>

extern "C" {

// Sets TF32 use for cuBLAS (matmul) and cuDNN (convolution). Returns 0, or -1 on error.
int vaepipe_set_tf32(int cublas, int cudnn) {
  try {
    at::globalContext().setAllowTF32CuBLAS(cublas != 0);
    at::globalContext().setAllowTF32CuDNN(cudnn != 0);
    return 0;
  } catch (...) {
    return -1;
  }
}

// Bit 0: cuBLAS may use TF32; bit 1: cuDNN may. -1 on error.
int vaepipe_tf32_state() {
  try {
    int state = 0;
    if (at::globalContext().allowTF32CuBLAS()) state |= 1;
    if (at::globalContext().allowTF32CuDNN()) state |= 2;
    return state;
  } catch (...) {
    return -1;
  }
}

// device: 0 = CPU, 1 = CUDA. Enters bfloat16 autocast on this thread and returns whether
// autocast was enabled before (0/1), or -1 on error; entering increments autocast's nesting.
int vaepipe_autocast_bf16_enter(int device) {
  try {
    const at::DeviceType type = device == 1 ? at::kCUDA : at::kCPU;
    const bool previous = at::autocast::is_autocast_enabled(type);
    at::autocast::set_autocast_dtype(type, at::kBFloat16);
    at::autocast::set_autocast_enabled(type, true);
    at::autocast::increment_nesting();
    return previous ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// Leaves what the matching enter began: restores the previous enabled state and, at the
// outermost level, clears the cast-weight cache, as torch.autocast's __exit__ does.
int vaepipe_autocast_exit(int device, int previous) {
  try {
    const at::DeviceType type = device == 1 ? at::kCUDA : at::kCPU;
    at::autocast::set_autocast_enabled(type, previous != 0);
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    return 0;
  } catch (...) {
    return -1;
  }
}

}  // extern "C"
