#!/usr/bin/env bash
# The main job: on a fresh machine, set everything up and run the demo.
#
#   bash scripts/demo.sh                       # starts a local Liftbridge itself
#   bash scripts/demo.sh --brokers host:9292   # or uses yours
#
# Creates .venv (CPython >= 3.9), installs pyliftbridge[cli] into it, obtains the
# Liftbridge server (built from its pinned Go module version when it is not
# on PATH; needs Go >= 1.21) unless --brokers is given, then creates a stream,
# publishes, reads everything back and reports publish throughput.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# The cli extra: the benchmark's latency histogram and progress line, tables, plots.
.venv/bin/python -m pip install --quiet --prefer-binary -e '.[cli]'

case " $* " in
    *" --brokers "*|*" --brokers="*) ;;
    *) .venv/bin/python -m pyliftbridge.testing install >/dev/null ;;
esac

exec .venv/bin/pyliftbridge demo "$@"
