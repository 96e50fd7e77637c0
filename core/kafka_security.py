"""Kafka TLS and SASL from settings, in the two shapes the product's clients take.

Every Kafka client llmpulse makes (the worker's Faust app, its topic admin, the
``llmpulse publish`` producer) gets its security from here, so they cannot disagree:
:func:`aiokafka_security` for aiokafka clients, :func:`faust_credentials` for Faust.
The settings were already checked by ``load_settings``; what can still fail here is
reading the certificate files, and that error names the setting, never a secret.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from core.errors import LlmpulseError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from core.settings import Settings

__all__ = ["KafkaSecurityError", "aiokafka_security", "faust_credentials", "ssl_context"]


class KafkaSecurityError(LlmpulseError, ValueError):
    """A certificate or key file cannot be used; the message names the setting."""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (server certificate and hostname checked)."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    cafile = settings.kafka_ssl_cafile
    try:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise KafkaSecurityError(
            f"LLMPULSE_KAFKA_SSL_CAFILE={str(cafile)!r}: not a usable PEM CA file ({exc})"
        ) from None
    if settings.kafka_ssl_certfile:
        keyfile = settings.kafka_ssl_keyfile
        try:
            context.load_cert_chain(
                str(settings.kafka_ssl_certfile), str(keyfile) if keyfile else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise KafkaSecurityError(
                f"LLMPULSE_KAFKA_SSL_CERTFILE={str(settings.kafka_ssl_certfile)!r} / "
                f"LLMPULSE_KAFKA_SSL_KEYFILE={str(keyfile)!r}: not a usable certificate "
                f"and key ({exc})"
            ) from None
    return context


def aiokafka_security(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
    kwargs: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL_"):
        kwargs |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password,
        }
    return kwargs


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """``broker_credentials`` for ``faust.App``; None for PLAINTEXT."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        ssl_context=context,  # SASL_SSL with a context, SASL_PLAINTEXT without
        mechanism=settings.kafka_sasl_mechanism,
    )
