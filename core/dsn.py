"""ClickHouse connection options that settings carry and storage uses.

Kept below both: the settings describe a server (user, password, TLS checks) without
opening it, and ``storage.engine.connect`` turns them into client arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

__all__ = ["ServerAuth", "redact_dsn"]


@dataclass(frozen=True)
class ServerAuth:
    """User, password and TLS checks for a ClickHouse server; the embedded engine has none.

    Empty ``username``/``password`` leave the DSN's own (``https://user:pass@host``) in
    force; set, they win over it. ``verify=False`` turns certificate checks off (a test
    server with a self-signed certificate; never in production).
    """

    username: str = ""
    password: str = field(default="", repr=False)
    ca_cert: str | None = None  # a PEM file; None: the CAs of the certifi package
    verify: bool = True

    def client_kwargs(self, dsn: str) -> dict[str, Any]:
        """Keyword arguments for ``clickhouse_connect.get_client`` beside ``dsn``."""
        if dsn.startswith("chdb:"):
            return {}  # chdb would log every HTTP-only argument as ignored
        # The scheme decides TLS: clickhouse_connect itself infers it from the port
        # (443/8443) only, so https://host:9440 would otherwise go out as plain HTTP.
        interface = "https" if dsn.startswith("https:") else "http"
        kwargs: dict[str, Any] = {"interface": interface, "verify": self.verify}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        if self.ca_cert:
            kwargs["ca_cert"] = self.ca_cert
        return kwargs

    def secrets(self, dsn: str) -> list[str]:
        """The passwords this DSN and these settings carry, to keep out of messages."""
        parsed = urlparse(dsn)
        found = [self.password, parsed.password or "", unquote(parsed.password or "")]
        return [s for s in found if s]


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***``, fit for logs and banners."""
    parsed = urlparse(dsn)
    if parsed.password:
        return dsn.replace(f":{parsed.password}@", ":***@")
    return dsn
