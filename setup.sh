#!/usr/bin/env bash
# One-step set-up on a fresh machine: system packages (the Fashion-MNIST data set, PostgreSQL for the
# distributed-search tests), then a virtual environment in .venv with the project installed.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(dataset-fashion-mnist postgresql)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]} from Debian's packages"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi
# torch first and pinned: the CPU wheel on these machines; an unpinned torch would pull GBs of CUDA packages.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[test]"
echo "setup: done (.venv/bin/nas is ready)"
