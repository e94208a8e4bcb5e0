#!/usr/bin/env bash
# Successive halving against the grid it replaces (issue 19's benchmark), on the synthetic faces:
# the same 3 × 3 (alfa, beta) values, the grid training each to the full budget, halving training
# 9 trials at budget/9 and promoting the best third twice (its promoted trials warm-start from
# their lower rung). Reports each one's best probe accuracy and the training steps it computed,
# as a ratio of the grid's. Usage: bench/halving_vs_grid.sh [VAEPIPE_BINARY] [MIN_STEPS]
set -euo pipefail
bin="${1:-${CARGO_TARGET_DIR:-target}/debug/vaepipe}"
min="${2:-20}"
max=$((min * 9))
work="$(mktemp -d "${TMPDIR:-/tmp}/vaepipe-halving.XXXXXX")"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT

base() {
    cat <<TOML
[experiment]
name = "$1"
seed = 666

[stage.faces]
kind = "synth-faces"
celeba_images = 600
celeba_identities = 30
identities = 20
images_per_identity = 20

[stage.check]
kind = "align-check"
from = { dataset = "faces/casia" }
expected_size = [182, 182]
on_bad = "skip"

[stage.train]
kind = "train-vae"
from = { data = "faces/casia", check = "check" }
loss_features = ["Conv2d_1a_3x3"]
weights = "random"
max_steps = $max
batch_size = 16
latent_size = 32
initial_learning_rate = 0.001
save_every = $min

[stage.encode]
kind = "encode"
from = { model = "train", data = "faces/celeba" }
batch_size = 128

[stage.vectors]
kind = "attribute-vectors"
from = { latents = "encode" }

TOML
}
alfas="0.3, 1.0, 3.0"
betas="0.25, 0.5, 1.0"
{ base grid; printf '[sweep]\n"stage.train.alfa" = [%s]\n"stage.train.beta" = [%s]\n' "$alfas" "$betas"; } > "$work/grid.toml"
{ base halving; cat <<TOML; } > "$work/halving.toml"
[sweep]
strategy = "halving"
seed = 7
objective = "vectors.probe_average_accuracy"
goal = "max"
trials = 9
space."stage.train.alfa" = { choice = [$alfas] }
space."stage.train.beta" = { choice = [$betas] }
budget = { param = "stage.train.max_steps", min = $min, max = $max, eta = 3 }
TOML

for exp in grid halving; do
    start=$(date +%s%N)
    (cd "$work" && "$bin" --cache-dir "$work/cache-$exp" --runs-dir "$work/runs" -q run "$exp.toml" --threads 2 -j 1 >"$exp.log" 2>&1) \
        || { tail -20 "$work/$exp.log"; exit 1; }
    echo "$exp $(( ($(date +%s%N) - start) / 1000000 ))" >> "$work/times"
done

python3 - "$work" "$max" <<'PY'
import json, os, sys
work, full_budget = sys.argv[1], int(sys.argv[2])
times = dict(l.split() for l in open(os.path.join(work, "times")))
def summary(exp):
    root = os.path.join(work, "runs", exp)
    trains, best, best_full = {}, None, None
    for v in sorted(os.listdir(root)):
        t = os.path.join(root, v, "train")
        if not os.path.isdir(t):
            continue
        m = json.load(open(os.path.join(t, "manifest.json")))
        steps = m["params"]["max_steps"]
        warm = m.get("warm_start_from") or {}
        trains[os.path.realpath(t)] = steps - warm.get("budget", 0)
        acc = json.load(open(os.path.join(root, v, "vectors", "metrics.json")))["probe_average_accuracy"]
        best = acc if best is None else max(best, acc)
        if steps == full_budget:
            best_full = acc if best_full is None else max(best_full, acc)
    return sum(trains.values()), len(trains), best, best_full
g_steps, g_n, g_best, _ = summary("grid")
h_steps, h_n, h_best, h_best_full = summary("halving")
print(f"{'':8} {'trainings':>9} {'steps':>7} {'ratio':>6} {'best probe acc':>14} {'wall s':>7}")
print(f"{'grid':8} {g_n:>9} {g_steps:>7} {1.0:>6.2f} {g_best:>14.4f} {int(times['grid']) / 1000:>7.1f}")
print(f"{'halving':8} {h_n:>9} {h_steps:>7} {h_steps / g_steps:>6.2f} {h_best:>14.4f} {int(times['halving']) / 1000:>7.1f}")
print(f"halving's finalist (full budget): {h_best_full:.4f}; reaches the grid's best: {'yes' if h_best_full >= g_best else 'no'} "
      f"({h_best_full - g_best:+.4f}); training steps {h_steps / g_steps:.0%} of the grid's")
PY
