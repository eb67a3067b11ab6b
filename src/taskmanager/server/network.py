"""Who is calling, by address: trusted proxies, ``X-Forwarded-For``/``-Proto``, allow and deny lists.

``X-Forwarded-For`` is believed only from a peer in the trusted-proxy list, and then read from the
right: the first address that is not itself a trusted proxy is the client (anything to its left
was written by the client and may be forged). With no trusted proxies the TCP peer is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str, setting: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` → networks; ``ValueError`` naming the setting otherwise."""
    found: list[Network] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            found.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{setting}: {part!r} is not an IP address or network") from None
    return tuple(found)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]  # [v6]:port
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # v4:port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Iterable[Network]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


@dataclass(frozen=True)
class AddressPolicy:
    trusted_proxies: tuple[Network, ...] = ()
    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.trusted_proxies or self.allow or self.deny)

    def client(self, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        """The client address: the peer, or (from a trusted proxy) the nearest untrusted hop."""
        address = _address(peer) if peer else None
        if address is None or not _within(address, self.trusted_proxies):
            return peer
        hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
        for hop in reversed(hops):
            found = _address(hop)
            if found is None:
                return str(address)  # a garbled hop: trust nothing further left
            if not _within(found, self.trusted_proxies):
                return str(found)
            address = found
        return str(address)

    def trusts(self, peer: str | None) -> bool:
        address = _address(peer) if peer else None
        return address is not None and _within(address, self.trusted_proxies)

    def admits(self, client: str | None) -> bool:
        """Whether the allow/deny lists let ``client`` in (an unknown address only if no allow list)."""
        address = _address(client) if client else None
        if address is None:
            return not self.allow
        if _within(address, self.deny):
            return False
        return not self.allow or _within(address, self.allow)
