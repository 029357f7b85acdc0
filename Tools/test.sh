#!/usr/bin/env bash
# The whole test suite, from a fresh clone: system packages, debug build, every test (with a
# throwaway PostgreSQL server for the queue's).
#   Tools/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
Tools/setup.sh
swift build --build-tests
# The PostgreSQL queue's tests need a server: one is started for the run (loopback, a temporary
# directory, its own user) and stopped after.
Tools/with-postgres.sh swift test --skip-build
