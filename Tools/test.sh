#!/usr/bin/env bash
# The whole test suite, from a fresh clone: system packages, debug build, every test.
#   Tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
Tools/setup.sh
swift build --build-tests
swift test --skip-build
