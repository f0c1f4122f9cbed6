"""``import pyliftbridge`` stays light: each part loads when it is first used."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split())


def test_import_pyliftbridge_loads_neither_asyncio_nor_ssl_nor_a_client() -> None:
    loaded = _modules_after("import pyliftbridge")
    assert "asyncio" not in loaded
    assert "ssl" not in loaded
    assert "pyliftbridge._sync.client" not in loaded
    assert "pyliftbridge._async.client" not in loaded


def test_the_blocking_client_loads_no_asyncio_and_no_consumer_groups() -> None:
    loaded = _modules_after("import pyliftbridge\npyliftbridge.Client")
    assert "pyliftbridge._sync.client" in loaded
    assert "asyncio" not in loaded
    assert "ssl" not in loaded
    assert "pyliftbridge._sync._consumer" not in loaded


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("AsyncClient", "pyliftbridge._async.client"),
        ("Consumer", "pyliftbridge._sync._consumer"),
        ("AsyncConsumer", "pyliftbridge._async._consumer"),
        ("MergedSubscription", "pyliftbridge._sync._subscription"),
    ],
)
def test_lazy_names_load_their_module(name: str, module: str) -> None:
    loaded = _modules_after(f"import pyliftbridge\npyliftbridge.{name}")
    assert module in loaded


def test_unknown_names_still_raise_attribute_error() -> None:
    import pyliftbridge

    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        pyliftbridge.NoSuchThing  # noqa: B018
    assert "Client" in dir(pyliftbridge)


def test_tls_loads_ssl_when_used() -> None:
    loaded = _modules_after(
        "import pyliftbridge\npyliftbridge.TLSConfig(verify=False).build_context()"
    )
    assert "ssl" in loaded


def test_clients_and_stats_load_no_opentelemetry() -> None:
    # Telemetry is opt-in: only ``import pyliftbridge.telemetry`` loads it.
    loaded = _modules_after(
        "import pyliftbridge\n"
        "pyliftbridge.Client('localhost:1').stats()\n"
        "pyliftbridge.AsyncClient, pyliftbridge.ClientStats"
    )
    assert "pyliftbridge._stats" in loaded
    assert "pyliftbridge.telemetry" not in loaded
    assert not {m for m in loaded if m.split(".")[0] == "opentelemetry"}
