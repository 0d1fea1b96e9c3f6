"""The TCP server: listeners, connections, and the order responses leave in.

Each connection is served by one task that reads frames and handles them one at a time, as
Kafka's network processor does (it mutes a channel until the response to its request is sent).
Responses therefore leave in request order without bookkeeping, and the responses to a burst of
pipelined requests go out in one write. A Fetch long poll holds back later requests on its
connection, as in Kafka; clients use separate connections where that matters.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable

import anyio
from anyio.abc import SocketStream

from kpy.broker import Broker
from kpy.config import BrokerConfig, Listener
from kpy.handlers.registry import CloseConnection
from kpy.protocol.messages import FrameReader, ProtocolError

log = logging.getLogger("kpy.server")

RECEIVE_SIZE = 1 << 20


async def serve_connection(broker: Broker, stream: SocketStream) -> None:
    try:
        address = stream.extra(anyio.abc.SocketAttribute.remote_address)
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
    except Exception:
        peer = "?"
    reader = FrameReader(broker.max_request_size)
    try:
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except Exception:
        pass
    async with stream:
        try:
            while True:
                data = await stream.receive(RECEIVE_SIZE)
                reader.feed(data)
                out = []
                for frame in reader.frames():
                    response = await broker.dispatch(frame, peer)
                    if response is not None:
                        out.append(response)
                if out:
                    await stream.send(b"".join(out) if len(out) > 1 else out[0])
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        except ProtocolError as e:
            log.info("closing connection from %s: %s", peer, e)
        except CloseConnection as e:
            log.info("closing connection from %s: %s", peer, e)
        except OSError as e:
            log.debug("connection from %s failed: %s", peer, e)
        except Exception:
            log.exception("unexpected error serving %s; closing its connection", peer)


async def _listen(listener: Listener) -> list[anyio.abc.SocketListener]:
    host = listener.host or None
    multi = await anyio.create_tcp_listener(local_host=host, local_port=listener.port)
    return [s for s in multi.listeners if isinstance(s, anyio.abc.SocketListener)]


def _address(s: anyio.abc.SocketListener) -> tuple[str, int]:
    address = s.extra(anyio.abc.SocketAttribute.local_address)
    assert isinstance(address, tuple)
    return str(address[0]), int(address[1])


async def run(
    config: BrokerConfig,
    *,
    ready: Callable[[Broker, list[tuple[str, int]]], None] | None = None,
    handle_signals: bool = True,
) -> None:
    """Run a broker until cancelled or until SIGINT/SIGTERM; close its logs cleanly."""
    broker = await anyio.to_thread.run_sync(Broker, config)
    try:
        sockets: list[anyio.abc.SocketListener] = []
        for listener in config.listeners:
            opened = await _listen(listener)
            sockets.extend(opened)
            if opened:
                broker.bound_ports[listener.port] = _address(opened[0])[1]
        bound = [_address(s) for s in sockets]
        if ready is not None:
            ready(broker, bound)

        async def handle(stream: SocketStream) -> None:
            await serve_connection(broker, stream)

        async with anyio.create_task_group() as tg:
            for s in sockets:
                tg.start_soon(s.serve, handle)
            tg.start_soon(_checkpoint_loop, broker)
            if handle_signals:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        log.info("received %s, shutting down", signal.Signals(signum).name)
                        break
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(broker.close)
            log.info("stopped cleanly")


async def _checkpoint_loop(broker: Broker) -> None:
    interval = broker.config.get_int("log.flush.offset.checkpoint.interval.ms") / 1000
    while True:
        await anyio.sleep(interval)
        await anyio.to_thread.run_sync(broker.logs.checkpoint)
