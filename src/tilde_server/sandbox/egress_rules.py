"""What a sandbox may reach: the fixed baseline, the operator's allow-list, the organization's
network policies, and the one address a request is then connected to.

`EgressRules.decide(target, ask_policies)` answers one request. The order (docs/sandboxes.md,
"Network"):

1. The target must be a host name or an IP literal and a port in 1-65535 (else `invalid`).
2. An IP literal, or a name the baseline knows (`localhost`, `*.localhost`, the metadata host
   names), is checked against the baseline at once.
3. The organization's network policies (`ask_policies`, Rego action `network:request`) and the
   operator allow-list decide the name. A `deny` of a policy wins over everything; then an
   `allow` of a policy or a match in the allow-list allows; nothing that allows: denied
   (`default`).
4. Only then is the name resolved, once, and every address checked against the baseline;
   the request is connected to the first address that passes (the caller connects to exactly
   `Decision.address`: no second lookup, so no DNS rebinding), and is denied when none does.

Subtleties:
1. Names are resolved only after the policies allowed them: a denied name costs no DNS query,
   so code in a sandbox cannot leak data through the names it asks for.
2. IPv4-mapped and NAT64-embedded IPv6 addresses are judged by the IPv4 address inside them
   (`::ffff:127.0.0.1` is loopback), and so are 6to4 addresses.
3. `exempt` (address, port) pairs pass the baseline. They exist for tests that put the
   "outside" on loopback (`--unsafe-egress-test-exempt`); the server logs a warning when any is
   set, and nothing sets them by default. `resolve` overrides name resolution the same way
   (`--unsafe-egress-test-resolve NAME=ADDRESS`). With either set, the rules are in test mode:
   an allowed request to anything but loopback is refused (`test-guard`), so a baseline bug
   found by a test never sends a packet to a private or metadata address.
4. Resolution is blocking (`socket.getaddrinfo`): the proxy calls `decide` in its own thread.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The fixed baseline: no policy or allow-list entry can reach these.
BASELINE: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "cgnat"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),  # 169.254.169.254: cloud metadata
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "ietf-protocol"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # includes 255.255.255.255
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
    ("fd00:ec2::254/128", "link-local"),  # AWS metadata over IPv6 (inside fc00::/7 too)
)
_NETS = [(ipaddress.ip_network(net), why) for net, why in BASELINE]
# Names that mean "this machine" or a metadata service whatever DNS says.
_BASELINE_NAMES = {"localhost": "loopback", "metadata.google.internal": "link-local",
                   "metadata": "link-local", "instance-data": "link-local"}
_HOST_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)"
                      r"(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def baseline_reason(addr: IPAddress) -> str | None:
    """Why the baseline denies `addr` (e.g. "loopback"), or None when it passes."""
    inner = _embedded_v4(addr)
    if inner is not None:
        return baseline_reason(inner)
    for net, why in _NETS:
        if addr.version == net.version and addr in net:
            return why
    return None


def _embedded_v4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(addr, ipaddress.IPv6Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def parse_address(host: str) -> IPAddress | None:
    """`host` as an IP literal (brackets allowed for IPv6), else None."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(text.split("%", 1)[0] if "%" in text else text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Target:
    """One request as the proxy sees it. `path` (HTTP only) never holds the query string."""

    scheme: str  # "http" (forwarded) or "https" (a CONNECT tunnel)
    host: str  # lower case; an IPv6 literal without brackets
    port: int
    method: str
    path: str | None = None

    def policy_input(self) -> dict[str, object]:
        return {"scheme": self.scheme, "host": self.host, "port": self.port,
                "method": self.method, "path": self.path}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str  # "baseline:loopback", "policy:NAME", "allow-list:PATTERN", "default", ...
    address: str | None = None  # the address to connect to (allowed) or that was refused
    message: str = ""


@dataclass(frozen=True)
class PolicyVerdict:
    """What the organization's network policies say: allow / deny / nothing (None)."""

    allowed: bool | None
    policy: str = ""


@dataclass(frozen=True)
class HostPattern:
    """An allow-list entry: `host`, `*.suffix` (any depth below, not the suffix itself), with
    an optional `:port` (without one: ports 80 and 443)."""

    host: str
    port: int | None

    @classmethod
    def parse(cls, text: str) -> HostPattern:
        raw = text.strip().lower()
        host, port = raw, None
        if raw.count(":") == 1:
            host, _, p = raw.partition(":")
            if not p.isdigit() or not 0 < int(p) < 65536:
                raise ValueError(f"{text!r}: the port must be a number in 1-65535")
            port = int(p)
        name = host[2:] if host.startswith("*.") else host
        if not name or not (_HOST_RE.match(name) or parse_address(name) is not None):
            raise ValueError(f"{text!r} is not a host name, '*.domain' or an IP address, "
                             "optionally with ':port'")
        return cls(host, port)

    def matches(self, target: Target) -> bool:
        if self.port is None and target.port not in (80, 443):
            return False
        if self.port is not None and target.port != self.port:
            return False
        if self.host.startswith("*."):
            return target.host.endswith(self.host[1:])
        return target.host == self.host

    def __str__(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"


Resolver = Callable[[str, int], list[str]]


def system_resolve(host: str, port: int) -> list[str]:
    """Addresses of `host` in the resolver's order, each once."""
    out: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        addr = str(sockaddr[0])
        if addr not in out:
            out.append(addr)
    return out


@dataclass
class EgressRules:
    allow: list[HostPattern] = field(default_factory=list)
    exempt: set[tuple[str, int]] = field(default_factory=set)  # subtlety 3
    resolve: dict[str, str] = field(default_factory=dict)
    resolver: Resolver = system_resolve

    @classmethod
    def from_options(cls, allow: Iterable[str] = (), exempt: Iterable[str] = (),
                     resolve: Iterable[str] = ()) -> EgressRules:
        """From the `tilde-server run` option values; ValueError names a bad one."""
        pairs: set[tuple[str, int]] = set()
        for item in exempt:
            host, _, port = item.rpartition(":")
            addr = parse_address(host)
            if addr is None or not port.isdigit():
                raise ValueError(f"{item!r}: expected ADDRESS:PORT, e.g. 127.0.0.1:8443")
            pairs.add((str(addr), int(port)))
        names: dict[str, str] = {}
        for item in resolve:
            name, _, addr_text = item.partition("=")
            addr = parse_address(addr_text)
            if not name or addr is None:
                raise ValueError(f"{item!r}: expected NAME=ADDRESS, e.g. pypi.test=127.0.0.1")
            names[name.lower()] = str(addr)
        return cls([HostPattern.parse(a) for a in allow], pairs, names)

    @property
    def test_mode(self) -> bool:
        return bool(self.exempt or self.resolve)

    def decide(self, target: Target,
               ask_policies: Callable[[Target], PolicyVerdict]) -> Decision:
        decision = self._decide(target, ask_policies)
        if decision.allowed and self.test_mode and decision.address is not None:
            addr = parse_address(decision.address)
            if addr is None or baseline_reason(addr) != "loopback":
                return Decision(False, "test-guard", decision.address,
                                "test mode (--unsafe-egress-test-*) connects to loopback only")
        return decision

    def _decide(self, target: Target,
                ask_policies: Callable[[Target], PolicyVerdict]) -> Decision:
        host = target.host
        if not 0 < target.port < 65536:
            return Decision(False, "invalid", None, f"port {target.port} is out of range")
        literal = parse_address(host)
        if literal is None and not _HOST_RE.match(host):
            return Decision(False, "invalid", None, f"{host!r} is not a valid host name")
        if literal is not None:
            denied = self._baseline(str(literal), target.port)
            if denied is not None:
                return denied
        else:
            name = host.rstrip(".")
            why = _BASELINE_NAMES.get(name) or ("loopback" if name.endswith(".localhost")
                                                else None)
            if why is not None:
                return Decision(False, f"baseline:{why}", None,
                                f"{host} is a {why} name, which sandboxes may never reach")
        verdict = ask_policies(target)
        if verdict.allowed is False:
            return Decision(False, f"policy:{verdict.policy}", None,
                            f"denied by the network policy {verdict.policy!r}")
        rule = f"policy:{verdict.policy}" if verdict.allowed else ""
        if not rule:
            pattern = next((p for p in self.allow if p.matches(target)), None)
            if pattern is None:
                return Decision(False, "default", None,
                                "no network policy or allow-list entry allows "
                                f"{target.method} {target.scheme}://{host}:{target.port}")
            rule = f"allow-list:{pattern}"
        if literal is not None:
            return Decision(True, rule, str(literal))
        try:
            addresses = ([self.resolve[host.rstrip(".")]] if host.rstrip(".") in self.resolve
                         else self.resolver(host, target.port))
        except OSError as exc:
            return Decision(False, "dns", None, f"cannot resolve {host}: {exc}")
        refused: Decision | None = None
        for addr in addresses:
            denied = self._baseline(addr, target.port)
            if denied is None:
                return Decision(True, rule, addr)
            refused = refused or denied
        if refused is None:
            return Decision(False, "dns", None, f"{host} has no address")
        return Decision(False, refused.rule, refused.address,
                        f"{host} resolves to {refused.address}: {refused.message}")

    def _baseline(self, addr: str, port: int) -> Decision | None:
        parsed = parse_address(addr)
        if parsed is None:
            return Decision(False, "invalid", addr, f"{addr!r} is not an address")
        why = baseline_reason(parsed)
        if why is None or (str(parsed), port) in self.exempt:
            return None
        return Decision(False, f"baseline:{why}", str(parsed),
                        f"{parsed} is a {why} address, which sandboxes may never reach")
