#!/usr/bin/env bash
# Installs and starts what the tests need beyond Python packages. Each part is added by the
# issue that needs it and must be idempotent and quiet when already done.
set -euo pipefail
cd "$(dirname "$0")"
for part in ./setup.d/*.sh; do
    [ -e "$part" ] || continue
    bash "$part"
done
