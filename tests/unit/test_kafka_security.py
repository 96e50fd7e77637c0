"""Kafka TLS/SASL settings become the same security in every client the product makes."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from core.kafka_security import (
    KafkaSecurityError,
    aiokafka_security,
    faust_credentials,
    ssl_context,
)
from core.settings import Settings, load_settings
from tests.fixtures.tls import Certs, make_ca

PASSWORD = "kafka-pw-4f1c"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_ca(tmp_path_factory.mktemp("tls"))


def settings(protocol: str, certs: Certs | None = None, **env: str) -> Settings:
    base = {"LLMPULSE_KAFKA_SECURITY_PROTOCOL": protocol}
    if protocol.startswith("SASL_"):
        base |= {"LLMPULSE_KAFKA_SASL_USERNAME": "llmpulse",
                 "LLMPULSE_KAFKA_SASL_PASSWORD": PASSWORD}  # fmt: skip
    if certs is not None:
        base["LLMPULSE_KAFKA_SSL_CAFILE"] = str(certs.ca)
    return load_settings(base | env)


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    s = load_settings({})
    assert aiokafka_security(s) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(s) is None and ssl_context(s) is None


def test_ssl_checks_the_server_against_the_given_ca(certs: Certs) -> None:
    kwargs = aiokafka_security(settings("SSL", certs))
    context = kwargs.pop("ssl_context")
    assert kwargs == {"security_protocol": "SSL"}
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "llmpulse test CA"),),)
    ]


def test_ssl_without_a_cafile_trusts_the_system_cas() -> None:
    context = ssl_context(settings("SSL"))
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED


def test_sasl_ssl_carries_mechanism_credentials_and_tls(certs: Certs) -> None:
    s = settings("SASL_SSL", certs, LLMPULSE_KAFKA_SASL_MECHANISM="SCRAM-SHA-256")
    kwargs = aiokafka_security(s)
    assert isinstance(kwargs.pop("ssl_context"), ssl.SSLContext)
    assert kwargs == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "llmpulse", "sasl_plain_password": PASSWORD,
    }  # fmt: skip


def test_sasl_plaintext_has_no_tls_context() -> None:
    kwargs = aiokafka_security(settings("SASL_PLAINTEXT"))
    assert "ssl_context" not in kwargs and kwargs["sasl_mechanism"] == "PLAIN"


@pytest.mark.parametrize("protocol", ["SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_faust_gets_the_same_security_as_aiokafka(protocol: str, certs: Certs) -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    s = settings(protocol, certs if protocol.endswith("SSL") else None)
    credentials = faust_credentials(s)
    assert isinstance(credentials, faust.SSLCredentials | faust.SASLCredentials)
    via_faust = dict(credentials_to_aiokafka_auth(credentials))
    context = via_faust.pop("ssl_context")
    assert (context is not None) == protocol.endswith("SSL")
    assert via_faust == {k: v for k, v in aiokafka_security(s).items() if k != "ssl_context"}
    assert PASSWORD not in repr(credentials)


def test_a_client_certificate_is_loaded_for_mutual_tls(certs: Certs) -> None:
    s = settings("SSL", certs, LLMPULSE_KAFKA_SSL_CERTFILE=str(certs.cert),
                 LLMPULSE_KAFKA_SSL_KEYFILE=str(certs.key))  # fmt: skip
    assert ssl_context(s) is not None


def test_a_file_that_is_not_pem_is_named_in_the_error(tmp_path: Path, certs: Certs) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("this is not a certificate")
    with pytest.raises(KafkaSecurityError, match="LLMPULSE_KAFKA_SSL_CAFILE="):
        ssl_context(settings("SSL", LLMPULSE_KAFKA_SSL_CAFILE=str(junk)))
    s = settings("SSL", certs, LLMPULSE_KAFKA_SSL_CERTFILE=str(junk))
    with pytest.raises(KafkaSecurityError, match="LLMPULSE_KAFKA_SSL_CERTFILE="):
        ssl_context(s)


def test_aiokafka_clients_accept_the_arguments(certs: Certs) -> None:
    # aiokafka checks these in its constructors: an unknown keyword, protocol or
    # mechanism, or SSL without a context, raises here.
    async def build() -> None:
        kwargs = aiokafka_security(settings("SASL_SSL", certs))
        bootstrap = "127.0.0.1:1"
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **kwargs)
        consumer = AIOKafkaConsumer("t", bootstrap_servers=bootstrap, **kwargs)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kwargs)
        assert producer.client._sasl_plain_password == PASSWORD
        await consumer.stop()
        await producer.stop()
        await admin.close()

    asyncio.run(build())
