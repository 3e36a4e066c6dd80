"""gRPC answers a client stops reading are not held for ever (``grpc_write_timeout``): a client
process that is stopped has its connection closed within about two write timeouts (keep-alive)
and its door slot back; a stream its client does not read is ended after the write timeout;
another client is served throughout; a client that pauses and reads on gets everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg

from clockwork.frontend.api import REASON_METADATA_KEY
from clockwork.frontend.grpc_server import SERVICE_NAME
from clockwork.frontend.grpc_write_timeout import WRITE_TIMEOUT_REASON
from clockwork.frontend.limits import DoorLimits, RequestKind, Timeout
from clockwork.frontend.proto import inference_pb2 as pb

from support.door import DoorServer, GatedModelServer, door_server

STALL_CLIENT = Path(__file__).parent.parent / "support" / "grpc_stall_client.py"
INTS = 2 * 2**20  # an 8 MiB answer; four of them are more than the sockets' buffers hold
COUNT = 4
WRITE_TIMEOUT_S = 1.0
# stopped at once, a client is cut off after at most a ping period and a ping timeout (each the
# write timeout); the rest is slack for a loaded machine
CLOSED_WITHIN_S = 2 * WRITE_TIMEOUT_S + 2.0
# the tests' own 8 MiB messages are decoded and encoded on the server's loop, which can then run
# late long enough for the queue-delay test (``grpc_queue_delay``) to refuse the other client's
# inference on a loaded machine: it is off, these tests are about writes
LIMITS = DoorLimits(write_timeout_s=WRITE_TIMEOUT_S, queue_delay_target_s=0)


def established_peers(port: int) -> set[int]:
    """The client ports of the server's ESTABLISHED connections on ``port`` (gRPC's sockets
    are IPv6 ones, with IPv4 addresses mapped)."""
    peers = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, remote, state = line.split()[1:4]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                peers.add(int(remote.rsplit(":", 1)[1], 16))
    return peers


def wait_for(
    what: str, check: Callable[[], bool], timeout_s: float, between: Callable[[], None]
) -> float:
    """Seconds until ``check()`` holds, calling ``between()`` while it does not."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout_s, f"{what}: not within {timeout_s} s"
        between()
        time.sleep(0.05)
    return time.monotonic() - t0


def add_served(client: tg.InferenceServerClient, timeout_s: float = 2) -> None:
    """An inference for another client, on its own connection, answered in time."""
    inputs = []
    for name in ("a", "b"):
        t = tg.InferInput(name, [1, 4], "FP32")
        t.set_data_from_numpy(np.ones((1, 4), np.float32))
        inputs.append(t)
    result = client.infer("add", inputs, client_timeout=timeout_s)
    assert result.as_numpy("sum").tolist() == [[2.0] * 4]


class StallClient:
    """``grpc_stall_client.py`` in a child process, its requests held at the gate."""

    def __init__(self, server: DoorServer, gated: GatedModelServer, mode: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(STALL_CLIENT),
                mode,
                f"127.0.0.1:{server.grpc_port}",
                str(COUNT),
                str(INTS),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.out = self.proc.stdout
        try:
            assert self.out.readline().strip() == "sent"
            wait_for(
                "the requests reaching the model",
                lambda: server.call(lambda: gated.waiting) == COUNT,
                10,
                lambda: None,
            )
            (self.port,) = established_peers(server.grpc_port)
            expected = COUNT if mode == "unary" else 1
            assert server.call(lambda: server.door.inflight[RequestKind.INFERENCE]) == expected
        except BaseException:
            self.kill()
            raise

    def answers(self) -> list[str]:
        return [line.strip() for line in self.out]

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.kill()
        self.proc.wait(10)
        self.out.close()


@pytest.fixture
def gated_server() -> Iterator[tuple[DoorServer, GatedModelServer]]:
    gated = GatedModelServer()
    with door_server(LIMITS, gated, grpc=True) as s:
        yield s, gated


@pytest.mark.parametrize("mode", ["unary", "stream"])
def test_a_stopped_client_is_cut_off_and_others_are_served(
    gated_server: tuple[DoorServer, GatedModelServer], mode: str
) -> None:
    server, gated = gated_server
    other = tg.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    stalled = StallClient(server, gated, mode)
    try:
        os.kill(stalled.proc.pid, signal.SIGSTOP)
        server.call(gated.gate.set)  # the answers go to a client that reads nothing
        took_s = wait_for(
            "the stopped client's connection closed",
            lambda: stalled.port not in established_peers(server.grpc_port),
            CLOSED_WITHIN_S,
            lambda: add_served(other),
        )
        assert server.call(lambda: server.door.inflight[RequestKind.INFERENCE]) == 0
        print(f"{mode}: closed {took_s:.2f} s after the answers were ready")
        add_served(other)
        # woken, it learns that its answers were dropped, none of which it was sent
        os.kill(stalled.proc.pid, signal.SIGCONT)
        answers = stalled.answers()
        assert answers and all(a == "error StatusCode.UNAVAILABLE" for a in answers), answers
    finally:
        stalled.kill()
        other.close()


def test_a_client_stopped_for_less_than_the_write_timeout_gets_every_answer(
    gated_server: tuple[DoorServer, GatedModelServer],
) -> None:
    server, gated = gated_server
    stalled = StallClient(server, gated, "unary")
    try:
        os.kill(stalled.proc.pid, signal.SIGSTOP)
        server.call(gated.gate.set)
        time.sleep(WRITE_TIMEOUT_S / 3)
        os.kill(stalled.proc.pid, signal.SIGCONT)
        assert stalled.answers() == ["ok"] * COUNT
        assert server.call(lambda: server.door.timeouts[Timeout.WRITE]) == 0
    finally:
        stalled.kill()


def test_a_long_call_that_sends_nothing_outlives_many_pings(
    gated_server: tuple[DoorServer, GatedModelServer],
) -> None:
    """tritonclient's keep-alive defaults take a ping every write timeout while its call waits."""
    server, gated = gated_server
    client = tg.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        server.loop.call_soon_threadsafe(
            server.loop.call_later, 3 * WRITE_TIMEOUT_S, gated.gate.set
        )
        add_served(client, timeout_s=3 * WRITE_TIMEOUT_S + 5)
        assert server.call(lambda: server.door.timeouts[Timeout.WRITE]) == 0
    finally:
        client.close()


def ident_request(i: int) -> pb.ModelInferRequest:
    r = pb.ModelInferRequest(model_name="ident", id=str(i))
    r.inputs.add(name="x", datatype="INT32", shape=[1, INTS])
    r.raw_input_contents.append(np.arange(INTS, dtype=np.int32).tobytes())
    return r


class RawStream:
    """A ``ModelStreamInfer`` stream from this process whose answers are read only when asked:
    the client's transport keeps reading (and acknowledging pings), its application does not."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 2**30)]
        )
        self.requests_done = threading.Event()
        method = self.channel.stream_stream(
            f"/{SERVICE_NAME}/ModelStreamInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        self.call = method(self._requests())

    def _requests(self) -> Iterator[pb.ModelInferRequest]:
        for i in range(COUNT):
            yield ident_request(i)
        self.requests_done.wait(30)  # the request side stays open

    def close(self) -> None:
        self.requests_done.set()
        self.call.cancel()
        self.channel.close()


def test_a_stream_nobody_reads_is_ended_after_the_write_timeout() -> None:
    with door_server(LIMITS, grpc=True) as server:
        other = tg.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        stream = RawStream(server.grpc_port)
        try:
            took_s = wait_for(
                "the unread stream's write timeout",
                lambda: server.call(lambda: server.door.timeouts[Timeout.WRITE]) == 1,
                WRITE_TIMEOUT_S + 5,
                lambda: add_served(other),
            )
            assert server.call(lambda: server.door.inflight[RequestKind.INFERENCE]) == 0
            print(f"stream ended {took_s:.2f} s after it began")
            add_served(other)
            # reading at last: the answer that was being written, then the stream's end
            got = 0
            with pytest.raises(grpc.RpcError) as e:
                for response in stream.call:
                    assert not response.error_message
                    got += 1
            assert got < COUNT
            assert e.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "write timeout" in e.value.details()
            assert (REASON_METADATA_KEY, WRITE_TIMEOUT_REASON) in e.value.trailing_metadata()
        finally:
            stream.close()
            other.close()


def test_a_stream_read_slowly_gets_every_answer() -> None:
    with door_server(LIMITS, grpc=True) as server:
        stream = RawStream(server.grpc_port)
        try:
            got = []
            for response in stream.call:
                got.append(len(response.infer_response.raw_output_contents[0]))
                if len(got) == COUNT:
                    break
                time.sleep(WRITE_TIMEOUT_S / 3)  # a pause, then the next answer is read
            assert got == [4 * INTS] * COUNT
            assert server.call(lambda: server.door.timeouts[Timeout.WRITE]) == 0
        finally:
            stream.close()
