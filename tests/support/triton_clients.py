"""Stock tritonclient clients for tests, closed so that the garbage collector finds nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import tritonclient.http as httpclient


@contextlib.contextmanager
def http_client(url: str, **kw: Any) -> Iterator[httpclient.InferenceServerClient]:
    c = httpclient.InferenceServerClient(url=url, network_timeout=10, **kw)
    try:
        yield c
    finally:
        c.close()
        # __del__ closes again from whichever thread the garbage collector runs in (a test's
        # pytest.raises keeps the client in a reference cycle), and gevent refuses a close from
        # any thread but its own: the second close must do nothing
        c.close = lambda: None
