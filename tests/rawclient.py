"""A minimal Kafka client over a plain socket, for tests that must send exact bytes.

Requests are encoded with kio's generated types (the same library the broker decodes with, but a
different direction and code path); headers by hand. Used for bad input and edge cases that real
clients never send.
"""

from __future__ import annotations

import io
import socket
import struct
from typing import Any

from kio.serial import entity_reader, entity_writer

from kpy.protocol.messages import is_flexible, response_type


class RawClient:
    def __init__(
        self,
        bootstrap: str,
        timeout: float = 10.0,
        *,
        source: str | None = None,
        recv_buffer: int | None = None,
    ) -> None:
        """``source``: the local address to connect from; ``recv_buffer``: SO_RCVBUF, set before
        connecting so that it bounds the TCP window (a client that reads slowly)."""
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if recv_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, int(port)))
        self.correlation_id = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self, api_key: int, version: int, body: bytes, client_id: str = "raw") -> bytes:
        self.correlation_id += 1
        cid = client_id.encode()
        header = struct.pack(">hhih", api_key, version, self.correlation_id, len(cid)) + cid
        if is_flexible(api_key, version):
            header += b"\x00"
        payload = header + body
        return struct.pack(">i", len(payload)) + payload

    def send(self, request: Any, client_id: str = "raw") -> None:
        buf = io.BytesIO()
        entity_writer(type(request))(buf, request)
        self.send_bytes(
            self.frame(request.__api_key__, request.__version__, buf.getvalue(), client_id)
        )

    def recv_frame(self) -> bytes:
        size = struct.unpack(">i", self.recv_exact(4))[0]
        return self.recv_exact(size)

    def recv_exact(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("connection closed by the broker")
            out += chunk
        return bytes(out)

    def request(self, request: Any) -> Any:
        """Send and decode the response (kio types)."""
        self.send(request)
        return self.response(request)

    def response(self, request: Any) -> Any:
        """Read and decode the response to ``request``, the last request sent."""
        data = self.recv_frame()
        (corr,) = struct.unpack_from(">i", data)
        assert corr == self.correlation_id
        key, version = request.__api_key__, request.__version__
        pos = 4
        if key != 18 and is_flexible(key, version):
            pos += 1  # empty tagged fields of response header v1
        response, _ = entity_reader(response_type(key, version))(data, pos)
        return response

    def is_closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the broker has closed the connection (EOF or reset)."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
