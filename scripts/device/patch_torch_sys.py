#!/usr/bin/env python3
"""Makes a copy of torch-sys whose C++ shim compiles against an older libtorch.

torch-sys 0.26 wraps every ATen op of libtorch 2.13. Against libtorch 2.11 its generated
shim (libtch/torch_api_generated.cpp) fails on the ops 2.11 lacks (_philox_*,
_upsample_lanczos2d_aa*, ...) or declares differently. The smallest fix: in a copy of the
crate, replace the body of each such wrapper with one that throws "not in this libtorch"
(tch turns that into an error, never a crash). Nothing vaepipe calls is affected; the Rust
side of torch-sys and tch is unchanged.

    patch_torch_sys.py SRC_CRATE_DIR LIBTORCH_DIR DEST_DIR

An op is stubbed when no header under LIBTORCH_DIR/include/ATen/ops/ declares its name, or
when it is in SIGNATURE_CHANGED (present under the same name with other arguments).
Prints the stubbed wrappers.
"""

import pathlib
import re
import shutil
import sys

# Declared in libtorch 2.11 under the same name but with other arguments than 2.13's.
SIGNATURE_CHANGED = {"_scaled_dot_product_attention_math_for_mps"}

WRAPPER = re.compile(r"^(\w[^\n]*?\b(atg_\w+)\([^\n]*\) \{\n)(.*?)^\}\n", re.S | re.M)
CALL = re.compile(r"torch::([a-z_]\w*)\(")  # ops are lower case; IntArrayRef, Tensor are not


def declared_ops(libtorch: pathlib.Path) -> set:
    names = set()
    for header in (libtorch / "include" / "ATen" / "ops").glob("*.h"):
        names.update(re.findall(r"\b(\w+)\(", header.read_text(errors="replace")))
    return names


def main() -> int:
    src, libtorch, dest = map(pathlib.Path, sys.argv[1:4])
    known = declared_ops(libtorch)
    if not known:
        sys.exit(f"no ATen op headers under {libtorch}/include/ATen/ops")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest)
    cpp = dest / "libtch" / "torch_api_generated.cpp"
    stubbed = []

    def stub(m: re.Match) -> str:
        head, name, body = m.group(1), m.group(2), m.group(3)
        calls = set(CALL.findall(body))
        missing = {c for c in calls if c not in known or c in SIGNATURE_CHANGED}
        if not missing:
            return m.group(0)
        stubbed.append(name)
        message = f"{name}: not available in this libtorch (torch-sys was generated for 2.13)"
        return f'{head}  PROTECT(throw std::runtime_error("{message}");)\n}}\n'

    text = cpp.read_text()
    cpp.write_text(WRAPPER.sub(stub, text))
    print("\n".join(stubbed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
