"""Clients of an Open Inference Protocol (KServe v2 / Triton) server, and ``clockwork bench
--url``'s load generator (``clockwork.client.bench``), which drives any such server with this
project's workloads.

Nothing here imports the server side: the client speaks HTTP or gRPC to whatever listens.
"""

from clockwork.client.oip_client import (
    Endpoint,
    GrpcClient,
    HttpClient,
    InferInputs,
    InputTensor,
    ModelSpec,
    OIPClient,
    OIPError,
    Outcome,
    OutcomeKind,
    RepositoryModel,
    TensorSpec,
    connect,
    make_inputs,
    parse_endpoint,
)

__all__ = [
    "Endpoint",
    "GrpcClient",
    "HttpClient",
    "InferInputs",
    "InputTensor",
    "ModelSpec",
    "OIPClient",
    "OIPError",
    "Outcome",
    "OutcomeKind",
    "RepositoryModel",
    "TensorSpec",
    "connect",
    "make_inputs",
    "parse_endpoint",
]
