"""The ``kpy`` command: ``kpy serve`` runs a broker with Kafka's configuration names.

The broker's modules (and kio with them) are imported only once the command line is read, after
``_hide_hypothesis``: start-up time is one of the figures a broker is judged by.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time


def _parse_override(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--override takes key=value, not {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


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
    serve.add_argument("--port", type=int, help="listen on 127.0.0.1:PORT (0 picks a free port)")
    serve.add_argument("--host", help="listen on this address (default 127.0.0.1)")
    serve.add_argument("--data-dir", help="where the logs live (log.dirs; default ./kpy-data)")
    serve.add_argument(
        "--in-memory",
        action="store_true",
        help="keep the logs and every other file in memory: nothing is written to disk and "
        "nothing survives the process (kpy.storage.in.memory=true)",
    )
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
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


def serve(args: argparse.Namespace) -> int:
    started = time.monotonic()
    _hide_hypothesis()
    import anyio

    from kpy.config import BrokerConfig, ConfigError

    raise_file_limit()
    overrides = dict(args.override)
    if args.port is not None or args.host is not None:
        host = args.host or "127.0.0.1"
        port = 9092 if args.port is None else args.port
        overrides["listeners"] = f"PLAINTEXT://{host}:{port}"
    if args.data_dir is not None:
        overrides["log.dirs"] = args.data_dir
    if args.in_memory:
        overrides["kpy.storage.in.memory"] = "true"
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
    try:
        anyio.run(lambda: server.run(config, ready=ready), backend_options=backend_options)
    except OSError as e:
        print(f"kpy: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        return serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
