# Sourced, not run: the one way vaepipe's scripts install a PyPI tool for the tests into a
# per-user venv outside the repository (~/.cache/vaepipe/<name>), so every clone and CI run
# reuses it (scripts/tensorboard/venv.sh, scripts/s3/venv.sh). Idempotent: a warm machine pays
# one `test -f`.
#
#   cached_venv NAME CHECK SPEC...
#
# installs SPEC... into the venv NAME unless its completion marker is there, proves the tool
# works with `python -c CHECK` (installing is not enough), and leaves the venv's path in $venv.
cached_venv() {
  local name=$1 check=$2
  shift 2
  local cache="${VAEPIPE_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/vaepipe}"
  venv="$cache/$name"
  if [ ! -f "$venv/.complete" ]; then
    echo "$name venv: installing $* into $venv (one time, ~1 min)" >&2
    mkdir -p "$cache"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
    "$venv/bin/python" -c "$check" >&2
    # Marker written last: an interrupted install is redone, never half-used.
    touch "$venv/.complete"
  fi
}
