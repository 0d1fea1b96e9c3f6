"""The TCP server: listeners, connections, and the order responses leave in.

Each connection is served by one task that takes the frames read so far and handles them one at
a time, as Kafka's network processor does (it mutes a channel until the response to its request
is sent). Responses therefore leave in request order without bookkeeping, and the responses to
a burst of pipelined requests go out in one write. A Fetch long poll holds back later requests
on its connection, as in Kafka; clients use separate connections where that matters.

Connections are asyncio protocols (``Connection``) on the listening sockets anyio binds: the
event loop hands each one the bytes it reads and the task writes responses straight to the
transport. (anyio's socket streams cost twice the CPU per request and a trip through the event
loop per write.) A response is written whole before the connection's next request is taken:
the write buffer's limit is 0, so the task waits for the kernel to accept what did not fit,
and a client that does not read stops being served, not the broker's memory growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import anyio

from kpy import tls
from kpy.broker import ANONYMOUS, Broker
from kpy.config import BrokerConfig, Listener
from kpy.handlers.registry import CloseConnection
from kpy.protocol.messages import FrameReader, ProtocolError
from kpy.sasl import Authenticator, CloseAfter, SaslSettings

log = logging.getLogger("kpy.server")

_FETCH_KEY = b"\x00\x01"
_SASL_HANDSHAKE_KEY = b"\x00\x11"


@dataclass(frozen=True)
class ListenerSecurity:
    """What a listener's security protocol asks of its connections."""

    name: str
    protocol: str  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    ssl: ssl.SSLContext | None
    sasl: SaslSettings | None
    map_name: Callable[[str], str]  # ssl.principal.mapping.rules

    @classmethod
    def load(cls, config: BrokerConfig, listener: str) -> ListenerSecurity:
        protocol = tls.security_protocol(config, listener)
        return cls(
            listener,
            protocol,
            tls.server_context(config, listener) if protocol in tls.SSL_PROTOCOLS else None,
            SaslSettings.load(config, listener) if protocol in tls.SASL_PROTOCOLS else None,
            tls.parse_mapping_rules(
                tls.listener_setting(config, listener, "ssl.principal.mapping.rules")
            ),
        )


# Starts a task (the task group's start_soon).
Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], Any]


class _ConnectionLost(Exception):
    """The peer went away (or the transport failed) while a response was being written."""


class Connection(asyncio.Protocol):
    """One client connection: the event loop's callbacks queue what is read and wake
    ``serve``, the connection's task (spawned with ``spawn`` when the connection is made)."""

    def __init__(self, broker: Broker, security: ListenerSecurity, spawn: Spawn) -> None:
        self._broker = broker
        self._security = security
        self._listener = security.name
        self._principal = ANONYMOUS
        self._spawn = spawn
        self._transport: asyncio.Transport | None = None
        self._peer = "?"
        self._chunks: list[bytes] = []
        self._readable = asyncio.Event()  # chunks queued, end of stream or connection lost
        self._writable = asyncio.Event()  # the write buffer is empty
        self._writable.set()
        self._eof = False
        self._lost = False

    # --- The event loop's callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is one, not a subclass of it
        self._transport = transport
        transport.set_write_buffer_limits(0)  # pause_writing whenever a write did not all fit
        address = transport.get_extra_info("peername")
        self._peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._security.protocol == "SSL":
            try:
                self._principal = tls.peer_principal(
                    transport.get_extra_info("ssl_object"), self._security.map_name
                )
            except tls.NoMatchingRule as e:
                log.info("closing connection from %s: %s", self._peer, e)
                transport.close()
                return
        try:
            self._spawn(self.serve)
        except RuntimeError:  # the broker is shutting down: its task group takes no new task
            transport.close()

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._readable.set()

    def eof_received(self) -> bool:
        self._eof = True
        self._readable.set()
        # Keep the transport open: the responses to what was read still go out. (A TLS
        # transport closes at the peer's close_notify whatever this returns.)
        return self._security.ssl is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._readable.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --- The connection's task ------------------------------------------------------------

    async def serve(self) -> None:
        transport = self._transport
        assert transport is not None
        reader = FrameReader(self._broker.max_request_size)
        auth: Authenticator | None = None
        if self._security.sasl is not None:
            auth = Authenticator(self._broker, self._security.sasl, self._peer)
            reader.max_size = auth.max_frame
        # Responses to the frames of one read are sent together, except that those ready before
        # a Fetch (which may wait) leave first, and all that are ready leave before a close.
        pending: list[bytes] = []
        try:
            try:
                while await self._read(reader):
                    for frame in reader.frames():
                        if auth is not None and not await self._authenticated(
                            auth, frame, reader, pending
                        ):
                            continue
                        if pending and frame[:2] == _FETCH_KEY:
                            await self._write(pending)
                        response = await self._broker.dispatch(
                            frame, self._peer, self._listener, self._principal
                        )
                        if response is not None:
                            pending.append(response)
                    if pending:
                        await self._write(pending)
            except CloseAfter as e:
                # A failed authentication: its answer, if any, after the delay Kafka applies.
                log.info("closing connection from %s: %s", self._peer, e)
                if pending:
                    await self._write(pending)
                assert auth is not None
                await anyio.sleep(auth.failure_delay)
                if e.response is not None:
                    await self._write([e.response])
            except (ProtocolError, CloseConnection) as e:
                if pending:
                    await self._write(pending)
                log.info("closing connection from %s: %s", self._peer, e)
        except _ConnectionLost:
            pass
        except OSError as e:
            log.debug("connection from %s failed: %s", self._peer, e)
        except Exception:
            log.exception("unexpected error serving %s; closing its connection", self._peer)
        finally:
            transport.close()  # what is buffered still goes out first

    async def _authenticated(
        self, auth: Authenticator, frame: bytes, reader: FrameReader, pending: list[bytes]
    ) -> bool:
        """SASL: True when ``frame`` is a request for the broker; False when it belonged to
        (re-)authentication, whose answer joins ``pending``. Raises CloseAfter when the
        authentication fails, ProtocolError when the session has expired."""
        if auth.complete:
            now = time.monotonic()
            if auth.expired(now):
                raise ProtocolError("the SASL session expired (connections.max.reauth.ms)")
            if frame[:2] != _SASL_HANDSHAKE_KEY or not auth.begin_reauthentication(now):
                return True
        response = await auth.receive(frame)
        if response is not None:
            pending.append(response)
        if auth.complete:
            self._principal = auth.principal
            reader.max_size = self._broker.max_request_size
        return False

    async def _read(self, reader: FrameReader) -> bool:
        """Wait for bytes and feed them to ``reader``; False at the end of the stream."""
        while not self._chunks:
            if self._eof or self._lost:
                return False
            self._readable.clear()
            await self._readable.wait()
        chunks, self._chunks = self._chunks, []
        for chunk in chunks:
            reader.feed(chunk)
        return True

    async def _write(self, pending: list[bytes]) -> None:
        data = b"".join(pending) if len(pending) > 1 else pending[0]
        pending.clear()
        transport = self._transport
        if self._lost or transport is None or transport.is_closing():
            raise _ConnectionLost
        transport.write(data)
        if not self._writable.is_set():
            await self._writable.wait()
        if self._lost:
            raise _ConnectionLost


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
    servers: list[asyncio.AbstractServer] = []
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

        security = {lst.name: ListenerSecurity.load(config, lst.name) for lst in config.listeners}
        async with anyio.create_task_group() as tg:
            loop = asyncio.get_running_loop()
            for name, s in by_listener:
                servers.append(
                    await loop.create_server(
                        _protocol_factory(broker, security[name], tg.start_soon),
                        sock=s.extra(anyio.abc.SocketAttribute.raw_socket),
                        ssl=security[name].ssl,
                    )
                )
            tg.start_soon(_checkpoint_loop, broker)
            tg.start_soon(_retention_loop, broker)
            if broker.config.get("log.cleaner.enable").lower() == "true":
                tg.start_soon(_cleaner_loop, broker)
            tg.start_soon(_flush_loop, broker)
            tg.start_soon(broker.file_deleter.run)
            tg.start_soon(broker.groups.run)
            tg.start_soon(broker.consumer_groups.run)
            tg.start_soon(_expire_offsets_loop, broker)
            tg.start_soon(_transactions_loop, broker, False)
            tg.start_soon(_transactions_loop, broker, True)
            if handle_signals:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    # Ready only now: a SIGTERM sent as soon as the ready line is read must
                    # find the handler, not the default action (an unclean stop).
                    if ready is not None:
                        ready(broker, bound)
                    async for signum in signals:
                        log.info("received %s, shutting down", signal.Signals(signum).name)
                        break
                for server in servers:
                    server.close()
                tg.cancel_scope.cancel()
            elif ready is not None:
                ready(broker, bound)
    finally:
        for server in servers:
            server.close()  # no new connections; the open ones closed as their tasks ended
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(broker.close)
            log.info("stopped cleanly")


def _protocol_factory(
    broker: Broker, security: ListenerSecurity, spawn: Spawn
) -> Callable[[], Connection]:
    return lambda: Connection(broker, security, spawn)


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


async def _transactions_loop(broker: Broker, expiry: bool) -> None:
    """The transaction coordinator's periodic work: abort transactions past their timeout
    (and retry markers that could not be written) every
    transaction.abort.timed.out.transaction.cleanup.interval.ms, or (``expiry``) forget
    transactional ids idle for transactional.id.expiration.ms, checked every
    transaction.remove.expired.transaction.cleanup.interval.ms."""
    if expiry:
        key = "transaction.remove.expired.transaction.cleanup.interval.ms"
        task = broker.transactions.expire_transactional_ids
    else:
        key = "transaction.abort.timed.out.transaction.cleanup.interval.ms"
        task = broker.transactions.abort_timed_out
    interval = broker.config.get_int(key) / 1000
    while True:
        await anyio.sleep(interval)
        try:
            task(int(time.time() * 1000))
        except Exception:
            log.exception("%s task failed; will try again", key)
