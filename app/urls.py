"""Checks for URLs that users send us, so the service cannot be pointed at itself or at
the private network it runs in (SSRF).

A URL passes when its scheme and host are allowed by the settings and every address its
host resolves to is public (or private addresses are explicitly allowed). Whoever then
fetches it must connect to one of the returned addresses, not resolve the name again,
or a DNS answer that changes in between (rebinding) would bypass the check.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.errors import ProblemError
from app.settings import Settings


@dataclass(frozen=True)
class CheckedURL:
    url: str
    host: str
    port: int
    addresses: tuple[str, ...]


def _refuse(param: str, detail: str) -> ProblemError:
    return ProblemError(422, "url_not_allowed", detail, param=param)


def _host_allowed(host: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern == "*":
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and host != pattern[2:]:
            return True
        if host == pattern:
            return True
    return False


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_user_url(url: str, *, settings: Settings, param: str = "url") -> CheckedURL:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise _refuse(param, f"{param} is not a valid URL.") from e
    scheme = parts.scheme.lower()
    if scheme not in settings.url_allowed_schemes:
        raise _refuse(
            param,
            f"The scheme {scheme or '(none)'!r} is not allowed; allowed: "
            f"{', '.join(settings.url_allowed_schemes) or 'none'}.",
        )
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise _refuse(param, f"{param} has no host.")
    if parts.username or parts.password:
        raise _refuse(param, "URLs with credentials in them are not accepted.")
    if not _host_allowed(host, settings.url_allowed_hosts):
        raise _refuse(
            param,
            f"The host {host!r} is not in the allowed hosts (MODELPRESS_URL_ALLOWED_HOSTS).",
        )
    port = port or (443 if scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise _refuse(param, f"The host {host!r} does not resolve.") from e
    addresses = tuple(sorted({info[4][0] for info in infos}))
    if not settings.url_allow_private:
        blocked = [a for a in addresses if not _is_public(a)]
        if blocked:
            raise _refuse(
                param,
                f"The host {host!r} resolves to a private, loopback or link-local address; "
                "such URLs are refused (MODELPRESS_URL_ALLOW_PRIVATE).",
            )
    return CheckedURL(url=url, host=host, port=port, addresses=addresses)
