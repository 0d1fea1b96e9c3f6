"""kafka-delete-records (DeleteRecordsCommand) against the broker under test, checked with
kafka-get-offsets and kafka-console-consumer, before and after a broker restart."""

from __future__ import annotations

import json
from pathlib import Path

from kpy_process import KpyProcess

from compat.test_stock_tools import create_and_fill
from compat.tools import Tools


def offset_json(path: Path, topic: str, offset: int) -> str:
    """The tool's --offset-json-file, version 1 format."""
    partitions = [{"topic": topic, "partition": 0, "offset": offset}]
    path.write_text(json.dumps({"partitions": partitions, "version": 1}))
    return str(path)


def test_delete_records_then_offsets_and_consumer(
    broker: KpyProcess, tools: Tools, tmp_path: Path
) -> None:
    b = broker.bootstrap
    create_and_fill(tools, b, "purge", "".join(f"m{i}\n" for i in range(10)))

    spec = offset_json(tmp_path / "d.json", "purge", 4)
    result = tools.run("kafka-delete-records", "--bootstrap-server", b,
                       "--offset-json-file", spec)  # fmt: skip
    out = Tools.check(result)
    assert out.splitlines() == [
        "Executing records delete operation",
        "Records delete operation completed:",
        "partition: purge-0\tlow_watermark: 4",
    ]

    earliest = tools.ok("kafka-get-offsets", "--bootstrap-server", b, "--topic", "purge",
                        "--time", "-2")  # fmt: skip
    assert earliest.split() == ["purge:0:4"]
    latest = tools.ok("kafka-get-offsets", "--bootstrap-server", b, "--topic", "purge")
    assert latest.split() == ["purge:0:10"]

    consumed = tools.run("kafka-console-consumer", "--bootstrap-server", b, "--topic", "purge",
                         "--from-beginning", "--max-messages", "6",
                         "--timeout-ms", "20000")  # fmt: skip
    assert Tools.check(consumed).splitlines() == [f"m{i}" for i in range(4, 10)]
    assert "Processed a total of 6 messages" in consumed.stderr

    # Past the high watermark: the partition reports the error; the tool itself exits 0.
    spec = offset_json(tmp_path / "p.json", "purge", 11)
    past = tools.run("kafka-delete-records", "--bootstrap-server", b,
                     "--offset-json-file", spec)  # fmt: skip
    lines = Tools.check(past).splitlines()
    assert lines[-1].startswith("partition: purge-0\terror: "), lines
    assert "OffsetOutOfRangeException" in lines[-1]

    # The start survives a restart.
    broker.restart()
    earliest = tools.ok("kafka-get-offsets", "--bootstrap-server", b, "--topic", "purge",
                        "--time", "-2")  # fmt: skip
    assert earliest.split() == ["purge:0:4"]
    consumed = tools.run("kafka-console-consumer", "--bootstrap-server", b, "--topic", "purge",
                         "--from-beginning", "--max-messages", "1",
                         "--timeout-ms", "20000")  # fmt: skip
    assert Tools.check(consumed).splitlines() == ["m4"]
