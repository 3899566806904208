#!/usr/bin/env bash
# Build the test guests with the machine's GNU as and ld: build.sh OUT_DIR [NAME...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_DIR [NAME...]}
shift
names=("$@")
((${#names[@]})) || names=(hello cmdline smp spin fault mmio blk)
mkdir -p "$out"
for n in "${names[@]}"; do
  as --64 -I "$here" -o "$out/$n.o" "$here/$n.s"
  script="$here/guest.ld"
  [[ -f "$here/$n.ld" ]] && script="$here/$n.ld"
  ld -nostdlib -static -z max-page-size=4096 --no-warn-rwx-segments -T "$script" -o "$out/$n" "$out/$n.o"
done
