"""The encryption option reaches the server: without a server key it is refused."""

from __future__ import annotations

import pytest

from pyliftbridge import Client, EncryptionError
from pyliftbridge.testing import LiftbridgeServer

pytestmark = pytest.mark.integration


def test_encryption_needs_a_server_key() -> None:
    with LiftbridgeServer(encryption_key=None) as server, Client(server.address) as client:
        with pytest.raises(EncryptionError):
            client.create_stream("plain.subj", "wants-encryption", encryption=True)
        client.create_stream("plain.subj", "plain-stream")
        assert client.publish("plain-stream", b"x") is not None
