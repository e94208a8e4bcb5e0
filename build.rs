//! Makes the vaepipe binaries find libtorch at run time without LD_LIBRARY_PATH.
//!
//! torch-sys links libtorch but leaves locating it at run time to the user. Because this
//! package depends on torch-sys directly, cargo hands us `DEP_TCH_LIBTORCH_LIB` (torch-sys
//! declares `links = "tch"`), and we bake that directory into every binary's rpath.
//!
//! rustc links with `--as-needed`, which would drop `libtorch_cuda.so` (no symbol of it is
//! referenced directly); on a GPU machine the CUDA kernels would then never register and
//! `device = "auto"` would silently train on the CPU. So libtorch is linked with
//! `--no-as-needed`, which keeps its CUDA half (and everything it needs) in the link.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{lib}");
        for name in ["torch", "torch_cpu", "c10"] {
            println!("cargo:rustc-link-arg=-l{name}");
        }
        if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-ltorch_cuda");
        }
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
