//! Turns an experiment's `device` string into a `tch::Device`, and describes the runtime.
//!
//! `auto` means CUDA when libtorch sees a GPU and the CPU otherwise, so one experiment file
//! runs everywhere. Asking for CUDA explicitly on a machine without it is an error rather
//! than a silent fallback: a user who wrote `cuda` wants to know. The device is never part of
//! a cache key (see the engine's key table); stages record the one they used in the manifest.
//!
//! It also says which libtorch the process really loaded (the rpath, `LD_LIBRARY_PATH` or
//! `LIBTORCH` may each point at one), and uploads batches to a GPU without waiting.

use std::path::{Path, PathBuf};

use tch::Device;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DeviceError {
    #[error("device `{0}` is not one of `auto`, `cpu`, `cuda`, `cuda:N`")]
    Unknown(String),
    #[error("device `{asked}` asks for CUDA, but libtorch sees no CUDA device on this machine; use `auto` or `cpu`")]
    NoCuda { asked: String },
    #[error("device `{asked}` does not exist: this machine has {count} CUDA device(s)")]
    NoSuchGpu { asked: String, count: usize },
}

/// What the machine offers, as far as device selection cares. Split out so the selection
/// rules can be tested for a GPU machine on a CPU-only one.
#[derive(Debug, Clone, Copy)]
pub struct Available {
    pub cuda_devices: usize,
}

impl Available {
    pub fn probe() -> Self {
        let cuda_devices = if tch::Cuda::is_available() {
            tch::Cuda::device_count().max(0) as usize
        } else {
            0
        };
        Available { cuda_devices }
    }
}

/// Resolves `auto | cpu | cuda | cuda:N` against what is available.
pub fn select(choice: &str, available: Available) -> Result<Device, DeviceError> {
    let choice = choice.trim();
    match choice.to_ascii_lowercase().as_str() {
        "" | "auto" => Ok(if available.cuda_devices > 0 {
            Device::Cuda(0)
        } else {
            Device::Cpu
        }),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => cuda(0, choice, available),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => cuda(index, choice, available),
            _ => Err(DeviceError::Unknown(choice.to_owned())),
        },
    }
}

fn cuda(index: usize, asked: &str, available: Available) -> Result<Device, DeviceError> {
    if available.cuda_devices == 0 {
        return Err(DeviceError::NoCuda {
            asked: asked.to_owned(),
        });
    }
    if index >= available.cuda_devices {
        return Err(DeviceError::NoSuchGpu {
            asked: asked.to_owned(),
            count: available.cuda_devices,
        });
    }
    Ok(Device::Cuda(index))
}

/// `cpu` or `cuda:0`: how manifests and logs name a device.
pub fn name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_owned(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The libtorch version vaepipe was built against (read by build.rs).
pub const LIBTORCH_VERSION: &str = env!("VAEPIPE_LIBTORCH_VERSION");

/// The long `--version` text: vaepipe, libtorch (built against, and the file loaded), and
/// what CUDA offers here.
pub fn version_text() -> String {
    let available = Available::probe();
    let cuda = match available.cuda_devices {
        0 => "not available".to_owned(),
        n => format!("available, {n} device(s)"),
    };
    let loaded = match loaded_libtorch() {
        Some(path) => {
            let version = libtorch_version_beside(&path).unwrap_or_else(|| "unknown".into());
            format!("loaded {} (version {version})", path.display())
        }
        None => "loaded: not found in /proc/self/maps".to_owned(),
    };
    format!(
        "{}\nlibtorch {LIBTORCH_VERSION} (built against)\nlibtorch {loaded}\nCUDA {cuda}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Resolves the run's device and applies its thread count. Device and threads are
/// `RunOptions`: never in a key.
pub fn for_stage(cx: &vaepipe_engine::stage::StageCx<'_>) -> anyhow::Result<Device> {
    if let Some(threads) = cx.options().threads {
        tch::set_num_threads(threads as i32);
    }
    Ok(select(&cx.options().device, Available::probe())?)
}

/// The `libtorch_cpu.so` this process mapped (the dynamic loader's choice), from
/// /proc/self/maps; `None` where that file does not exist (not Linux).
pub fn loaded_libtorch() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            Path::new(path)
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("libtorch_cpu.so"))
        })
        .map(PathBuf::from)
}

/// The version of the libtorch whose `lib/` holds `library`: the wheel's `torch/version.py`
/// or a libtorch zip's `build-version`, one level above `lib/` (as build.rs reads it).
pub fn libtorch_version_beside(library: &Path) -> Option<String> {
    let root = library.parent()?.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return Some(line.split('\'').nth(1)?.to_owned());
    }
    let text = std::fs::read_to_string(root.join("build-version")).ok()?;
    Some(text.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU_ONLY: Available = Available { cuda_devices: 0 };
    const TWO_GPUS: Available = Available { cuda_devices: 2 };

    #[test]
    fn auto_picks_cuda_only_when_present() {
        assert_eq!(select("auto", CPU_ONLY), Ok(Device::Cpu));
        assert_eq!(select("auto", TWO_GPUS), Ok(Device::Cuda(0)));
        assert_eq!(select("", TWO_GPUS), Ok(Device::Cuda(0)));
    }

    #[test]
    fn auto_on_this_machine_matches_what_libtorch_sees() {
        let here = Available::probe();
        let expected = if tch::Cuda::is_available() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        };
        assert_eq!(select("auto", here), Ok(expected));
    }

    #[test]
    fn explicit_cuda_without_gpu_is_an_error_not_a_fallback() {
        assert_eq!(
            select("cuda", CPU_ONLY),
            Err(DeviceError::NoCuda {
                asked: "cuda".into()
            })
        );
        assert_eq!(
            select("cuda:2", TWO_GPUS),
            Err(DeviceError::NoSuchGpu {
                asked: "cuda:2".into(),
                count: 2
            })
        );
        assert_eq!(select("CUDA:1", TWO_GPUS), Ok(Device::Cuda(1)));
    }

    #[test]
    fn the_loaded_libtorch_is_a_real_file_with_a_version() {
        // Any tensor op has mapped libtorch by now.
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, Device::Cpu));
        let path = loaded_libtorch().expect("libtorch_cpu.so is in /proc/self/maps");
        assert!(path.is_file(), "{}", path.display());
        let version = libtorch_version_beside(&path).expect("a version beside it");
        assert!(version.starts_with("2."), "{version}");
        assert_eq!(
            LIBTORCH_VERSION, version,
            "built against one libtorch, loaded another"
        );
    }

    #[test]
    fn unknown_device_names_the_choices() {
        let err = select("tpu", CPU_ONLY).unwrap_err();
        assert!(
            err.to_string().contains("`auto`, `cpu`, `cuda`, `cuda:N`"),
            "{err}"
        );
        assert!(select("cuda:x", TWO_GPUS).is_err());
    }
}
