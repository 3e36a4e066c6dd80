"""Credentials for tests that drive model control (repository load/unload), which the front door
refuses unless it is enabled with a control token."""

from __future__ import annotations

from clockwork.frontend.auth import FrontDoorSecurity

CONTROL_TOKEN = "test-control-token"
TOKEN = "test-inference-token"
#: lower case: gRPC metadata keys must be, and HTTP does not care
CONTROL_HEADERS = {"authorization": f"Bearer {CONTROL_TOKEN}"}
TOKEN_HEADERS = {"authorization": f"Bearer {TOKEN}"}


def control_enabled(token: str | None = None) -> FrontDoorSecurity:
    """Model control on, with ``CONTROL_TOKEN``; inference open unless ``token`` is given."""
    return FrontDoorSecurity(
        token=None if token is None else token.encode(),
        control_token=CONTROL_TOKEN.encode(),
        allow_model_control=True,
    )
