#!/usr/bin/env bash
# Headless Chromium for the report test (renders the HTML report and checks the screenshot).
# Installs Debian's `chromium` when running as root and it is missing; never fails the build:
# without apt (or without root) the report test skips and says why.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: chromium not installed (needs root and apt-get); the report rendering test will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >/tmp/pacer-chromium-setup.log 2>&1; then
    echo "setup: could not install chromium (see /tmp/pacer-chromium-setup.log); the report rendering test will skip" >&2
fi
exit 0
