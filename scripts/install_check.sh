#!/usr/bin/env bash
# Install the package alone (no extras) into a fresh venv of INTERPRETER and
# check what a user gets: it imports, and grpcio is nowhere in the environment.
#
#   bash scripts/install_check.sh python3
#   bash scripts/install_check.sh pypy3
set -euo pipefail
cd "$(dirname "$0")/.."
interp=${1:?usage: install_check.sh INTERPRETER}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$interp" -m venv "$dir/venv"
"$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: .
"$dir/venv/bin/python" - <<'PY'
import importlib.metadata as md
import sys

import pyliftbridge

names = sorted(d.metadata["Name"].lower() for d in md.distributions())
assert not [n for n in names if n.startswith("grpc")], names
runtime = sorted(set(names) - {"pip", "setuptools", "wheel"})
print(f"{sys.implementation.name} {sys.version.split()[0]}: pyliftbridge {pyliftbridge.__version__}")
print("installed:", ", ".join(runtime))
PY
