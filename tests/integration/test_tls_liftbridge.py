"""TLS and mutual TLS against a real Liftbridge server, through both clients."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pyliftbridge import AsyncClient, Client, TLSConfig, UnavailableError
from pyliftbridge.testing import LiftbridgeServer

trustme = pytest.importorskip("trustme", reason="trustme (test extra) makes the certificates")

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("pyliftbridge-test-client")
    out = tmp_path_factory.mktemp("certs")
    paths = {
        "ca": out / "ca.pem",
        "server_cert": out / "server.pem",
        "server_key": out / "server.key",
        "client_cert": out / "client.pem",
        "client_key": out / "client.key",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_pem.write_to_path(str(paths["server_key"]))
    with open(paths["server_cert"], "wb") as fh:
        for blob in server.cert_chain_pems:
            fh.write(blob.bytes())
    client.private_key_pem.write_to_path(str(paths["client_key"]))
    with open(paths["client_cert"], "wb") as fh:
        for blob in client.cert_chain_pems:
            fh.write(blob.bytes())
    return paths


def _client_tls(certs: dict[str, Path], *, with_cert: bool) -> TLSConfig:
    if with_cert:
        return TLSConfig(
            ca_file=str(certs["ca"]),
            cert_file=str(certs["client_cert"]),
            key_file=str(certs["client_key"]),
        )
    return TLSConfig(ca_file=str(certs["ca"]))


def test_tls_round_trip_both_clients(certs: dict[str, Path]) -> None:
    config = {"tls.cert": str(certs["server_cert"]), "tls.key": str(certs["server_key"])}
    tls = _client_tls(certs, with_cert=False)
    with LiftbridgeServer(config=config, client_tls=tls) as server:
        with Client(server.address, tls=tls) as client:
            client.create_stream("tls.subj", "tls-stream")
            assert client.publish("tls-stream", b"over tls").offset == 0
            with client.subscribe("tls-stream", start_at="earliest") as sub:
                assert sub.__next__().value == b"over tls"

        async def scenario() -> None:
            async with AsyncClient(server.address, tls=tls) as client:
                ack = await client.publish("tls-stream", b"async over tls")
                assert ack is not None and ack.offset == 1

        asyncio.run(scenario())
        # The server's certificate is checked: an untrusted CA is refused.
        other_ca = trustme.CA()
        untrusted = TLSConfig(ca_data=other_ca.cert_pem.bytes())
        with Client(server.address, tls=untrusted, timeout=3) as client:
            with pytest.raises(UnavailableError):
                client.fetch_metadata()
        # And plaintext gets nowhere.
        with Client(server.address, timeout=3) as client:
            with pytest.raises(UnavailableError):
                client.fetch_metadata()


def test_mutual_tls(certs: dict[str, Path]) -> None:
    config = {
        "tls.cert": str(certs["server_cert"]),
        "tls.key": str(certs["server_key"]),
        "tls.client.auth.enabled": True,
        "tls.client.auth.ca": str(certs["ca"]),
    }
    mtls = _client_tls(certs, with_cert=True)
    with LiftbridgeServer(config=config, client_tls=mtls) as server:
        with Client(server.address, tls=mtls) as client:
            client.create_stream("mtls.subj", "mtls-stream")
            assert client.publish("mtls-stream", b"mutual").offset == 0
        with Client(server.address, tls=_client_tls(certs, with_cert=False), timeout=3) as client:
            with pytest.raises(UnavailableError):
                client.fetch_metadata()
