#!/usr/bin/env bash
# Real-size benchmark (issue 17, part 4): CelebA-size and CASIA-size sets built cheaply (hard
# links to the 2,000 + 1,000 images synth-faces draws, attribute files generated row by row),
# and the release/dev binary driven over them. Prints a markdown table; a benchmark, not a test.
#
#   bench/real_size.sh [--bin target/debug/vaepipe] [--baseline BIN] [--dir /tmp/vaepipe-real-size] \
#       [--celeba 202599] [--casia-folders 10000] [--per-folder 50] \
#       [--align-check N] [--encode "10000 50000"]
#
# For each set, at full size and at a quarter of it (so the memory slope shows): the stat walk
# floor (`find -printf` of size and mtime), the stat and content fingerprints (`plan` on an input
# declared with `fingerprint = "stat"` / `"content"`: planning is the walk plus a key check;
# by content twice, the second reusing the stat cache), and the no-op `run` of a fully cached
# stage over the whole set, each as a ratio of the walk floor. With `--baseline BIN` (e.g. a
# build of main) every fingerprint and no-op row is measured with both binaries in the same
# run. Then align-check images/s on the first N files (`--align-check`, 0 = all). For CelebA:
# encode images/s and
# peak RSS, attribute-vectors + probes time and peak RSS, latents.h5 size, at each size in
# `--encode` (a subset of the CelebA-size set), with a 2-step train-vae as the model.
# Wall and user+sys come from /usr/bin/time; the load average is printed beside them.
set -euo pipefail

bin=target/debug/vaepipe
baseline=
dir=${TMPDIR:-/tmp}/vaepipe-real-size
celeba=202599
casia_folders=10000
per_folder=50
align_n=20000
encode_sizes="10000 50000"
while [ $# -gt 0 ]; do
  case $1 in
    --bin) bin=$2; shift 2 ;;
    --baseline) baseline=$(realpath "$2"); shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --celeba) celeba=$2; shift 2 ;;
    --casia-folders) casia_folders=$2; shift 2 ;;
    --per-folder) per_folder=$2; shift 2 ;;
    --align-check) align_n=$2; shift 2 ;;
    --encode) encode_sizes=$2; shift 2 ;;
    *) echo "unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
bin=$(realpath "$bin")
mkdir -p "$dir"
cd "$dir"
export VAEPIPE_CACHE_DIR="$dir/cache" VAEPIPE_RUNS_DIR="$dir/runs"

measure() { # measure LABEL CMD... : one table row (wall, user+sys, peak RSS)
  local label=$1; shift
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -f "%e %U %S %M" -o time.txt "$@" > out.txt 2>&1 || { cat out.txt >&2; exit 1; }
  read -r wall user sys rss < time.txt
  printf '| %s | %.2f | %.2f | %.0f MB | %s |\n' "$label" "$wall" "$(echo "$user + $sys" | bc)" \
    "$(echo "$rss / 1024" | bc)" "$load"
  echo "$wall" > last_wall.txt
}

ratio() { # ratio A B: A / B to two places
  printf '%.2f' "$(echo "scale=4; $1 / $2" | bc)"
}

# 1. The sources: synth-faces' 2,000 CelebA-style JPEGs and 1,000 CASIA-style PNGs.
if [ ! -d runs/source/faces/celeba ]; then
  cat > source.toml <<'EOF'
[experiment]
name = "source"
seed = 666
[stage.faces]
kind = "synth-faces"
celeba_images = 2000
celeba_identities = 100
identities = 40
images_per_identity = 25
EOF
  "$bin" run source.toml -q > /dev/null
fi
src_celeba=$(realpath runs/source/faces/celeba)
src_casia=$(realpath runs/source/faces/casia)

# 2. CelebA-size: img_align_celeba/NNNNNN.jpg → the sources in turn, attribute rows copied.
build_celeba() { # build_celeba DIR N
  local out=$1 n=$2
  [ -f "$out/.done" ] && return
  rm -rf "$out"; mkdir -p "$out/img_align_celeba"
  python3 - "$src_celeba" "$out" "$n" <<'EOF'
import os, sys
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(os.path.join(src, "list_attr_celeba.txt")).read().splitlines()
header, rows = lines[1], lines[2:]
part = [l.split()[1] for l in open(os.path.join(src, "list_eval_partition.txt"))]
ident = [l.split()[1] for l in open(os.path.join(src, "identity_CelebA.txt"))]
names = [r.split()[0] for r in rows]
with open(os.path.join(out, "list_attr_celeba.txt"), "w") as attrs, \
     open(os.path.join(out, "list_eval_partition.txt"), "w") as parts, \
     open(os.path.join(out, "identity_CelebA.txt"), "w") as ids:
    attrs.write(f"{n}\n{header}\n")
    for i in range(n):
        k = i % len(rows)
        name = f"{i + 1:06d}.jpg"
        os.link(os.path.join(src, "img_align_celeba", names[k]),
                os.path.join(out, "img_align_celeba", name))
        attrs.write(name + rows[k][len(names[k]):] + "\n")
        parts.write(f"{name} {part[k]}\n")
        ids.write(f"{name} {ident[k]}\n")
EOF
  touch "$out/.done"
}

# 3. CASIA-size: FOLDERS identity folders of PER images → the sources in turn.
build_casia() { # build_casia DIR FOLDERS PER
  local out=$1 folders=$2 per=$3
  [ -f "$out/.done" ] && return
  rm -rf "$out"; mkdir -p "$out"
  python3 - "$src_casia" "$out" "$folders" "$per" <<'EOF'
import os, sys
src, out, folders, per = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sources = sorted(os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs if f.endswith(".png"))
k = 0
for d in range(folders):
    folder = os.path.join(out, f"{d:07d}")
    os.mkdir(folder)
    for i in range(per):
        os.link(sources[k % len(sources)], os.path.join(folder, f"{i:03d}.png"))
        k += 1
EOF
  touch "$out/.done"
}

build_celeba celeba-full "$celeba"
build_casia casia-full "$casia_folders" "$per_folder"

fingerprint_toml() { # fingerprint_toml NAME PATH MODE [EXPECTED_SIZE]
  cat > "$1.toml" <<EOF
[experiment]
name = "$1"
seed = 1
[input.data]
path = "$2"
fingerprint = "$3"
[stage.check]
kind = "align-check"
from = { dataset = "data" }
on_bad = "skip"
expected_size = ${4:-[182, 182]}
EOF
}

echo "load average at start: $(cat /proc/loadavg); $(nproc) CPUs"
echo "binaries: this = $bin${baseline:+, main = $baseline}"
echo
echo "| what | wall s | user+sys s | peak RSS | load |"
echo "|---|---:|---:|---:|---:|"
binaries="this"
[ -n "$baseline" ] && binaries="main this"
bin_path() { if [ "$1" = main ]; then echo "$baseline"; else echo "$bin"; fi; }
for set in celeba casia; do
  # The expected size must be the images' own, or align-check rejects them from the header
  # without decoding (178x218 CelebA JPEGs, 182x182 CASIA PNGs).
  if [ $set = celeba ]; then data=celeba-full/img_align_celeba; n=$celeba; size="[178, 218]"
  else data=casia-full; n=$((casia_folders * per_folder)); size="[182, 182]"; fi
  # A quarter-size set beside the full one: peak RSS at N/4 and N shows the slope.
  if [ $set = celeba ]; then build_celeba celeba-quarter $((celeba / 4)); quarter=celeba-quarter/img_align_celeba; nq=$((celeba / 4))
  else build_casia casia-quarter $((casia_folders / 4)) "$per_folder"; quarter=casia-quarter; nq=$(((casia_folders / 4) * per_folder)); fi
  # SKIP_FINGERPRINTS=1: only align-check and encode (the walks take minutes at full size).
  [ "${SKIP_FINGERPRINTS:-0}" = 1 ] || for size_name in quarter full; do
    if [ $size_name = full ]; then d=$data; k=$n; else d=$quarter; k=$nq; fi
    find "$d" -type f -printf '%s %T@\n' > /dev/null # warm the dentry cache for every row alike
    measure "$set $k files: stat walk (find -printf)" find "$d" -type f -printf '%s %T@\n'
    floor=$(cat last_wall.txt)
    for b in $binaries; do
      for mode in stat content; do
        # expected_size [1, 1]: align-check rejects every image from its header, so the stage
        # is cheap to compute once and the no-op run below has a whole-set entry to hit.
        fingerprint_toml "fp-$set-$size_name-$mode" "$d" "$mode" "[1, 1]"
        measure "$set $k files: plan, $mode fingerprint ($b)" "$(bin_path $b)" plan "fp-$set-$size_name-$mode.toml"
        echo "|   → $(ratio "$(cat last_wall.txt)" "$floor") × the walk | | | | |"
        if [ $mode = content ] && [ $b = this ]; then
          measure "$set $k files: plan, content again (stat cache) ($b)" "$bin" plan "fp-$set-$size_name-$mode.toml"
          echo "|   → $(ratio "$(cat last_wall.txt)" "$floor") × the walk | | | | |"
        fi
      done
      # The no-op run: every stage cached (computed once here by the binary under test).
      "$bin" run "fp-$set-$size_name-stat.toml" -q > /dev/null 2>&1 || true
      measure "$set $k files: no-op run, stat ($b)" "$(bin_path $b)" run "fp-$set-$size_name-stat.toml" -q
      echo "|   → $(ratio "$(cat last_wall.txt)" "$floor") × the walk | | | | |"
    done
  done
  # align-check on the first N files (a folder of links to them).
  sub=align-$set-$align_n
  if [ ! -d "$sub" ]; then
    mkdir -p "$sub"
    find "$data" -type f | sort > all-files.txt
    # One identity-style folder: align-check reads the files in a dataset's folders.
    mkdir -p "$sub/all"
    head -n "$align_n" all-files.txt | awk -v d="$sub/all" '{printf "%s %s/%07d%s\n", $0, d, NR, substr($0, length($0)-3)}' \
      | while read -r from to; do ln "$from" "$to"; done
  fi
  fingerprint_toml "check-$set" "$sub" stat "$size"
  measure "$set align-check, $align_n images" "$bin" run "check-$set.toml" -q
  echo "|   → $(echo "$align_n / $(cat last_wall.txt)" | bc) images/s (wall, including start-up and fingerprint) | | | | |"
  measure "$set align-check, no-op rerun ($align_n files)" "$bin" run "check-$set.toml" -q
done

# 4. encode + attribute-vectors at each size, against one tiny model (train-vae, 2 steps).
for n in $encode_sizes; do
  build_celeba "celeba-$n" "$n"
  cat > "encode-$n.toml" <<EOF
[experiment]
name = "encode-$n"
seed = 1
device = "auto"
[input.casia]
path = "$src_casia"
[input.celeba]
path = "celeba-$n"
[stage.train]
kind = "train-vae"
from = { data = "casia" }
model = "dfc_vae"
reconstruction_loss_type = "PLAIN"
weights = "random"
max_steps = 2
batch_size = 8
save_every = 2
[stage.encode]
kind = "encode"
from = { model = "train", data = "celeba" }
[stage.vectors]
kind = "attribute-vectors"
from = { latents = "encode" }
EOF
  "$bin" run "encode-$n.toml" --only train -q > /dev/null
  for b in $binaries; do
    measure "encode $n CelebA images ($b)" "$(bin_path $b)" run "encode-$n.toml" --only encode --force encode -q
    echo "|   → $(echo "$n / $(cat last_wall.txt)" | bc) images/s (wall) | | | | |"
  done
  measure "attribute-vectors + probes, $n latents" "$bin" run "encode-$n.toml" --only vectors -q
  latents=$(find -L "runs/encode-$n/encode" -name latents.h5 | head -n 1)
  echo "|   latents.h5 for $n images: $(du -k --apparent-size -L "$latents" | cut -f1) KiB | | | | |"
done
echo
echo "load average at end: $(cat /proc/loadavg)"
# The sets are hard links (no data blocks); the cache holds listings and align-check reports.
[ "${KEEP:-0}" = 1 ] || rm -rf "$dir/cache" "$dir/runs/fp-"*
