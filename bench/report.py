"""The benchmark's results: one table of kpy's and Kafka's figures, as markdown, JSON and a chart.

A table row is one (row, unit) of the measurements: kpy's figure, Apache Kafka's, the ratio
kpy/Kafka, and the sink's figure where the workload ran against the sink. The ratio reads with
the row's ``better``: above 1.0 kpy is faster on a "higher" row (throughput); below 1.0 kpy is
quicker or smaller on a "lower" row (latency, time, memory).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.core import KAFKA_VERSION, ROOT, Measurement


@dataclass
class Row:
    row: str
    unit: str
    better: str
    values: dict[str, float]  # broker name -> figure

    @property
    def ratio(self) -> float | None:
        kpy, kafka = self.values.get("kpy"), self.values.get("kafka")
        if kpy is None or not kafka:
            return None
        return kpy / kafka

    @property
    def kpy_better(self) -> bool | None:
        """Whether kpy's figure is at least as good as Kafka's (None without both)."""
        r = self.ratio
        if r is None:
            return None
        return r >= 1.0 if self.better == "higher" else r <= 1.0


def table(measurements: list[Measurement]) -> list[Row]:
    """Rows in the order the workloads first reported them, each broker's figure in its row."""
    rows: dict[tuple[str, str], Row] = {}
    for m in measurements:
        key = (m.row, m.unit)
        if key not in rows:
            rows[key] = Row(m.row, m.unit, m.better, {})
        rows[key].values[m.broker] = m.value
    return list(rows.values())


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1 or size == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.3f}"


def markdown(rows: list[Row], meta: dict[str, Any], with_sink: bool) -> str:
    scale = meta["scale"]
    machine = meta["machine"]
    lines = [
        f"# kpy against Apache Kafka {machine['kafka_version']}",
        "",
        f"{meta['date']}, scale {scale['name']} ({scale['small_records']:,} x 100 B, "
        f"{scale['large_records']:,} x 1 KB, {scale['latency_messages']:,} latency records, "
        f"median of {scale['repeats']} run(s)); {machine['cpu_count']} CPUs "
        f"({machine['cpu_model']}), Python {machine['python']}, {machine['java']}, "
        f"kpy {machine['kpy_commit']}.",
        "",
        "Ratio = kpy / Kafka: above 1 kpy is faster on a ↑ row, below 1 kpy is better on a ↓ row.",
        "",
    ]
    header = ["Row", "Unit", "kpy", "Kafka", "kpy/Kafka"] + (["sink"] if with_sink else [])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for r in rows:
        arrow = "↑" if r.better == "higher" else "↓"
        ratio = fmt_ratio(r.ratio)
        if r.kpy_better is not None:
            ratio = f"**{ratio}**" if r.kpy_better else ratio
        cells = [
            r.row,
            f"{r.unit} {arrow}",
            fmt(r.values.get("kpy")),
            fmt(r.values.get("kafka")),
            ratio,
        ]
        if with_sink:
            cells.append(fmt(r.values.get("sink")))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Bold ratio: kpy at least as good as Kafka on that row."]
    if meta.get("errors"):
        lines += ["", "Failed:"] + [
            f"- {e['broker']} {e['workload']}: {e['error']}" for e in meta["errors"]
        ]
    return "\n".join(lines) + "\n"


def chart(rows: list[Row], meta: dict[str, Any], path: Path) -> None:
    """Horizontal bars of kpy/Kafka per row on a log scale, a line at 1.0 (the two equal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    paired = [r for r in rows if r.ratio is not None and r.ratio > 0]
    height = max(2.5, 0.32 * len(paired) + 1.5)
    fig, ax = plt.subplots(figsize=(10, height))
    title = f"kpy / Apache Kafka {meta['machine']['kafka_version']} ({meta['scale']['name']})"
    if paired:
        labels = [f"{r.row} [{r.unit} {'↑' if r.better == 'higher' else '↓'}]" for r in paired]
        ratios = [r.ratio or 0.0 for r in paired]
        colors = ["#2e7d32" if r.kpy_better else "#c62828" for r in paired]
        y = list(range(len(paired)))[::-1]
        # Each bar runs from 1.0 (kpy equal to Kafka) to the ratio, left or right of the line.
        ax.barh(y, [r - 1.0 for r in ratios], left=1.0, color=colors)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(min(*ratios, 1.0) / 2, max(*ratios, 1.0) * 2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.axvline(1.0, color="black", linewidth=1)
        for yi, ratio in zip(y, ratios, strict=True):
            ax.annotate(f" {fmt_ratio(ratio)}", (ratio, yi), va="center", fontsize=7)
        ax.set_xlabel("kpy / Kafka (green: kpy better, red: Kafka better)")
    else:
        ax.text(0.5, 0.5, "no row has both a kpy and a Kafka figure", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def command_output(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout or done.stderr).strip()


def machine_info() -> dict[str, Any]:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    commit = command_output(["git", "rev-parse", "--short=12", "HEAD"])
    if command_output(["git", "status", "--porcelain", "--untracked-files=no"]):
        commit += "+dirty"
    try:
        import confluent_kafka

        version: Any = confluent_kafka.version()  # a str, or (str, int) in older releases
        version = version if isinstance(version, str) else version[0]
        client = f"confluent-kafka {version}, librdkafka {confluent_kafka.libversion()[0]}"
    except ImportError:
        client = "confluent-kafka missing"
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "java": command_output([os.environ.get("JAVA", "java"), "-version"]).splitlines()[0],
        "kpy_commit": commit,
        "kafka_version": KAFKA_VERSION,
        "client": client,
        "executable": sys.executable,
    }


def write(
    out: Path, measurements: list[Measurement], meta: dict[str, Any], with_sink: bool
) -> None:
    """results.json (everything), results.md (the table) and results.png (the ratios)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = table(measurements)
    data = {
        **meta,
        "measurements": [asdict(m) for m in measurements],
        "table": [
            {"row": r.row, "unit": r.unit, "better": r.better, **r.values, "ratio": r.ratio}
            for r in rows
        ],
    }
    (out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "results.md").write_text(markdown(rows, meta, with_sink))
    chart(rows, meta, out / "results.png")
