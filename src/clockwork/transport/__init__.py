"""Controller <-> worker transport: typed messages, a msgpack codec, length-prefixed frames over
asyncio TCP streams, and an in-memory transport for tests (DESIGN.md s.2-4).

Nothing here installs uvloop or touches the event loop at import; see ``transport.loop``.
"""

from clockwork.transport.codec import TAGS, decode, encode
from clockwork.transport.connection import Connection, pong_for
from clockwork.transport.errors import (
    ConnectionClosedError,
    FrameError,
    HandshakeError,
    LinkRefusedError,
    ProtocolError,
)
from clockwork.transport.framing import DEFAULT_MAX_FRAME_BYTES
from clockwork.transport.handshake import LinkPeer
from clockwork.transport.loop import install_uvloop, loop_factory, uvloop_available
from clockwork.transport.memory import MemoryConnection, memory_pair
from clockwork.transport.messages import (
    PROTOCOL_VERSION,
    ActionMsg,
    ActionResultMsg,
    EvictWeightsMsg,
    GetWorkerState,
    Hello,
    InferInputs,
    InferMsg,
    InferOutputs,
    LoadWeightsMsg,
    Message,
    Ping,
    Pong,
    Role,
    Tensor,
    WorkerState,
    action_message,
)
from clockwork.transport.stream import Admit, Server, StreamConnection, connect, serve

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "TAGS",
    "ActionMsg",
    "ActionResultMsg",
    "Admit",
    "Connection",
    "ConnectionClosedError",
    "EvictWeightsMsg",
    "FrameError",
    "GetWorkerState",
    "HandshakeError",
    "Hello",
    "InferInputs",
    "InferMsg",
    "InferOutputs",
    "LinkPeer",
    "LinkRefusedError",
    "LoadWeightsMsg",
    "MemoryConnection",
    "Message",
    "Ping",
    "Pong",
    "ProtocolError",
    "Role",
    "Server",
    "StreamConnection",
    "Tensor",
    "WorkerState",
    "action_message",
    "connect",
    "decode",
    "encode",
    "install_uvloop",
    "loop_factory",
    "memory_pair",
    "pong_for",
    "serve",
    "uvloop_available",
]
