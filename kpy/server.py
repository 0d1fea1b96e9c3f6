"""The TCP server: listeners, connections, the order responses leave in, and the limits that
keep hostile or careless clients from exhausting the broker.

Each connection is served by one task that takes the frames read so far and handles them one at
a time, as Kafka's network processor does (it mutes a channel until the response to its request
is sent). Responses therefore leave in request order without bookkeeping, and the responses to
a burst of pipelined requests go out in one write. A Fetch long poll holds back later requests
on its connection, as in Kafka; clients use separate connections where that matters.

Connections are asyncio protocols (``Connection``) on sockets that kpy's accept loops take off
the listening sockets anyio binds: the event loop hands each one the bytes it reads, which are
cut into frames at once, and the task writes responses straight to the transport. (anyio's
socket streams cost twice the CPU per request and a trip through the event loop per write.) A
response is written whole before the connection's next request is taken: the write buffer's
limit is 0, so the task waits for the kernel to accept what did not fit, and a client that does
not read stops being served, not the broker's memory growing.

Limits, as Kafka's SocketServer and Selector apply them:

- socket.request.max.bytes: a frame that declares a size above it, or a negative one, closes
  the connection as soon as its 4-byte size is read (after the responses to the requests before
  it). Nothing is allocated from a declared size: a frame's bytes are held as they arrive.
- max.connections (broker-wide and per listener), max.connections.per.ip and its overrides:
  ``kpy.connection_quotas``; the accept loop waits for a slot before it accepts.
- connections.max.idle.ms: a connection with no bytes read and no write progress for that long
  is closed (one sweep every second or less, not a timer per connection), its unsent responses
  dropped, as Kafka's Selector closes idle channels.
- Memory (``kpy.memory_pool``): a connection holding ``ALLOWANCE`` bytes of requests read and
  not yet handled stops being read (``pause_reading``, Kafka's mute) until they are handled;
  a larger request is read only under a reservation from queued.max.request.bytes. On the way
  out, responses left in write buffers count against kpy.queued.max.response.bytes, which caps
  what a Fetch reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import signal
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, cast

import anyio

from kpy import tls
from kpy.broker import ANONYMOUS, Broker
from kpy.config import BrokerConfig, Listener
from kpy.connection_quotas import Address, ConnectionQuotas, ip_key
from kpy.handlers.registry import CloseConnection
from kpy.memory_pool import ALLOWANCE, Reservation
from kpy.protocol.messages import FrameReader, ProtocolError
from kpy.sasl import Authenticator, CloseAfter, SaslSettings

log = logging.getLogger("kpy.server")

_FETCH_KEY = b"\x00\x01"
_SASL_HANDSHAKE_KEY = b"\x00\x11"
# Responses to pipelined requests are gathered into one write up to this many bytes.
_PENDING_FLUSH = 1 << 20
# accept() failures that pass with time (out of file descriptors or memory): wait, as asyncio's
# own accept loop does.
_ACCEPT_RETRY = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


# Starts a task (the task group's start_soon).
Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], Any]


@dataclass
class Network:
    """What the connections of one broker share: the connection counts and the open
    connections, which the idle sweep walks."""

    quotas: ConnectionQuotas
    open: set[Connection] = field(default_factory=set)


@dataclass(frozen=True)
class ListenerSecurity:
    """What a listener's security protocol asks of its connections (kpy.tls, kpy.sasl)."""

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


class _ConnectionLost(Exception):
    """The peer went away (or the transport failed) while a response was being written."""


class Connection(asyncio.Protocol):
    """One client connection: the event loop's callbacks cut what is read into frames and wake
    ``serve``, the connection's task (spawned with ``spawn`` when the connection is made)."""

    def __init__(
        self,
        broker: Broker,
        security: ListenerSecurity,
        spawn: Spawn,
        network: Network,
        ip: Address,
    ) -> None:
        self._broker = broker
        self._security = security
        self._listener = security.name
        self._principal = ANONYMOUS
        self._auth: Authenticator | None = None  # SASL listeners: set when the connection is made
        self._spawn = spawn
        self._network = network
        self._ip = ip
        self._transport: asyncio.Transport | None = None
        self._peer = "?"
        # Until a SASL connection authenticates, frames are limited to sasl.server.max.receive.size.
        limit = security.sasl.max_receive_size if security.sasl else broker.max_request_size
        self._reader = FrameReader(limit)
        self._frames: deque[bytes] = deque()
        self._held = 0  # bytes of the frames read and not yet handled (queued or in hand)
        self._failed: ProtocolError | None = None  # a bad frame, after those queued
        self._reserved = 0  # pool bytes reserved for the incomplete frame at the head
        self._waiter: Reservation | None = None  # waiting for that reservation
        self._paused = False
        self._pending: list[bytes] = []  # responses not yet written
        self._pending_bytes = 0
        self._unsent = 0  # bytes of the last write the kernel had not taken
        self._readable = asyncio.Event()  # frames queued, end of stream or connection lost
        self._writable = asyncio.Event()  # the write buffer is empty
        self._writable.set()
        self._eof = False
        self._lost = False
        self.made = False
        self.last_active = time.monotonic()

    # --- The event loop's callbacks -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is one, not a subclass of it
        self._transport = transport
        self.made = True
        self._network.open.add(self)
        # pause_writing whenever a write did not all fit: high 1, low 0. Not 0: a TLS transport
        # (asyncio's sslproto and uvloop's) pauses at a size >= the high-water mark (a socket
        # transport above it), so with 0 it paused with nothing buffered and resumed only when
        # something else passed through it, holding a response back until the next request.
        transport.set_write_buffer_limits(high=1, low=0)
        address = transport.get_extra_info("peername")
        self._peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._security.sasl is not None:
            self._auth = Authenticator(self._broker, self._security.sasl, self._peer)
        elif self._security.protocol == "SSL":
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
        self.last_active = time.monotonic()
        if self._failed is not None:
            return
        try:
            self._reader.feed(data)
            for frame in self._reader.frames():
                self._queue(frame)
        except ProtocolError as e:  # a size above socket.request.max.bytes, or negative
            self._failed = e
            self._reader = FrameReader(0)  # drop what follows the bad size
            self._readable.set()
            self._set_paused(True)
            return
        self._check_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._readable.set()
        # Keep the transport open: the responses to what was read still go out. (A TLS
        # transport closes at the peer's close_notify whatever this returns.)
        return self._security.ssl is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._network.open.discard(self)
        self._network.quotas.dec(self._listener, self._ip)
        pool = self._broker.request_pool
        if self._waiter is not None:
            pool.cancel(self._waiter)
            self._waiter = None
        if self._reserved:
            pool.release(self._reserved)
            self._reserved = 0
        self._reader = FrameReader(0)  # an incomplete frame will never be
        self._readable.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --- Memory held by requests read ahead -----------------------------------------------

    def _queue(self, frame: bytes) -> None:
        size = len(frame)
        if size > ALLOWANCE:  # it holds a reservation from here until it has been handled
            if self._reserved:
                self._reserved = 0
            else:  # it came whole in one read, before a reservation could be asked for
                self._broker.request_pool.take(size)
        self._held += size
        self._frames.append(frame)
        self._readable.set()

    def _handled(self, size: int) -> None:
        self._held -= size
        if size > ALLOWANCE:
            self._broker.request_pool.release(size)
        if not self._lost:
            self._check_reading()

    def _check_reading(self) -> None:
        """Go on reading while the connection holds less than ``ALLOWANCE`` bytes of requests
        (plus the one being read under a reservation), and always while it holds none but the
        incomplete one (which is then at most ``ALLOWANCE`` or its reservation); a larger
        request waits for its reservation before more of it is read."""
        size = self._reader.next_size
        if size is not None and size > ALLOWANCE and not self._reserved and not self._waiter:
            self._waiter = self._broker.request_pool.reserve(size, self._granted)
            if self._waiter is None:
                self._reserved = size
        held = self._held
        full = held > 0 and held + self._reader.buffered >= ALLOWANCE + self._reserved
        self._set_paused(self._waiter is not None or full)

    def _granted(self) -> None:
        assert self._waiter is not None
        self._reserved = self._waiter.size
        self._waiter = None
        self._check_reading()

    def _set_paused(self, paused: bool) -> None:
        transport = self._transport
        if paused == self._paused or transport is None or transport.is_closing():
            return
        self._paused = paused
        if paused:
            transport.pause_reading()
        else:
            transport.resume_reading()

    # --- Idle connections -----------------------------------------------------------------

    def close_if_idle(self, now: float, max_idle: float) -> bool:
        """Close the connection if nothing was read from it and its writes made no progress
        for ``max_idle`` seconds; True if it was closed."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        if self._unsent:
            left = transport.get_write_buffer_size()
            if left < self._unsent:  # the client took some: that is activity
                self._unsent = left
                self.last_active = now
        if now - self.last_active <= max_idle:
            return False
        log.debug("closing connection from %s: idle for %.0f s", self._peer, now - self.last_active)
        transport.abort()  # what is buffered is dropped: the client does not read it
        return True

    # --- The connection's task ------------------------------------------------------------

    async def serve(self) -> None:
        transport = self._transport
        assert transport is not None
        # Responses to the frames queued together are sent together, except that those ready
        # before a Fetch (which may wait) leave first, and all that are ready leave before a
        # close.
        try:
            try:
                while await self._next_frames():
                    while self._frames:
                        await self._handle(self._frames.popleft())
                    if self._pending:
                        await self._write()
            except CloseAfter as e:
                # A failed authentication: its answer, if any, after the delay Kafka applies.
                log.info("closing connection from %s: %s", self._peer, e)
                if self._pending:
                    await self._write()
                assert self._auth is not None
                await anyio.sleep(self._auth.failure_delay)
                if e.response is not None:
                    self._pending.append(e.response)
                    await self._write()
            except (ProtocolError, CloseConnection) as e:
                if self._pending:
                    await self._write()
                log.info("closing connection from %s: %s", self._peer, e)
        except _ConnectionLost:
            pass
        except OSError as e:
            log.debug("connection from %s failed: %s", self._peer, e)
        except Exception:
            log.exception("unexpected error serving %s; closing its connection", self._peer)
        finally:
            while self._frames:  # left unhandled: give back what they hold
                self._handled(len(self._frames.popleft()))
            transport.close()  # what is buffered still goes out first

    async def _handle(self, frame: bytes) -> None:
        try:
            if self._auth is not None and not await self._authenticated(self._auth, frame):
                return
            if self._pending and frame[:2] == _FETCH_KEY:
                await self._write()
            response = await self._broker.dispatch(
                frame, self._peer, self._listener, self._principal
            )
        finally:
            self._handled(len(frame))
        if response is not None:
            self._pending.append(response)
            self._pending_bytes += len(response)
            if self._pending_bytes >= _PENDING_FLUSH:
                await self._write()

    async def _authenticated(self, auth: Authenticator, frame: bytes) -> bool:
        """SASL: True when ``frame`` is a request for the broker; False when it belonged to
        (re-)authentication, whose answer is queued. Raises CloseAfter when the
        authentication fails, ProtocolError when the session has expired."""
        if auth.complete:
            now = time.monotonic()
            if auth.expired(now):
                raise ProtocolError("the SASL session expired (connections.max.reauth.ms)")
            if frame[:2] != _SASL_HANDSHAKE_KEY or not auth.begin_reauthentication(now):
                return True
        response = await auth.receive(frame)
        if response is not None:
            self._pending.append(response)
            self._pending_bytes += len(response)
        if auth.complete:
            self._principal = auth.principal
            self._reader.max_size = self._broker.max_request_size
        return False

    async def _next_frames(self) -> bool:
        """Wait for frames; False at the end of the stream, the bad frame's error after the
        frames before it."""
        while not self._frames:
            if self._failed is not None:
                raise self._failed
            if self._eof or self._lost:
                return False
            self._readable.clear()
            await self._readable.wait()
        return True

    async def _write(self) -> None:
        pending = self._pending
        data = b"".join(pending) if len(pending) > 1 else pending[0]
        pending.clear()
        self._pending_bytes = 0
        transport = self._transport
        if self._lost or transport is None or transport.is_closing():
            raise _ConnectionLost
        transport.write(data)
        del data
        if not self._writable.is_set():
            # The kernel did not take it all: what is left counts against the response memory
            # until the client has read it.
            unsent = self._unsent = transport.get_write_buffer_size()
            memory = self._broker.response_memory
            memory.hold(unsent)
            try:
                await self._writable.wait()
            finally:
                memory.release(unsent)
                self._unsent = 0
        self.last_active = time.monotonic()
        if self._lost:
            raise _ConnectionLost


async def _accept_loop(
    broker: Broker,
    network: Network,
    security: ListenerSecurity,
    sock: socket.socket,
    spawn: Spawn,
) -> None:
    """Kafka's acceptor: wait for a connection slot, accept, count the connection against its
    IP address (closing it at once past that address's limit), and serve it (on a TLS
    listener after its handshake, which runs in a task of its own so that a client that
    never completes one holds up no other)."""
    loop = asyncio.get_running_loop()
    listener = security.name
    quotas = network.quotas
    send_buffer = broker.config.get_int("socket.send.buffer.bytes")
    while True:
        await quotas.wait_for_slot(listener)
        try:
            conn, address = await loop.sock_accept(sock)
        except OSError as e:
            if e.errno in _ACCEPT_RETRY:
                log.error("accepting connections on %s failed (%s); again in 1 s", listener, e)
                await anyio.sleep(1)
            continue
        if send_buffer != -1:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        ip = ip_key(str(address[0]) if isinstance(address, tuple) else str(address))
        await quotas.refresh()
        # Another listening socket's loop may have taken the slot meanwhile: then this one
        # waits, accepted but not served, as it would have in the backlog.
        await quotas.wait_for_slot(listener)
        if not quotas.inc(listener, ip):
            log.info(
                "Rejected connection from %s, address already has the configured maximum of "
                "%d connections.",
                ip,
                quotas.limit_for(ip),
            )
            conn.close()
            continue
        connection = Connection(broker, security, spawn, network, ip)
        if security.ssl is None:
            await _connect(loop, connection, conn, security, quotas, ip)
        else:
            spawn(functools.partial(_connect, loop, connection, conn, security, quotas, ip))


async def _connect(
    loop: asyncio.AbstractEventLoop,
    connection: Connection,
    conn: socket.socket,
    security: ListenerSecurity,
    quotas: ConnectionQuotas,
    ip: Address,
) -> None:
    try:
        await loop.connect_accepted_socket(
            functools.partial(_same, connection), conn, ssl=security.ssl
        )
    except Exception as e:  # the socket (or its TLS handshake) failed before it was served
        log.debug("connection from %s failed at once: %s", ip, e)
        if not connection.made:
            conn.close()
            quotas.dec(security.name, ip)


def _same(connection: Connection) -> Connection:
    return connection


async def _reap_idle(broker: Broker, network: Network) -> None:
    """connections.max.idle.ms (negative: never): one sweep of the open connections every
    tenth of it, at most every second, closing those idle for longer."""
    max_idle_ms = broker.config.get_int("connections.max.idle.ms")
    if max_idle_ms < 0:
        return
    max_idle = max_idle_ms / 1000
    interval = min(max(max_idle / 10, 0.01), 1.0)
    while True:
        await anyio.sleep(interval)
        now = time.monotonic()
        for connection in list(network.open):
            connection.close_if_idle(now, max_idle)


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
    sockets: list[anyio.abc.SocketListener] = []
    try:
        network = Network(ConnectionQuotas(config))
        await network.quotas.refresh()
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
            receive_buffer = config.get_int("socket.receive.buffer.bytes")
            for name, s in by_listener:
                raw = s.extra(anyio.abc.SocketAttribute.raw_socket)
                if receive_buffer != -1:  # accepted connections inherit it
                    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
                tg.start_soon(_accept_loop, broker, network, security[name], raw, tg.start_soon)
            tg.start_soon(_reap_idle, broker, network)
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
                tg.cancel_scope.cancel()
            elif ready is not None:
                ready(broker, bound)
    finally:
        with anyio.CancelScope(shield=True):
            for s in sockets:  # no new connections; the open ones closed as their tasks ended
                await s.aclose()
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
