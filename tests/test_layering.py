"""The package's layering rules, checked on the source with ``ast``.

* The sans-IO core (``pyliftbridge._core``) performs no I/O and reads no
  clock: none of its modules, nor the few modules of the package it may use
  (``errors``, ``_status``, ``_version``), imports socket, ssl, asyncio,
  threading, selectors or time, and the core imports nothing else from the
  package.
* The package is vendorable: no module imports ``pyliftbridge`` by its
  absolute name; everything inside it is a relative import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "pyliftbridge"
CORE = PACKAGE / "_core"
BANNED = frozenset({"socket", "ssl", "asyncio", "threading", "selectors", "time"})
# Modules outside _core that the core may import (relative to the package).
CORE_MAY_USE = frozenset({"errors", "_status", "_version"})


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path, package: Path = PACKAGE) -> list[str]:
    """Dotted parts of a module path, relative to the package (``__init__`` dropped)."""
    parts = list(path.relative_to(package).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return parts


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, absolute-or-relative module, level) for every import in a file.

    ``import a.b`` gives ("a.b", 0); ``from ..x import y`` gives ("x", 2) and
    also ("x.y", 2), since ``y`` may be a submodule.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            out.append((node.lineno, base, node.level))
            for alias in node.names:
                out.append((node.lineno, f"{base}.{alias.name}".lstrip("."), node.level))
    return out


def _resolve(
    path: Path, module: str, level: int, package: Path = PACKAGE
) -> tuple[str, ...] | None:
    """Package-relative parts of an import inside pyliftbridge, or None if external."""
    if level == 0:
        parts = module.split(".")
        return tuple(parts[1:]) if parts[0] == "pyliftbridge" else None
    here = _module_name(path, package)
    is_package = path.name == "__init__.py"
    base = here if is_package else here[:-1]
    if level - 1 > len(base):
        raise AssertionError(f"{path}: relative import beyond the package")
    base = base[: len(base) - (level - 1)]
    return tuple(base) + tuple(p for p in module.split(".") if p)


def _banned(path: Path, package: Path = PACKAGE) -> list[str]:
    found = {
        (line, module.split(".")[0])
        for line, module, level in _imports(path)
        if level == 0 and module.split(".")[0] in BANNED
    }
    return [
        f"{path.relative_to(package.parent)}:{line}: imports {top}" for line, top in sorted(found)
    ]


CORE_FILES = _modules(CORE)


def test_core_modules_found():
    names = {p.name for p in CORE_FILES}
    assert {"connection.py", "framing.py", "metadata.py", "events.py"} <= names


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_imports_no_io_or_clock_module(path):
    assert _banned(path) == []


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_imports_only_core_errors_status_version(path):
    bad = []
    for line, module, level in _imports(path):
        target = _resolve(path, module, level)
        if target is None or not target:
            continue
        if target[0] == "_core" or target[0] in CORE_MAY_USE:
            continue
        bad.append(f"{path.name}:{line}: imports pyliftbridge.{'.'.join(target)}")
    assert bad == []


@pytest.mark.parametrize("name", sorted(CORE_MAY_USE))
def test_modules_the_core_uses_import_nothing_banned_transitively(name):
    """errors/_status/_version: no banned module, and no package module beyond these."""
    path = PACKAGE / f"{name}.py"
    assert path.exists()
    assert _banned(path) == []
    for line, module, level in _imports(path):
        target = _resolve(path, module, level)
        if target:
            assert target[0] in CORE_MAY_USE, f"{name}.py:{line} imports {'.'.join(target)}"


ALL_FILES = _modules(PACKAGE)  # generated protobuf modules included


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: "/".join(_module_name(p)) or "__init__")
def test_no_absolute_self_imports(path):
    bad = [
        f"{line}: {module}"
        for line, module, level in _imports(path)
        if level == 0 and module.split(".")[0] == "pyliftbridge"
    ]
    assert bad == [], f"{path}: use relative imports (the package is vendorable)"


# ------------------------------------------------------ the checker's own tests


def test_checker_catches_violations(tmp_path):
    pkg = tmp_path / "pyliftbridge"
    core = pkg / "_core"
    core.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (core / "__init__.py").write_text("")
    bad = core / "bad.py"
    bad.write_text(
        "import time\n"
        "from threading import Lock\n"
        "import pyliftbridge.errors\n"
        "from .. import _sync\n"
        "from .._options import X\n"
        "from ..errors import ProtocolError\n"
        "from . import events\n"
    )
    assert len(_banned(bad, pkg)) == 2
    targets = {_resolve(bad, m, lvl, pkg) for _, m, lvl in _imports(bad)}
    assert ("_sync",) in targets
    assert ("_options", "X") in targets
    assert ("errors", "ProtocolError") in targets
    assert ("_core", "events") in targets
    assert ("errors",) in targets  # the absolute import, resolved


def _closure(start: str) -> dict[str, Path]:
    """Every package module ``start`` imports, directly or through others."""
    seen: dict[str, Path] = {}
    todo = [start]
    while todo:
        name = todo.pop()
        path = PACKAGE / f"{name.replace('.', '/')}.py"
        if not path.exists():
            path = PACKAGE / name.replace(".", "/") / "__init__.py"
        if name in seen or not path.exists():
            continue
        seen[name] = path
        for _line, module, level in _imports(path):
            target = _resolve(path, module, level)
            if target:
                todo.append(".".join(target))
    return seen


def test_envelope_is_sans_io_transitively():
    """pyliftbridge.envelope is pure functions over bytes, like the core."""
    modules = _closure("envelope")
    assert {"envelope", "_requests", "models", "errors"} <= set(modules)
    assert not any(name.startswith(("_sync", "_async")) for name in modules), sorted(modules)
    bad = [line for path in modules.values() for line in _banned(path)]
    assert bad == []
