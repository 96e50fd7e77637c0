"""Local addresses: whether a TCP port is taken (the broker launcher, the worker and the
OTLP receiver ask before binding), and whether a bind address is loopback (off loopback
an endpoint requires a token)."""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["is_loopback", "port_in_use"]


def port_in_use(host: str, port: int) -> bool:
    """True when ``host:port`` cannot be bound (another process listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IPs; a name or ``0.0.0.0`` is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
