# The two commands a fresh machine needs (see README.md):
#   make demo   runs experiments/demo.toml end to end on the embedded synthetic faces
#   make test   runs the whole test suite
# Both install what is missing first (scripts/bootstrap.sh) and nothing on a warm machine.

# libtorch lives in a per-user venv outside the repository; torch-sys finds it through LIBTORCH.
LIBTORCH := $(shell scripts/bootstrap.sh)
ifeq ($(LIBTORCH),)
$(error scripts/bootstrap.sh failed; run it directly to see why)
endif
export LIBTORCH

CARGO ?= cargo
ARGS ?=

.PHONY: demo test build bench fmt lint dist parity

demo:
	$(CARGO) run --quiet -- run experiments/demo.toml $(ARGS)

test:
	$(CARGO) test --workspace $(ARGS)

build:
	$(CARGO) build --workspace --all-targets

bench:
	$(CARGO) bench --workspace $(ARGS)

fmt:
	$(CARGO) fmt --all

# What CI checks before the tests (.ci/run): clippy with warnings as errors, and formatting.
lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all -- --check
# The portable binary (issue 16): stripped, HDF5 linked statically, needing only glibc and a
# libtorch (rpath, LD_LIBRARY_PATH or LIBTORCH's). Built against torch 2.11 for the GPU machine
# and gathered into .device/ by scripts/device/prepare.sh; prints the binary's path and size.
dist:
	scripts/device/prepare.sh
# facenet's original TF code beside vaepipe (tests/parity/; its venv is cached outside the repo).
parity:
	tests/parity/run.sh $(ARGS)
