"""The TCP server: listeners, connections, and the order responses leave in.

Each connection is served by one task that reads frames and handles them one at a time, as
Kafka's network processor does (it mutes a channel until the response to its request is sent).
Responses therefore leave in request order without bookkeeping, and the responses to a burst of
pipelined requests go out in one write. A Fetch long poll holds back later requests on its
connection, as in Kafka; clients use separate connections where that matters.
"""

from __future__ import annotations

import functools
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import SocketStream

from kpy.broker import Broker
from kpy.config import BrokerConfig, Listener
from kpy.handlers.registry import CloseConnection
from kpy.protocol.messages import FrameReader, ProtocolError

log = logging.getLogger("kpy.server")

RECEIVE_SIZE = 1 << 20


_FETCH_KEY = b"\x00\x01"


async def serve_connection(broker: Broker, stream: SocketStream, listener: str) -> None:
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
    # Responses to the frames of one read are sent together, except that those ready before a
    # Fetch (which may wait) leave first, and all that are ready leave before a close.
    pending: list[bytes] = []

    async def flush() -> None:
        data = b"".join(pending) if len(pending) > 1 else pending[0]
        pending.clear()
        await stream.send(data)

    async with stream:
        try:
            try:
                while True:
                    reader.feed(await stream.receive(RECEIVE_SIZE))
                    for frame in reader.frames():
                        if pending and frame[:2] == _FETCH_KEY:
                            await flush()
                        response = await broker.dispatch(frame, peer, listener)
                        if response is not None:
                            pending.append(response)
                    if pending:
                        await flush()
            except (ProtocolError, CloseConnection) as e:
                if pending:
                    await flush()
                log.info("closing connection from %s: %s", peer, e)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
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
        by_listener: list[tuple[str, anyio.abc.SocketListener]] = []
        for listener in config.listeners:
            opened = await _listen(listener)
            sockets.extend(opened)
            if opened:
                broker.bound_ports[listener.name] = _address(opened[0])[1]
            for s in opened:
                by_listener.append((listener.name, s))
        bound = [_address(s) for s in sockets]
        if ready is not None:
            ready(broker, bound)

        async with anyio.create_task_group() as tg:
            for name, s in by_listener:
                tg.start_soon(s.serve, functools.partial(serve_connection, broker, listener=name))
            tg.start_soon(_checkpoint_loop, broker)
            tg.start_soon(_retention_loop, broker)
            if broker.config.get("log.cleaner.enable").lower() == "true":
                tg.start_soon(_cleaner_loop, broker)
            tg.start_soon(_flush_loop, broker)
            tg.start_soon(broker.file_deleter.run)
            tg.start_soon(broker.groups.run)
            tg.start_soon(broker.consumer_groups.run)
            tg.start_soon(_expire_offsets_loop, broker)
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
    """fsync rolled segments and write the recovery point checkpoints, as Kafka's scheduler
    does; a failure is logged and tried again next time, never fatal."""
    interval = broker.config.get_int("log.flush.offset.checkpoint.interval.ms") / 1000
    while True:
        await anyio.sleep(interval)
        try:
            # Under the admin lock: topic creation and deletion change the set of logs.
            async with broker.admin_lock:
                await anyio.to_thread.run_sync(broker.logs.checkpoint)
        except Exception:
            log.exception("writing checkpoints failed; will try again")


async def _every(broker: Broker, interval_key: str, task: Callable[[], Awaitable[object]]) -> None:
    """Run ``task`` after log.initial.task.delay.ms and then every ``interval_key`` ms, as
    Kafka's LogManager schedules its periodic tasks (an interval of 0 runs it once, as Kafka's
    scheduler does); a failure is logged, never fatal."""
    interval = broker.config.get_int(interval_key) / 1000
    await anyio.sleep(broker.config.get_int("log.initial.task.delay.ms") / 1000)
    while True:
        try:
            await task()
        except Exception:
            log.exception("%s task failed; will try again", interval_key)
        if interval <= 0:
            return
        await anyio.sleep(interval)


async def _retention_loop(broker: Broker) -> None:
    """Delete old segments (Kafka's "kafka-log-retention" task)."""
    await _every(broker, "log.retention.check.interval.ms", broker.delete_old_segments)


async def _cleaner_loop(broker: Broker) -> None:
    """Compact the logs that need it (Kafka's LogCleaner threads, which back off
    log.cleaner.backoff.ms when no log needs cleaning)."""
    backoff = broker.config.get_int("log.cleaner.backoff.ms") / 1000
    while True:
        try:
            cleaned = await broker.clean_logs()
        except Exception:
            log.exception("log cleaning failed; will try again")
            cleaned = 0
        if not cleaned:
            await anyio.sleep(backoff)


async def _flush_loop(broker: Broker) -> None:
    """Apply flush.ms (Kafka's "kafka-log-flusher" task, every log.flush.scheduler.interval.ms,
    which by default is so long that it never runs)."""
    await _every(broker, "log.flush.scheduler.interval.ms", broker.flush_dirty_logs)


async def _expire_offsets_loop(broker: Broker) -> None:
    """Drop the committed offsets of empty groups after offsets.retention.minutes, as Kafka's
    offsets retention check does every offsets.retention.check.interval.ms."""
    interval = broker.config.get_int("offsets.retention.check.interval.ms") / 1000
    retention_ms = broker.config.get_int("offsets.retention.minutes") * 60_000
    while True:
        await anyio.sleep(interval)
        try:
            now_ms = int(time.time() * 1000)
            broker.offsets.expire(
                now_ms,
                retention_ms,
                lambda g: broker.groups.is_empty(g) and broker.consumer_groups.is_empty(g),
            )
        except Exception:
            log.exception("expiring committed offsets failed; will try again")
