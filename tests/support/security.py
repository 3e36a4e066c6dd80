"""Credentials for tests that drive model control (repository load/unload), which the front door
refuses unless it is enabled with a control token."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from clockwork.frontend.auth import FrontDoorSecurity

CONTROL_TOKEN = "test-control-token"
TOKEN = "test-inference-token"
#: lower case: gRPC metadata keys must be, and HTTP does not care. Read-only: tritonclient.http's
#: infer adds its own headers to the dict it is given (pass a copy there)
CONTROL_HEADERS: Mapping[str, str] = MappingProxyType({"authorization": f"Bearer {CONTROL_TOKEN}"})
TOKEN_HEADERS: Mapping[str, str] = MappingProxyType({"authorization": f"Bearer {TOKEN}"})


def control_enabled(token: str | None = None) -> FrontDoorSecurity:
    """Model control on, with ``CONTROL_TOKEN``; inference open unless ``token`` is given."""
    return FrontDoorSecurity(
        token=None if token is None else token.encode(),
        control_token=CONTROL_TOKEN.encode(),
        allow_model_control=True,
    )
