"""Exit 0 when the server answers its readiness check (``GET /v2/health/ready``: 200), else 1:
the container images' HEALTHCHECK. Standard library only.

The URL is ``$CLOCKWORK_HEALTH_URL`` (default ``http://127.0.0.1:8000/v2/health/ready``: inside the
container, on its loopback). The health endpoints need no token. An ``https://`` URL is checked
without verifying the certificate: the probe talks to its own container's loopback, where the
certificate's name (the service's public one) would not match; a server that requires client
certificates (``--tls-ca``) cannot be probed this way (see README, Containers).
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8000/v2/health/ready"
TIMEOUT_S = 3.0


def ready(url: str, timeout_s: float = TIMEOUT_S) -> tuple[bool, str]:
    """Whether ``url`` answers 200, and what was seen."""
    context = None
    if url.startswith("https://"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as r:
            return r.status == 200, f"{url}: {r.status}"
    except urllib.error.HTTPError as e:
        return False, f"{url}: {e.code} {e.reason}"
    except (urllib.error.URLError, OSError) as e:
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        return False, f"{url}: {reason}"


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CLOCKWORK_HEALTH_URL", DEFAULT_URL)
    ok, seen = ready(url)
    print(seen)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
