"""Broker addresses: ``host:port`` strings, IPv6 in brackets."""

from __future__ import annotations

from .errors import InvalidArgumentError

__all__ = ["format_address", "parse_address"]


def parse_address(address: str, default_port: int = 9292) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port``, or a bare host) into host and port.

    A bare host (no colon) gets ``default_port``; ``host:`` (a colon and no
    port) is refused.

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
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        # A bare host name, or a bare IPv6 address: no port given.
        host, port_text = text, None
    if not host:
        raise InvalidArgumentError(f"broker address {address!r} has no host")
    if port_text is None:
        return host, default_port
    if not port_text:
        # "host:" is a typo more often than a wish for the default port.
        raise InvalidArgumentError(f"broker address {address!r} has an empty port")
    if not (port_text.isascii() and port_text.isdigit()):
        raise InvalidArgumentError(f"broker address {address!r} has a bad port")
    port = int(port_text)
    if not 0 < port < 65536:
        raise InvalidArgumentError(f"broker address {address!r} has a port out of range")
    return host, port


def format_address(host: str, port: int) -> str:
    """Join host and port, bracketing IPv6 hosts."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"
