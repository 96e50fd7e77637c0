"""ClickHouse server credentials and TLS reach the wire, and never an error message.

A small HTTP(S) server on 127.0.0.1 plays a ClickHouse server that refuses the login,
recording what the client sent, so the test sees the headers and the TLS handshake
that ``clickhouse_connect`` really produces from our settings.
"""

from __future__ import annotations

import base64
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from urllib3.exceptions import InsecureRequestWarning

from core.dsn import ServerAuth
from core.settings import load_settings
from llmpulse.broker import free_port
from storage.engine import StorageError, connect
from tests.fixtures.tls import Certs, make_ca

PASSWORD = "ch-pw-9d2e7"
DSN_PASSWORD = "dsn-pw-51aa0"


@dataclass
class RefusingServer:
    """Answers every request as ClickHouse does a failed login, echoing the login back."""

    certs: Certs | None = None
    port: int = field(default_factory=free_port)
    authorizations: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{'https' if self.certs else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> RefusingServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                auth = self.headers.get("Authorization", "")
                owner.authorizations.append(auth)
                login = base64.b64decode(auth.removeprefix("Basic ")).decode() if auth else ""
                # A careless proxy or server may echo the login; the error must still not.
                body = f"Code: 516. DB::Exception: {login}: Authentication failed".encode()
                self.send_response(516)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-ClickHouse-Exception-Code", "516")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _refuse

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if self.certs:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certs.cert, self.certs.key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server() -> Iterator[RefusingServer]:
    with RefusingServer() as s:
        yield s


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_server_dsn_gets_user_password_and_tls_options() -> None:
    auth = ServerAuth(username="writer", password=PASSWORD, ca_cert="/etc/ca.pem")
    assert auth.client_kwargs("https://ch:9440") == {
        "interface": "https", "username": "writer", "password": PASSWORD,
        "ca_cert": "/etc/ca.pem", "verify": True,
    }  # fmt: skip
    # No settings: the DSN's own login applies; the scheme, not the port, decides TLS.
    assert ServerAuth().client_kwargs("http://u:p@ch:8443") == {"interface": "http",
                                                                "verify": True}  # fmt: skip
    assert PASSWORD not in repr(auth)


def test_the_embedded_engine_takes_no_server_options() -> None:
    # chdb has no users; passing them would only log "ignoring arguments".
    assert ServerAuth(username="u", password="p").client_kwargs("chdb:///tmp/x") == {}


def test_password_settings_are_sent_as_the_login(server: RefusingServer) -> None:
    s = load_settings({"LLMPULSE_CLICKHOUSE_DSN": server.url,
                       "LLMPULSE_CLICKHOUSE_USER": "writer",
                       "LLMPULSE_CLICKHOUSE_PASSWORD": PASSWORD})  # fmt: skip
    with pytest.raises(StorageError) as err:
        connect(s.dsn, "llmpulse", s.clickhouse_auth)
    assert server.authorizations and set(server.authorizations) == {basic("writer", PASSWORD)}
    assert "Authentication failed" in str(err.value)
    assert PASSWORD not in str(err.value) and "writer:***" in str(err.value)


def test_settings_win_over_the_dsn_login_and_neither_is_shown(server: RefusingServer) -> None:
    dsn = server.url.replace("://", f"://reader:{DSN_PASSWORD}@")
    with pytest.raises(StorageError) as err:
        connect(dsn, "llmpulse", ServerAuth(username="writer", password=PASSWORD))
    assert set(server.authorizations) == {basic("writer", PASSWORD)}
    assert PASSWORD not in str(err.value) and DSN_PASSWORD not in str(err.value)


def test_the_dsn_login_is_used_when_no_setting_is_given(server: RefusingServer) -> None:
    dsn = server.url.replace("://", f"://reader:{DSN_PASSWORD}@")
    with pytest.raises(StorageError) as err:
        connect(dsn, "llmpulse", ServerAuth())
    assert set(server.authorizations) == {basic("reader", DSN_PASSWORD)}
    assert DSN_PASSWORD not in str(err.value) and "reader:***@" in str(err.value)


def test_an_unreachable_server_error_hides_both_passwords() -> None:
    dsn = f"http://reader:{DSN_PASSWORD}@127.0.0.1:{free_port()}"
    with pytest.raises(StorageError) as err:
        connect(dsn, "llmpulse", ServerAuth(password=PASSWORD))
    text = str(err.value)
    assert "cannot" in text and "127.0.0.1" in text
    assert PASSWORD not in text and DSN_PASSWORD not in text


def test_tls_trusts_the_configured_ca_and_refuses_an_unknown_one(certs: Certs) -> None:
    with RefusingServer(certs) as server:
        auth = ServerAuth(username="writer", password=PASSWORD, ca_cert=str(certs.ca))
        with pytest.raises(StorageError, match="Authentication failed"):
            connect(server.url, "llmpulse", auth)  # the handshake passed: the login was read
        assert len(server.authorizations) >= 1
        seen = len(server.authorizations)
        with pytest.raises(StorageError) as err:
            connect(server.url, "llmpulse", ServerAuth(username="writer", password=PASSWORD))
        assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)
        assert len(server.authorizations) == seen  # nothing was sent to the untrusted server
        assert PASSWORD not in str(err.value)


def test_verify_false_skips_the_certificate_check_with_a_warning(certs: Certs) -> None:
    with (
        RefusingServer(certs) as server,
        pytest.warns(InsecureRequestWarning),
        pytest.raises(StorageError, match="Authentication failed"),
    ):
        connect(server.url, "llmpulse", ServerAuth(verify=False))
