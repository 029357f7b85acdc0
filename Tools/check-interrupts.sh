#!/usr/bin/env bash
# SIGINT (Ctrl-C) at random moments of `convert` and `compile` on a 1.4 GB checkpoint: after each,
# no hidden temporary output (.NAME.tmp-PID) may be left in the output's folder, and the target
# must not exist (it is only ever renamed into place when complete).
#   Tools/check-interrupts.sh [DIR] [TIMES]     (default out/interrupts, 10)
# Needs the release build (swift build -c release); writes ~3 GB into DIR.
set -uo pipefail
# Job control: background jobs get SIGINT as a foreground one would (a non-interactive shell
# otherwise starts them ignoring it, and diffbir keeps a signal it was started ignoring).
set -m
cd "$(dirname "$0")/.."
bin=.build/release/diffbir
dir=${1:-out/interrupts}
times=${2:-10}
mkdir -p "$dir"
ckpt=$dir/controlnet.safetensors
# DiffBIR's IRControlNet in its published layout (seeded values): 1.44 GB of f32.
[ -f "$ckpt" ] || "$bin" synth --layout controlnet -o "$ckpt" || exit 1
ls -l "$ckpt"
failures=0
run() {  # $1: label, $2: output, rest: the command
  local label=$1 output=$2; shift 2
  # One run uninterrupted first: the moments are drawn inside its duration, so that on a fast
  # machine the signal still lands while the command works.
  rm -f "$output"
  local t0 t1 span
  t0=$(date +%s.%N); "$@" > /dev/null 2>&1 || { echo "$label: the command fails without a signal" >&2; exit 1; }; t1=$(date +%s.%N)
  span=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  echo "$label: ${span}s uninterrupted"
  for i in $(seq "$times"); do
    rm -f "$output"
    "$@" > /dev/null 2>&1 &
    local pid=$!
    # A random moment between 2 % and 90 % of the uninterrupted run.
    local delay; delay=$(awk -v s="$RANDOM" -v d="$span" 'BEGIN { srand(s); printf "%.2f", d * (0.02 + rand() * 0.88) }')
    sleep "$delay"
    kill -INT "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    local status=$?
    local left; left=$(find "$dir" -maxdepth 1 -name ".*.tmp-*" | wc -l)
    local target=absent
    [ -e "$output" ] && target=present
    echo "$label #$i: SIGINT after ${delay}s, exit $status, temporary files left: $left, target $target"
    if [ "$left" -ne 0 ]; then failures=$((failures + 1)); find "$dir" -maxdepth 1 -name ".*.tmp-*" -delete; fi
    # A target may exist only if the command finished before the signal (exit 0).
    if [ "$target" = present ] && [ "$status" -ne 0 ]; then failures=$((failures + 1)); fi
  done
}
run convert "$dir/out.safetensors" "$bin" convert "$ckpt" --dtype f16 -o "$dir/out.safetensors"
run compile "$dir/out.plan" "$bin" compile --model controlnet --weights "$ckpt" -o "$dir/out.plan" --quiet
echo "failures: $failures"
[ "$failures" -eq 0 ]
