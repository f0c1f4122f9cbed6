"""Broker addresses: what ``parse_address`` accepts and what it refuses (before connecting)."""

from __future__ import annotations

import pytest

from pyliftbridge import AsyncClient, Client, InvalidArgumentError
from pyliftbridge._address import format_address, parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host:1234", ("host", 1234)),
        ("host", ("host", 9292)),
        (" host:1 ", ("host", 1)),
        ("[::1]:9293", ("::1", 9293)),
        ("[::1]", ("::1", 9292)),
        ("::1", ("::1", 9292)),
    ],
)
def test_accepted(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "host:",
        "[::1]:",
        ":9292",
        "",
        "  ",
        "host:0",
        "host:65536",
        "host:+1",
        "host:1 2",
        "host:x",
        "host:١٢",
        "[::1",
        "[::1]x",
        None,
        9292,
    ],
)
def test_refused(text: object) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_address(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("client", [Client, AsyncClient])
def test_clients_refuse_an_empty_port(client: type) -> None:
    with pytest.raises(InvalidArgumentError, match="empty port"):
        client("host:")
    with pytest.raises(InvalidArgumentError, match="empty port"):
        client(["good:1", "bad:"])


def test_format_round_trips() -> None:
    for host, port in [("h", 1), ("::1", 2), ("10.0.0.1", 65535)]:
        assert parse_address(format_address(host, port)) == (host, port)
