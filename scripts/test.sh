#!/usr/bin/env bash
# The one command that runs every check, on a fresh machine too:
#
#   bash scripts/test.sh
#
# Set-up (idempotent, skipped when already done):
#   * PyPy 3 and its venv module from apt when `pypy3` is missing (needs root);
#   * .venv      (CPython, $PYTHON or python3) with `pip install -e '.[dev,cli,nats,docs,otel]'`;
#   * .venv-pypy (PyPy)                        with `pip install -e '.[test,cli,nats,otel]'`
#     (the cli extra leaves matplotlib to CPython, so `bench --plot` is tested there);
#   * the Liftbridge and NATS servers, found or built from their pinned Go module
#     versions by `python -m pyliftbridge.testing install` (needs Go the first time).
# Checks, each run even when an earlier one failed, so the report is complete:
#   a plain `pip install .` into fresh CPython and PyPy venvs (imports, no grpcio),
#   ruff check, ruff format --check, mypy, the docs site's strict build, pytest on
#   CPython (all tests), pytest on PyPy (all tests; the grpcio interop tests skip
#   themselves there), and pytest on CPython 3.9 and 3.13 from pyenv (unit, core and
#   single-node integration tests; skipped, and said so, when pyenv lacks them).
# Exits non-zero if any step failed; a summary of every step is printed at the end.
#
# Environment: PYTHON (CPython interpreter, default python3), PYPY (default pypy3),
# PYTEST_ARGS (extra pytest arguments for every run), SKIP_PYPY=1 (skip the PyPy run),
# SKIP_OTHER_PYTHONS=1 (skip the CPython 3.9 and 3.13 runs),
# SETUP_ONLY=1 (set up the venvs and servers, run no check).
set -euo pipefail
cd "$(dirname "$0")/.."

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1
python=${PYTHON:-python3}
pypy=${PYPY:-pypy3}
read -r -a pytest_extra <<<"${PYTEST_ARGS:-}"

summary=()
failed=0
started_all=$SECONDS

print_summary() {
    local rc=$?
    echo
    echo "================================ summary ================================"
    local line
    for line in "${summary[@]}"; do
        echo "  $line"
    done
    if [ "$failed" -eq 0 ] && [ "$rc" -eq 0 ]; then
        echo "  all steps passed in $((SECONDS - started_all))s"
    else
        echo "  FAILED (total $((SECONDS - started_all))s)"
    fi
    echo "========================================================================="
}
trap print_summary EXIT

# step NAME COMMAND...: run, time and record one step; returns its exit status.
step() {
    local name=$1
    shift
    local start=$SECONDS rc=0
    echo
    echo "==> $name"
    "$@" || rc=$?
    local took=$((SECONDS - start))
    if [ "$rc" -eq 0 ]; then
        summary+=("$(printf 'ok      %5ss  %s' "$took" "$name")")
    else
        summary+=("$(printf 'FAILED  %5ss  %s (exit %s)' "$took" "$name" "$rc")")
        failed=1
    fi
    return "$rc"
}

# A set-up step that fails makes everything after it meaningless.
setup() {
    step "$@" || exit 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        echo "need root to run: $*" >&2
        return 1
    fi
}

apt_updated=0
apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "apt-get not found; install these yourself: $*" >&2
        return 1
    fi
    if [ "$apt_updated" -eq 0 ]; then
        as_root apt-get update -q
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "$@"
}

ensure_pypy() {
    if command -v "$pypy" >/dev/null && "$pypy" -c 'import ensurepip, venv' 2>/dev/null; then
        echo "$("$pypy" --version 2>&1 | tr '\n' ' ')"
        return 0
    fi
    apt_install pypy3 pypy3-venv
    "$pypy" --version
}

# make_venv INTERPRETER DIR EXTRA [apt package providing venv]: create DIR and install
# the project with EXTRA, unless a stamp says that exact install is already there.
make_venv() {
    local interp=$1 dir=$2 extra=$3 venv_pkg=${4:-}
    local stamp="$dir/.pyliftbridge-install"
    local want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extra $("$interp" -c 'import sys; print(sys.version.split()[0], sys.implementation.name)')"
    if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
        "$dir/bin/python" -c 'import pyliftbridge, pytest' 2>/dev/null; then
        echo "$dir is up to date"
        return 0
    fi
    if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$dir"
        if ! "$interp" -m venv "$dir"; then
            [ -n "$venv_pkg" ] || return 1
            rm -rf "$dir"
            apt_install "$venv_pkg"
            "$interp" -m venv "$dir"
        fi
    fi
    # --prefer-binary: for PyPy 3.9 the newest releases of some packages ship no
    # wheels (cryptography, for one, would need a Rust toolchain); older ones do.
    "$dir/bin/python" -m pip install --quiet --prefer-binary -e ".[$extra]"
    if [ "$("$dir/bin/python" -c 'import sys; print(sys.implementation.name)')" = pypy ]; then
        # The test extra leaves trustme (TLS certificates for the transport
        # tests) to CPython: its cryptography dependency has PyPy 3.9 wheels
        # only in older releases, which --prefer-binary finds.
        "$dir/bin/python" -m pip install --quiet --prefer-binary trustme
    else
        # atheris (the fuzz extra) where a wheel exists; its test skips elsewhere.
        "$dir/bin/python" -m pip install --quiet --only-binary=:all: "atheris>=2.3" ||
            echo "atheris does not install here: the atheris fuzz test will skip"
    fi
    echo "$want" >"$stamp"
}

install_servers() {
    local out
    out=$(.venv/bin/python -m pyliftbridge.testing install)
    echo "$out"
    # Both pytest runs use exactly these binaries.
    LIFTBRIDGE_BIN=$(sed -n 's/^LIFTBRIDGE_BIN=//p' <<<"$out")
    NATS_SERVER_BIN=$(sed -n 's/^NATS_SERVER_BIN=//p' <<<"$out")
    [ -n "$LIFTBRIDGE_BIN" ] && [ -n "$NATS_SERVER_BIN" ] || return 1
    export LIFTBRIDGE_BIN NATS_SERVER_BIN
}

# run_pytest VENV ARGS...: pytest with "no tests collected" (exit 5) counted as failure.
run_pytest() {
    local venv=$1
    shift
    local rc=0
    "$venv/bin/python" -m pytest -p no:cacheprovider --durations=10 "$@" ${pytest_extra[@]+"${pytest_extra[@]}"} || rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "pytest collected no tests: that is a failure here" >&2
    fi
    return "$rc"
}

# -- set-up ---------------------------------------------------------------------
if [ "${SKIP_PYPY:-0}" != 1 ]; then
    setup "set-up: PyPy" ensure_pypy
fi
setup "set-up: CPython venv (.venv, .[dev,cli,nats,docs,otel])" make_venv "$python" .venv dev,cli,nats,docs,otel python3-venv
setup "set-up: Liftbridge and NATS servers" install_servers
if [ "${SKIP_PYPY:-0}" != 1 ]; then
    setup "set-up: PyPy venv (.venv-pypy, .[test,cli,nats,otel])" make_venv "$pypy" .venv-pypy test,cli,nats,otel pypy3-venv
fi

if [ "${SETUP_ONLY:-0}" = 1 ]; then
    exit 0
fi

# -- checks ---------------------------------------------------------------------
step "install check: pip install . on CPython, no grpcio" bash scripts/install_check.sh "$python" || true
if [ "${SKIP_PYPY:-0}" != 1 ]; then
    step "install check: pip install . on PyPy, no grpcio" bash scripts/install_check.sh "$pypy" || true
fi
step "ruff check" .venv/bin/ruff check . || true
step "ruff format --check" .venv/bin/ruff format --check . || true
step "mypy (strict)" .venv/bin/mypy || true
step "docs: mkdocs build --strict" env NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet \
    --site-dir "$(mktemp -d)" || true
# The side-by-side benchmark runs (tiny sizes; figures are not checked, only
# that every contender runs and reports; the size sweep and partition rows
# reuse the same code): the Go client built from its pinned
# module, pyliftbridge's rows through `pyliftbridge bench`, bare grpcio.
compare_args=(--quick --only publish sync consume --python .venv/bin/python --json "$(mktemp)")
if [ "${SKIP_PYPY:-0}" != 1 ]; then
    compare_args+=(--pypy .venv-pypy/bin/python)
else
    compare_args+=(--no-pypy)
fi
step "benchmark: compare.py --quick (every contender runs)" \
    .venv/bin/python benchmarks/compare.py "${compare_args[@]}" || true
step "pytest on CPython (all tests)" run_pytest .venv || true
if [ "${SKIP_PYPY:-0}" != 1 ]; then
    step "pytest on PyPy (all tests)" run_pytest .venv-pypy || true
fi

# -- the oldest and newest CPython we claim, from pyenv when it has them ----------
# Unit, core and single-node integration tests: the interpreter-sensitive parts
# (the cluster and interop tests run on the interpreters above). The two runs
# go in parallel: they mostly wait on servers and timers, not on the CPU.

# pyenv_python VERSION: the newest pyenv interpreter for VERSION (e.g. 3.9), if any.
pyenv_python() {
    local found
    found=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$1".*/bin/python"$1" 2>/dev/null |
        sort -V | tail -n 1)
    [ -n "$found" ] && [ -x "$found" ] && echo "$found"
}

# wait_for_run PID LOG: the exit status of background run PID, after printing its LOG.
wait_for_run() {
    local rc=0
    wait "$1" || rc=$?
    cat "$2"
    return "$rc"
}

if [ "${SKIP_OTHER_PYTHONS:-0}" != 1 ]; then
    runs=()
    for version in 3.9 3.13; do
        interp=$(pyenv_python "$version") || true
        venv=.venv-py${version/./}
        if [ -z "$interp" ]; then
            echo "CPython $version is not installed under pyenv: its test run is skipped"
            summary+=("$(printf 'SKIPPED %5s   %s' - "pytest on CPython $version: not under pyenv")")
            continue
        fi
        if step "set-up: CPython $version venv ($venv, .[test,nats])" \
            make_venv "$interp" "$venv" test,nats; then
            log=$(mktemp)
            run_pytest "$venv" -m "not cluster" tests/unit tests/core tests/integration \
                >"$log" 2>&1 &
            runs+=("$version $! $log")
        fi
    done
    for run in ${runs[@]+"${runs[@]}"}; do
        read -r version pid log <<<"$run"
        step "pytest on CPython $version (unit, core, single-node integration; in parallel)" \
            wait_for_run "$pid" "$log" || true
    done
fi

exit "$failed"
