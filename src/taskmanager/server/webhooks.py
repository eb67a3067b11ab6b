"""Where callbacks may go, and sending one to the address that was checked (API.md B.5).

A ``callback_url`` is refused when its host resolves to an address that is not public —
loopback, private (RFC 1918, unique-local), link-local (the cloud metadata service at
169.254.169.254 among them), shared, reserved, multicast, unspecified — unless that address is in
``TASKMANAGER_WEBHOOK_ALLOW_NETWORKS``. Every address the name resolves to must pass, so a name
that answers with one public and one private address is refused.

The check runs at create time and again at each delivery. DNS is asked **once** per delivery
and the connection goes to the address that was checked: the request's URL carries the IP, the
``Host`` header the original host, and for ``https`` the TLS ``server_hostname`` (SNI and the
certificate check) is the original host too (httpcore's ``sni_hostname`` request extension). So a
name that resolves to a public address for the check and to 127.0.0.1 for the connection (DNS
rebinding) cannot reach the inside. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Longest ``callback_url`` accepted (API.md B.5).
MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}


class CallbackRefused(ValueError):
    """A ``callback_url`` the server will not call; the message says why."""


def parse_networks(text: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (a comma-separated string or a list) as networks; a bare address is a /32 (/128)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is a public unicast address (an IPv4-mapped IPv6 one judged as IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True, slots=True)
class Target:
    """A checked callback: the URL as given, its host and port, and the address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress

    def pinned_url(self) -> str:
        """The URL with the checked address in place of the host."""
        parts = urlsplit(self.url)
        ip = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        netloc = ip if parts.port is None else f"{ip}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))

    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


class AddressPolicy:
    """The networks callbacks may reach although not public (``allow``), and the resolver."""

    def __init__(self, allow: Iterable[IPNetwork] = ()) -> None:
        self.allow = tuple(allow)

    def allowed(self, address: IPAddress) -> bool:
        return is_public(address) or any(address in network for network in self.allow)

    async def check(self, url: str) -> Target:
        """Resolve ``url``'s host once and check every address; the target to connect to."""
        scheme, host, port = _parts(url)
        addresses = await _resolve(host, port)
        refused = [a for a in addresses if not self.allowed(a)]
        if refused:
            raise CallbackRefused(
                f"{host} resolves to {refused[0]}, which is not a public address "
                "(allow its network with TASKMANAGER_WEBHOOK_ALLOW_NETWORKS)"
            )
        return Target(url, scheme, host, port, addresses[0])


def _parts(url: str) -> tuple[str, str, int]:
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackRefused(f"not a valid URL: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise CallbackRefused("must be an http or https URL")
    if not parts.hostname:
        raise CallbackRefused("has no host")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("must not carry credentials")
    return parts.scheme, parts.hostname, port if port is not None else DEFAULT_PORTS[parts.scheme]


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CallbackRefused(f"{host} does not resolve: {exc.strerror or exc}") from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise CallbackRefused(f"{host} does not resolve")
    return addresses


async def post(
    client: httpx.AsyncClient, target: Target, body: bytes, headers: Mapping[str, str], seconds: float
) -> int:
    """POST ``body`` to ``target``'s checked address (Host and SNI: its host); the status."""
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    response = await client.post(
        target.pinned_url(),
        content=body,
        headers={**headers, "Host": target.host_header()},
        timeout=seconds,
        extensions=extensions,
    )
    return response.status_code


def delivery_client() -> httpx.AsyncClient:
    """The HTTP client deliveries share: no redirects, no proxy or .netrc from the environment."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False)


class HttpTransport:
    """The engine's ``callbacks.Transport`` over HTTP: ``check`` at create and register, ``send``
    (checked again, connected to the checked address) at each delivery. The client is opened on
    first use and closed by ``close`` (the app's lifespan)."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self._client: httpx.AsyncClient | None = None

    async def check(self, url: str) -> Target:
        return await self.policy.check(url)

    async def send(self, url: str, body: bytes, headers: Mapping[str, str], seconds: float) -> int:
        target = await self.policy.check(url)
        if self._client is None:
            self._client = delivery_client()
        return await post(self._client, target, body, headers, seconds)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


__all__ = [
    "MAX_URL_LENGTH",
    "AddressPolicy",
    "CallbackRefused",
    "HttpTransport",
    "Target",
    "delivery_client",
    "is_public",
    "parse_networks",
    "post",
]
