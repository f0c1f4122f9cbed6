"""Broker addresses: ``host:port`` strings, IPv6 in brackets."""

from __future__ import annotations

from .errors import InvalidArgumentError

__all__ = ["format_address", "parse_address"]


def parse_address(address: str, default_port: int = 9292) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port``, or a bare host) into host and port.

    Raises:
        InvalidArgumentError: the address is malformed.
    """
    if not isinstance(address, str) or not address.strip():
        raise InvalidArgumentError(
            f"broker address must be a non-empty 'host:port', not {address!r}"
        )
    text = address.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise InvalidArgumentError(f"malformed IPv6 broker address {address!r}")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text:
        # A bare IPv6 address without a port.
        host, port_text = text, ""
    else:
        host, port_text = text, ""
    if not host:
        raise InvalidArgumentError(f"broker address {address!r} has no host")
    if not port_text:
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise InvalidArgumentError(f"broker address {address!r} has a bad port") from None
    if not 0 < port < 65536:
        raise InvalidArgumentError(f"broker address {address!r} has a port out of range")
    return host, port


def format_address(host: str, port: int) -> str:
    """Join host and port, bracketing IPv6 hosts."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"
