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

//!
//! It compiles `src/precision/shim.cpp`, the few libtorch switches tch does not expose (TF32,
//! bf16 autocast), against the same libtorch's headers.
//!
//! It also records the libtorch version for `vaepipe --version` and the manifests.
//!
//! The `vaepipe` binary itself is linked through `build/front_end_link.rs`'s wrapper, which
//! removes its `DT_NEEDED` on libtorch so that engine-only verbs start without loading it
//! (`src/torch_runtime.rs` re-executes with libtorch when a verb needs it). The build script
//! binary doubles as that wrapper's patcher (`--patch-front-end`). Set
//! `VAEPIPE_LINK_TORCH_AT_START=1` when building to link it as before.

use std::path::{Path, PathBuf};

#[path = "build/front_end_link.rs"]
mod front_end_link;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, binary, lib] = args.as_slice() {
        if flag == "--patch-front-end" {
            return front_end_link::patch_main(Path::new(binary), Path::new(lib));
        }
    }
    build();
    std::process::ExitCode::SUCCESS
}

fn build() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let version = std::env::var("DEP_TCH_LIBTORCH_LIB")
        .ok()
        .and_then(|lib| libtorch_version(Path::new(&lib)))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=VAEPIPE_LIBTORCH_VERSION={version}");
    // Where libtorch lives, so `vaepipe bench --baseline pytorch` finds the venv's python.
    let lib_dir = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    println!("cargo:rustc-env=VAEPIPE_LIBTORCH_LIB={lib_dir}");
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
        compile_precision_shim(Path::new(&lib));
        link_front_end(Path::new(&lib));
    }
}

/// Routes the `vaepipe` binary's link through the torch-free start-up wrapper (Linux only).
fn link_front_end(lib: &Path) {
    println!("cargo:rerun-if-env-changed=VAEPIPE_LINK_TORCH_AT_START");
    println!("cargo:rerun-if-changed=build/front_end_link.rs");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if !linux || std::env::var_os("VAEPIPE_LINK_TORCH_AT_START").is_some_and(|v| v != "0") {
        return;
    }
    let (Some(out_dir), Ok(patcher)) = (std::env::var_os("OUT_DIR"), std::env::current_exe())
    else {
        return;
    };
    let wrapper_dir = PathBuf::from(out_dir).join("front-end-ld");
    for arg in front_end_link::wrapper_link_args(&wrapper_dir, &real_linker(), &patcher, lib) {
        println!("cargo:rustc-link-arg-bin=vaepipe={arg}");
    }
}

/// The linker rustc itself would use: its bundled `rust-lld` (through `gcc-ld/ld.lld`, as
/// rustc's `-fuse-ld=lld` does) when the toolchain ships it, else the system's `ld`.
fn real_linker() -> PathBuf {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let target = std::env::var("TARGET").unwrap_or_default();
    let sysroot = std::process::Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    sysroot
        .map(|root| {
            root.join("lib/rustlib")
                .join(target)
                .join("bin/gcc-ld/ld.lld")
        })
        .filter(|lld| lld.is_file())
        .unwrap_or_else(|| PathBuf::from("ld"))
}

/// Builds `src/precision/shim.cpp` into a static library linked before libtorch.
fn compile_precision_shim(lib: &Path) {
    println!("cargo:rerun-if-changed=src/precision/shim.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let include = lib.parent().map(|root| root.join("include"));
    let Some(include) = include.filter(|dir| dir.is_dir()) else {
        panic!(
            "libtorch's include/ directory is missing beside {}",
            lib.display()
        );
    };
    // The wheels since torch 2.7 use the C++11 ABI; torch-sys makes the same assumption.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .file("src/precision/shim.cpp")
        .include(&include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("vaepipe_precision_shim");
}

/// The wheel's `torch/version.py` (`__version__ = '2.13.0+cu130'`) or a libtorch zip's
/// `build-version` file, both one level above `lib/`.
fn libtorch_version(lib: &Path) -> Option<String> {
    let root = lib.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return Some(line.split('\'').nth(1)?.to_owned());
    }
    let text = std::fs::read_to_string(root.join("build-version")).ok()?;
    Some(text.trim().to_owned())
}
