"""The ``kpy`` command: ``kpy serve`` runs a broker with Kafka's configuration names.

The broker's modules (and kio with them) are imported only once the command line is read, after
``_hide_hypothesis``: start-up time is one of the figures a broker is judged by.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import time


def _parse_override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--override takes key=value, not {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


# Environment variables of Apache Kafka's Docker image that are not broker settings.
_NOT_SETTINGS = {
    "KAFKA_VERSION",
    "KAFKA_HEAP_OPTS",
    "KAFKA_LOG4J_OPTS",
    "KAFKA_OPTS",
    "KAFKA_JMX_OPTS",
    "KAFKA_JVM_PERFORMANCE_OPTS",
    "KAFKA_GC_LOG_OPTS",
    "KAFKA_LOG4J_ROOT_LOGLEVEL",
    "KAFKA_LOG4J_LOGGERS",
    "KAFKA_TOOLS_LOG4J_LOGLEVEL",
    "KAFKA_JMX_HOSTNAME",
}


def config_from_env(environ: dict[str, str]) -> dict[str, str]:
    """Broker settings from KAFKA_* environment variables, as Apache Kafka's Docker image reads
    them (KafkaDockerWrapper): the rest of the name lower-cased, "_" -> ".", "___" -> "-",
    "__" -> "_" (KAFKA_LOG_DIRS -> log.dirs). Without KAFKA_LISTENERS, the listeners are the
    advertised ones on 0.0.0.0, as that image's scripts derive them."""
    out = {}
    for name, value in environ.items():
        if not name.startswith("KAFKA_") or name in _NOT_SETTINGS:
            continue
        key = name[len("KAFKA_") :].lower().replace("_", ".")
        out[key.replace("...", "-").replace("..", "_")] = value
    if "listeners" not in out and out.get("advertised.listeners"):
        out["listeners"] = re.sub(r"://[^:,]*:", "://0.0.0.0:", out["advertised.listeners"])
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kpy", description="A single-node Kafka broker.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the broker")
    serve.add_argument("--config", metavar="FILE", help="a server.properties file")
    serve.add_argument(
        "--override",
        metavar="KEY=VALUE",
        action="append",
        type=_parse_override,
        default=[],
        help="set one configuration key (repeatable), as kafka-server-start's --override",
    )
    serve.add_argument(
        "--config-from-env",
        action="store_true",
        help="read settings from KAFKA_* environment variables as Apache Kafka's Docker image "
        "does (KAFKA_ADVERTISED_LISTENERS -> advertised.listeners); --override wins",
    )
    serve.add_argument("--port", type=int, help="listen on 127.0.0.1:PORT (0 picks a free port)")
    serve.add_argument("--host", help="listen on this address (default 127.0.0.1)")
    serve.add_argument("--data-dir", help="where the logs live (log.dirs; default ./kpy-data)")
    serve.add_argument(
        "--in-memory",
        action="store_true",
        help="keep the logs and every other file in memory: nothing is written to disk and "
        "nothing survives the process (kpy.storage.in.memory=true)",
    )
    serve.add_argument(
        "--add-scram",
        metavar="MECHANISM=[name=USER,password=PASSWORD]",
        action="append",
        default=[],
        help="give a user SCRAM credentials at start (repeatable), as kafka-storage format "
        "--add-scram: SCRAM-SHA-256=[name=alice,password=alice-secret] (kpy.add.scram)",
    )
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines (default) or one JSON object per line, for log collectors",
    )
    wait = sub.add_parser(
        "wait",
        help="wait until a Kafka broker (kpy or any other) answers ApiVersions and Metadata",
    )
    wait.add_argument(
        "--bootstrap",
        required=True,
        metavar="HOST:PORT[,HOST:PORT...]",
        help="the broker(s) to ask; ready when any one answers",
    )
    wait.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="give up after S seconds (30)"
    )
    wait.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    return parser


def raise_file_limit() -> None:
    """Lift the soft open-file limit to the hard one: every segment keeps its .log open and
    every connection is a descriptor, and 1024 (a common default) is soon reached. Kafka's
    documentation asks operators for the same (100,000 or more)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _hide_hypothesis() -> None:
    """Load kio without hypothesis. kio registers a hypothesis strategy for each of its types
    when it can import hypothesis (an aid for kio's own property tests); where hypothesis is
    installed (kpy's test extra) that import and the registrations cost the broker about a
    fifth of a second of start-up and serve it nothing. A process that has imported hypothesis
    already (a test run) keeps it."""
    if "hypothesis" in sys.modules or "kio.static._phantom" in sys.modules:
        return
    sys.modules["hypothesis"] = None  # type: ignore[assignment]  # import hypothesis: ImportError
    try:
        import kio.static._phantom  # noqa: F401
    finally:
        del sys.modules["hypothesis"]


def configure_logging(level: str, fmt: str) -> None:
    """Log to standard error: text lines, or JSON objects (time, level, logger, message and
    the traceback as exc_info) with ``fmt="json"``."""
    handler = logging.StreamHandler()
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))


def serve(args: argparse.Namespace) -> int:
    started = time.monotonic()
    _hide_hypothesis()
    import anyio

    from kpy.config import BrokerConfig, ConfigError

    raise_file_limit()
    overrides = config_from_env(dict(os.environ)) if args.config_from_env else {}
    overrides.update(args.override)
    if args.port is not None or args.host is not None:
        host = args.host or "127.0.0.1"
        port = 9092 if args.port is None else args.port
        overrides["listeners"] = f"PLAINTEXT://{host}:{port}"
    if args.data_dir is not None:
        overrides["log.dirs"] = args.data_dir
    if args.in_memory:
        overrides["kpy.storage.in.memory"] = "true"
    if args.add_scram:
        overrides["kpy.add.scram"] = ";".join(args.add_scram)
    try:
        config = BrokerConfig.load(args.config, overrides)
    except (ConfigError, OSError) as e:
        print(f"kpy: bad configuration: {e}", file=sys.stderr)
        return 2

    from kpy import server

    def ready(broker: object, bound: list[tuple[str, int]]) -> None:
        where = ", ".join(f"{h}:{p}" for h, p in bound)
        ms = (time.monotonic() - started) * 1000
        data = "memory" if config.in_memory else config.data_dir.resolve()
        print(f"kpy listening on {where}, data in {data} (ready in {ms:.0f} ms)", flush=True)

    backend_options = {}
    try:
        import uvloop  # noqa: F401

        backend_options["use_uvloop"] = True
    except ImportError:
        pass
    from kpy.acl import AclFileError

    try:
        anyio.run(lambda: server.run(config, ready=ready), backend_options=backend_options)
    except (OSError, AclFileError) as e:
        print(f"kpy: {e}", file=sys.stderr)
        return 1
    return 0


def wait(args: argparse.Namespace) -> int:
    """Exit 0 once a broker is ready, 1 on timeout, 2 on a bad address."""
    _hide_hypothesis()
    from kpy import client

    try:
        bootstraps = [b for b in args.bootstrap.split(",") if b.strip()]
        for b in bootstraps:
            client.split_address(b)
    except ValueError as e:
        print(f"kpy wait: {e}", file=sys.stderr)
        return 2
    try:
        ready = client.wait(bootstraps, args.timeout)
    except TimeoutError as e:
        print(f"kpy wait: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(
            f"ready: {ready.bootstrap} ({ready.brokers} broker(s), cluster {ready.cluster_id})",
            flush=True,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        configure_logging(args.log_level, args.log_format)
        return serve(args)
    if args.command == "wait":
        return wait(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
