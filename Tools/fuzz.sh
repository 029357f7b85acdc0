#!/usr/bin/env bash
# Fuzzes one of the readers that face untrusted files with libFuzzer (AddressSanitizer on):
#   Tools/fuzz.sh TARGET SECONDS [libFuzzer options...]
# TARGET: safetensors, torch (zip + pickle), onnx, png, ncnn, plan (reader + verifier); the targets
# are in Tests/Fuzz/Sources/Fuzz.swift, their seeds in Tests/Fuzz/corpus/TARGET (Tools/fuzz-corpus.sh).
# Limits: 2 GB of memory (-rss_limit_mb, -malloc_limit_mb), 10 s an input (-timeout). New inputs go
# to out/fuzz/TARGET/corpus, crashes to out/fuzz/TARGET/crashes/ (replay one with
# `.build/debug/diffbir-fuzz TARGET FILE` in a normal build, then make it a regression test).
# `-runs=N` stops after N executions instead of SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
target=$1 seconds=$2
shift 2
swift build -c release --product diffbir-fuzz --scratch-path .build/fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING \
  -Xcc -fsanitize=fuzzer-no-link,address -Xswiftc -use-ld=lld 2>&1 | grep -vE "^\[|Compiling|Building|Write" || true
work=out/fuzz/$target
mkdir -p "$work/corpus" "$work/crashes"
# (Swift's own crash reporter off: libFuzzer reports the crash and saves the input.)
SWIFT_BACKTRACE=enable=no DIFFBIR_FUZZ_TARGET=$target exec .build/fuzz/release/diffbir-fuzz "$work/corpus" "Tests/Fuzz/corpus/$target" \
  -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -max_len=65536 \
  -artifact_prefix="$work/crashes/" -print_final_stats=1 "$@"
