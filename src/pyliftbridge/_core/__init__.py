"""The sans-IO core: gRPC over HTTP/2 as bytes in, events out, bytes to send.

Nothing in this package performs I/O or reads a clock. It imports no socket,
ssl, asyncio, threading, selectors or time module (``tests/test_layering.py``
enforces this), so the blocking and the asyncio front ends drive the very same
protocol code. Where time matters (keepalive), the caller passes "now" in.
"""
