"""The benchmark runner: ``python -m bench [--quick] [--brokers kpy,kafka,sink] [--only W,...]
[--out DIR]``.

It imports every module of bench/workloads and reads its ``WORKLOADS``. For each module in turn
and each broker the module's workloads run against, it starts that broker once on a fresh data
directory, runs the workloads against it one after the other, and stops it (also when a
workload fails). kpy's and Kafka's runs of one module thus come back to back, so that drift in
the machine's load between them stays small. A workload with ``starts_broker`` gets an unstarted
broker and starts its own.

Progress goes to stderr. At the end it writes results.md, results.json and results.png to the
output directory (bench/report.py). A workload that fails is reported with its error and the
others go on; the exit status is then 1.

The sink (bench/sink.py) is imported only when asked for; without it the sink column is left
out with a note.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import workloads as workloads_package
from bench.core import (
    ROOT,
    Broker,
    Context,
    KafkaBroker,
    KpyBroker,
    Measurement,
    Scale,
    Workload,
    compile_kpy,
    kafka_libs,
    new_workdir,
)
from bench.report import machine_info, write

# The table follows the order; a module not named here comes after, by name.
ORDER = ["produce", "consume", "latency", "startup", "scale"]
BROKERS = ("kpy", "kafka", "sink")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="kpy against Apache Kafka, on this machine"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run (smoke test)")
    parser.add_argument(
        "--brokers", default=",".join(BROKERS), help="comma-separated: kpy, kafka, sink"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated workload or module names (default: all)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--keep", action="store_true", help="keep the brokers' data and logs (path printed)"
    )
    args = parser.parse_args(argv)
    args.brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    unknown = set(args.brokers) - set(BROKERS)
    if unknown:
        parser.error(f"unknown broker(s): {', '.join(sorted(unknown))}")
    args.only = {w.strip() for w in args.only.split(",") if w.strip()}
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def broker_classes(names: list[str]) -> dict[str, type[Broker]]:
    """The brokers asked for, in the order asked; the sink only if bench/sink.py imports."""
    classes: dict[str, type[Broker]] = {}
    for name in names:
        if name == "kpy":
            classes[name] = KpyBroker
        elif name == "kafka":
            kafka_libs()  # fail now, with the fix, rather than at the first Kafka workload
            classes[name] = KafkaBroker
        else:
            try:
                sink: ModuleType = importlib.import_module("bench.sink")
                classes[name] = sink.SinkBroker
            except (ImportError, AttributeError) as e:
                log(f"note: no sink broker ({e}); the sink column is left out")
    return classes


def discover(only: set[str]) -> list[tuple[str, list[Workload]]]:
    """(module name, its workloads) for every bench/workloads module, filtered by ``only``."""
    names = [m.name for m in pkgutil.iter_modules(workloads_package.__path__)]
    names = [n for n in names if not n.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    groups = []
    known = set(names)
    for name in names:
        module = importlib.import_module(f"bench.workloads.{name}")
        found: list[Workload] = list(module.WORKLOADS)
        known.update(w.name for w in found)
        if only and name not in only:
            found = [w for w in found if w.name in only]
        if found:
            groups.append((name, found))
    if only - known:
        log(f"note: no workload or module named {', '.join(sorted(only - known))}")
    return groups


class Run:
    """One benchmark run: what was measured and what failed."""

    def __init__(self, scale: Scale, root: Path) -> None:
        self.scale = scale
        self.root = root
        self.measurements: list[Measurement] = []
        self.errors: list[dict[str, str]] = []
        self.began = time.monotonic()

    def logger(self, broker: str, workload: str) -> Callable[[str], None]:
        def emit(message: str) -> None:
            log(f"[{time.monotonic() - self.began:7.1f} s] {broker:5} {workload}: {message}")

        return emit

    def fail(self, broker: Broker, workload: str, error: BaseException) -> None:
        self.logger(broker.name, workload)(f"FAILED: {error!r}")
        log("".join(traceback.format_exception(error)).rstrip())
        tail = ""
        if broker.log_path.exists():
            tail = broker.log_path.read_bytes()[-2000:].decode(errors="replace")
            log(f"--- last lines of {broker.log_path}:\n{tail}")
        self.errors.append(
            {"broker": broker.name, "workload": workload, "error": repr(error), "log": tail}
        )

    def workload(self, broker: Broker, w: Workload, scratch: Path) -> None:
        ctx = Context(broker, self.scale, scratch, self.logger(broker.name, w.name))
        ctx.log("start")
        try:
            found = w.run(ctx)
        except Exception as e:
            self.fail(broker, w.name, e)
            return
        for m in found:
            m.broker = broker.name
        self.measurements.extend(found)
        ctx.log(f"done, {len(found)} figures")

    def group(self, module: str, name: str, cls: type[Broker], ws: list[Workload]) -> None:
        """The module's workloads against one broker, started once for those that share it."""
        workdir = self.root / f"{module}-{name}"
        for w in ws:
            if w.starts_broker:
                self.workload(cls(workdir / w.name), w, workdir / w.name)
        shared = [w for w in ws if not w.starts_broker]
        if not shared:
            return
        broker = cls(workdir)
        try:
            self.logger(name, module)("starting the broker")
            broker.start()
            for w in shared:
                self.workload(broker, w, workdir / "scratch")
        except Exception as e:
            self.fail(broker, module, e)
        finally:
            broker.stop()
        self.logger(name, module)("broker stopped")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scale = Scale.quick() if args.quick else Scale.full()
    try:
        classes = broker_classes(args.brokers)
    except RuntimeError as e:
        log(f"error: {e}")
        return 2
    groups = discover(args.only)
    if not groups:
        log(f"error: no workload matches --only {','.join(sorted(args.only))}")
        return 2
    if "kpy" in classes:
        compile_kpy()
    root = new_workdir("kpy-bench-")
    run = Run(scale, root)
    date = datetime.now(UTC).isoformat(timespec="seconds")
    log(f"bench: scale {scale.name}, brokers {', '.join(classes)}, work in {root}")
    try:
        for module, ws in groups:
            for name, cls in classes.items():
                selected = [w for w in ws if name in w.brokers]
                if selected:
                    run.group(module, name, cls, selected)
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    meta: dict[str, Any] = {
        "date": date,
        "seconds": round(time.monotonic() - run.began, 1),
        "scale": asdict(scale),
        "brokers": list(classes),
        "workloads": [w.name for _, ws in groups for w in ws],
        "machine": machine_info(),
        "errors": run.errors,
    }
    write(args.out, run.measurements, meta, with_sink="sink" in classes)
    log(f"bench: wrote {args.out}/results.md, results.json, results.png")
    print((args.out / "results.md").read_text())
    return 1 if run.errors else 0
