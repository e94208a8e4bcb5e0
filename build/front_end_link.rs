//! The `vaepipe` binary's torch-free start-up, done at link time (issue 17, part 3).
//!
//! libtorch's static initialisers cost ~0.5 s of CPU per process (kernel and operator
//! registration in `libtorch_cpu.so`, then the CUDA libraries), which engine-only work (`plan`,
//! `dag`, `gc`, a fully cached `run`) never needs. Linux has no lazy `DT_NEEDED`, and tch links
//! its C++ wrapper statically into the binary, so the torch side cannot simply be `dlopen`ed
//! later. Instead the `vaepipe` binary is linked through a small wrapper (written here into
//! `OUT_DIR`) that, after the real linker:
//!
//! 1. removes the `DT_NEEDED` entries of libtorch's own libraries (`libtorch*`, `libc10*`), and
//! 2. marks every undefined dynamic symbol that those libraries define as weak.
//!
//! Such a binary starts without mapping libtorch: the weak references resolve to nothing, and
//! nothing calls them. When a verb needs torch, `src/torch_runtime.rs` re-executes the same
//! binary with the libraries in `LD_PRELOAD`; the dynamic loader then binds every weak reference
//! to them at start-up exactly as a normal link would (CUDA's registration included).
//!
//! Only the `vaepipe` binary gets this (`rustc-link-arg-bin`); test binaries link libtorch
//! normally. The patch works on little-endian ELF64 (x86_64, aarch64); anything it does not
//! recognise leaves the binary as linked (with libtorch), which is slower but correct.

use std::collections::HashSet;
use std::path::Path;

/// The libraries the front end does not need at start-up.
pub fn is_torch_library(name: &str) -> bool {
    name.starts_with("libtorch") || name.starts_with("libc10")
}

/// Writes the linker wrapper into `dir` (as `ld.mold`, the name gcc's `-fuse-ld=mold` looks
/// for in `-B` directories) and returns the link args that route the `vaepipe` binary through it.
pub fn wrapper_link_args(
    dir: &Path,
    real_linker: &Path,
    patcher: &Path,
    lib: &Path,
) -> Vec<String> {
    std::fs::create_dir_all(dir).expect("OUT_DIR is writable");
    let script = format!(
        "#!/bin/sh\n\
         # Written by vaepipe's build.rs (build/front_end_link.rs): link the `vaepipe` binary,\n\
         # then drop its DT_NEEDED on libtorch and weaken the references, so it starts torch-free.\n\
         out=; prev=\n\
         for a in \"$@\"; do [ \"$prev\" = -o ] && out=$a; prev=$a; done\n\
         '{linker}' \"$@\" || exit $?\n\
         exec '{patcher}' --patch-front-end \"$out\" '{lib}'\n",
        linker = real_linker.display(),
        patcher = patcher.display(),
        lib = lib.display(),
    );
    let path = dir.join("ld.mold");
    std::fs::write(&path, script).expect("OUT_DIR is writable");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("OUT_DIR is writable");
    }
    vec![format!("-B{}", dir.display()), "-fuse-ld=mold".to_owned()]
}

/// The wrapper's second half: patches `binary` in place. Prints why and leaves the file as
/// linked when it cannot (the binary then loads libtorch at start, as before).
pub fn patch_main(binary: &Path, lib: &Path) -> std::process::ExitCode {
    match patch(binary, lib) {
        Ok((needed, weakened)) => {
            eprintln!(
                "vaepipe front end: removed {needed} libtorch DT_NEEDED, weakened {weakened} references"
            );
        }
        Err(why) => eprintln!(
            "warning: vaepipe front end not patched ({why}); it will load libtorch at start-up"
        ),
    }
    std::process::ExitCode::SUCCESS
}

fn patch(binary: &Path, lib: &Path) -> Result<(usize, usize), String> {
    let mut bytes = std::fs::read(binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    let mut torch_symbols = HashSet::new();
    for entry in std::fs::read_dir(lib).map_err(|e| format!("{}: {e}", lib.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| is_torch_library(&n) && n.ends_with(".so")) {
            let library = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let elf = Elf::parse(&library)?;
            for sym in elf.dynamic_symbols(&library)? {
                if sym.defined {
                    torch_symbols.insert(sym.name.to_owned());
                }
            }
        }
    }
    if torch_symbols.is_empty() {
        return Err(format!("no libtorch libraries in {}", lib.display()));
    }
    let elf = Elf::parse(&bytes)?;
    let (dynamic_offset, dynamic_size) = elf.section(6).ok_or("no .dynamic section")?;
    let strtab_offset = elf.dynamic_strtab()?;
    // 1. DT_NEEDED entries of libtorch's libraries: keep the others in order, pad with DT_NULL.
    let entries: Vec<(u64, u64)> = (0..dynamic_size / 16)
        .map(|i| {
            (
                u64_at(&bytes, dynamic_offset + i * 16),
                u64_at(&bytes, dynamic_offset + i * 16 + 8),
            )
        })
        .collect();
    let keep: Vec<(u64, u64)> = entries
        .iter()
        .copied()
        .filter(|&(tag, value)| {
            tag != DT_NEEDED || !is_torch_library(cstr_ref(&bytes, strtab_offset + value as usize))
        })
        .collect();
    let removed = entries.len() - keep.len();
    // 2. Undefined global symbols that libtorch defines become weak.
    let to_weaken: Vec<usize> = elf
        .dynamic_symbols(&bytes)?
        .into_iter()
        .filter(|s| !s.defined && s.binding == STB_GLOBAL && torch_symbols.contains(s.name))
        .map(|s| s.info_offset)
        .collect();
    for (i, &(tag, value)) in keep
        .iter()
        .chain(std::iter::repeat(&(0, 0)))
        .take(entries.len())
        .enumerate()
    {
        let at = dynamic_offset + i * 16;
        bytes[at..at + 8].copy_from_slice(&tag.to_le_bytes());
        bytes[at + 8..at + 16].copy_from_slice(&value.to_le_bytes());
    }
    for &at in &to_weaken {
        bytes[at] = (STB_WEAK << 4) | (bytes[at] & 0xf);
    }
    // Write beside, then rename: the linker's output is never left half-written.
    let tmp = binary.with_extension("front-end-patch");
    std::fs::write(&tmp, &bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let permissions = std::fs::metadata(binary)
        .map_err(|e| e.to_string())?
        .permissions();
    std::fs::set_permissions(&tmp, permissions).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    Ok((removed, to_weaken.len()))
}

const DT_NEEDED: u64 = 1;
const SHT_DYNSYM: u32 = 11;
const STB_GLOBAL: u8 = 1;
const STB_WEAK: u8 = 2;

struct Symbol<'a> {
    name: &'a str,
    defined: bool,
    binding: u8,
    /// File offset of the symbol's `st_info` byte.
    info_offset: usize,
}

/// The section headers of a little-endian ELF64 file: (type, offset, size, link).
struct Elf {
    sections: Vec<(u32, usize, usize, usize)>,
}

impl Elf {
    fn parse(bytes: &[u8]) -> Result<Elf, String> {
        if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
            return Err("not a little-endian ELF64 file".to_owned());
        }
        let shoff = u64_at(bytes, 0x28) as usize;
        let entsize = u16_at(bytes, 0x3a) as usize;
        let count = u16_at(bytes, 0x3c) as usize;
        let mut sections = Vec::with_capacity(count);
        for i in 0..count {
            let at = shoff + i * entsize;
            if at + 64 > bytes.len() {
                return Err("section headers past the end of the file".to_owned());
            }
            let kind = u32_at(bytes, at + 4);
            let offset = u64_at(bytes, at + 0x18) as usize;
            let size = u64_at(bytes, at + 0x20) as usize;
            let link = u32_at(bytes, at + 0x28) as usize;
            if offset.saturating_add(size) > bytes.len() && kind != 8 {
                return Err("a section past the end of the file".to_owned());
            }
            sections.push((kind, offset, size, link));
        }
        Ok(Elf { sections })
    }

    /// (offset, size) of the first section of `kind`.
    fn section(&self, kind: u32) -> Option<(usize, usize)> {
        self.sections
            .iter()
            .find(|s| s.0 == kind)
            .map(|s| (s.1, s.2))
    }

    /// The dynamic string table (`.dynsym`'s linked section), which `.dynamic` also uses.
    fn dynamic_strtab(&self) -> Result<usize, String> {
        let dynsym = self
            .sections
            .iter()
            .find(|s| s.0 == SHT_DYNSYM)
            .ok_or("no .dynsym")?;
        let strtab = self.sections.get(dynsym.3).ok_or("bad .dynsym link")?;
        Ok(strtab.1)
    }

    fn dynamic_symbols<'a>(&self, bytes: &'a [u8]) -> Result<Vec<Symbol<'a>>, String> {
        let dynsym = self
            .sections
            .iter()
            .find(|s| s.0 == SHT_DYNSYM)
            .ok_or("no .dynsym")?;
        let strtab = self.dynamic_strtab()?;
        let mut out = Vec::with_capacity(dynsym.2 / 24);
        for i in 0..dynsym.2 / 24 {
            let at = dynsym.1 + i * 24;
            let name_offset = u32_at(bytes, at) as usize;
            let info = bytes[at + 4];
            let shndx = u16_at(bytes, at + 6);
            let name = cstr_ref(bytes, strtab + name_offset);
            out.push(Symbol {
                name,
                defined: shndx != 0,
                binding: info >> 4,
                info_offset: at + 4,
            });
        }
        Ok(out)
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(word)
}

fn cstr_ref(b: &[u8], at: usize) -> &str {
    let tail = b.get(at..).unwrap_or_default();
    let end = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
    std::str::from_utf8(&tail[..end]).unwrap_or("")
}
