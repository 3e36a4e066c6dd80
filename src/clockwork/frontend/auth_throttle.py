"""A limit on failed bearer-token attempts per client address (HTTP and gRPC, counted together).

Tokens are compared in constant time, but nothing stopped a client from guessing as fast as the
server answers. ``FailedAttempts`` counts the wrong tokens each address presents; after
``max_failures`` within ``window_s`` the address is refused (429, ``TOO_MANY_FAILED_ATTEMPTS``,
``Retry-After``) on everything that needs a token for ``lockout_s``, its token not even looked
at. Health and the OpenAPI document stay open. Memory is bounded: at most ``max_addresses``
addresses are remembered, the stalest dropped first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote


@dataclass(slots=True)
class _Record:
    first_s: float  # when the current window's first failure came
    failures: int
    blocked_until_s: float


class FailedAttempts:
    """See the module docstring. ``clock_s``: a monotonic clock in seconds."""

    def __init__(
        self,
        max_failures: int = 10,
        window_s: float = 60.0,
        lockout_s: float = 60.0,
        max_addresses: int = 10_000,
        clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or lockout_s <= 0 or max_addresses < 1:
            raise ValueError("max_failures, window_s, lockout_s and max_addresses must be > 0")
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_addresses = max_addresses
        self._clock_s = clock_s
        self._records: OrderedDict[str, _Record] = OrderedDict()
        # the end of the latest lockout: until then a call's address must be looked up
        self._locking_until_s = 0.0
        #: requests refused because their address was locked out
        self.refused = 0

    def blocked_s(self, address: str) -> float:
        """Seconds ``address`` stays locked out (0: it may try)."""
        record = self._records.get(address)
        if record is None:
            return 0.0
        left = record.blocked_until_s - self._clock_s()
        return left if left > 0 else 0.0

    def clear(self) -> None:
        """Forget every address and lockout."""
        self._records.clear()
        self._locking_until_s = 0.0

    def locking(self) -> bool:
        """Whether some address may be locked out now (False: none is, nothing to look up)."""
        return self._clock_s() < self._locking_until_s

    def failed(self, address: str) -> None:
        """``address`` presented a wrong token."""
        now = self._clock_s()
        record = self._records.get(address)
        if record is None or now - record.first_s > self.window_s:
            record = _Record(now, 0, 0.0)
        record.failures += 1
        if record.failures >= self.max_failures:
            record.blocked_until_s = now + self.lockout_s
            self._locking_until_s = max(self._locking_until_s, record.blocked_until_s)
            record.first_s, record.failures = now + self.lockout_s, 0  # a new window after it
        self._records[address] = record
        self._records.move_to_end(address)
        while len(self._records) > self.max_addresses:
            self._records.popitem(last=False)


def grpc_peer_address(peer: str) -> str:
    """The client address in a gRPC ``context.peer()`` (``ipv4:10.0.0.1:5000``,
    ``ipv6:[::1]:5000``, brackets possibly percent-encoded), written as HTTP's ``request.remote``
    writes it (``10.0.0.1``, ``::1``), so that one address has one count over both protocols."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        host = unquote(rest).rpartition(":")[0]
        return host.strip("[]") or rest
    return peer  # unix sockets and the like: the whole text is the only name there is
