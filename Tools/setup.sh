#!/usr/bin/env bash
# Installs the Debian packages the build needs, when they are missing. Safe to run again.
#   Tools/setup.sh
# Swift itself (6.0 or later) must already be installed.
set -euo pipefail
# postgresql: the server the queue's tests start (Tools/with-postgres.sh; no cluster of its own);
# chromium: the page at / tested headless (ServiceTests.PageTests).
packages=(libopenblas-dev libpng-dev zlib1g-dev libprotobuf-c-dev libjpeg62-turbo-dev libwebp-dev postgresql chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# Debian's postgresql would create and start a cluster of its own; the tests start theirs.
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
  $sudo mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.d/diffbir.conf >/dev/null
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
