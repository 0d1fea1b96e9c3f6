"""kafka-consumer-groups scenarios: --list, --describe (offsets, lag, state), --reset-offsets
(--to-earliest, --to-datetime, --shift-by; --dry-run and --execute) and --delete, checked the same
against kpy and against Apache Kafka (``--compat-broker=kafka``) with the tools of every release.

Committed offsets come from kafka-console-consumer runs with --group, which commit the position of
what they printed when they exit.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from compat.steps import Broker, consume, create_topic, produce
from compat.tools import Tools

TOPIC = "orders"


def groups(tools: Tools, bootstrap: str, *args: str) -> str:
    return tools.ok("kafka-consumer-groups", "--bootstrap-server", bootstrap, *args)


def offset_rows(out: str, group: str) -> list[list[str]]:
    """The GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ... rows of one group."""
    return [line.split()[:6] for line in out.splitlines() if line.split()[:1] == [group]]


def read_part(tools: Tools, bootstrap: str, group: str, count: int) -> list[str]:
    """A --group console consumer that prints (and so commits) the first ``count`` records."""
    return consume(tools, bootstrap, TOPIC, count, "--group", group, "--from-beginning",
                   "--consumer-property", f"max.poll.records={count}")  # fmt: skip


def assert_no_such_group(tools: Tools, bootstrap: str, group: str) -> None:
    """--describe of a group that is not there: a message, and still exit status 0."""
    result = tools.run("kafka-consumer-groups", "--bootstrap-server", bootstrap, "--describe",
                       "--group", group)  # fmt: skip
    assert result.returncode == 0, result
    assert offset_rows(result.stdout, group) == []
    if tools.major >= 4:
        # 4.x asks DescribeGroups v6, which answers GROUP_ID_NOT_FOUND (KIP-1043).
        assert f"GroupIdNotFoundException: Group {group} not found." in result.stdout, result
    else:
        # Before v6 the group is "Dead" with no error.
        assert f"Consumer group '{group}' does not exist." in result.stdout, result


def ten_records(tools: Tools, bootstrap: str) -> None:
    create_topic(tools, bootstrap, TOPIC)
    produce(tools, bootstrap, TOPIC, [f"o{i}" for i in range(10)])


def test_list_and_describe_after_partial_read(broker: Broker, tools: Tools) -> None:
    b = broker.bootstrap
    ten_records(tools, b)
    assert read_part(tools, b, "partial", 4) == [f"o{i}" for i in range(4)]
    assert read_part(tools, b, "whole", 10) == [f"o{i}" for i in range(10)]

    assert sorted(groups(tools, b, "--list").split()) == ["partial", "whole"]

    result = tools.run("kafka-consumer-groups", "--bootstrap-server", b, "--describe",
                       "--group", "partial")  # fmt: skip
    out = Tools.check(result)
    assert offset_rows(out, "partial") == [["partial", TOPIC, "0", "4", "10", "6"]]
    # The consumer has left: no member holds the partition.
    row = next(line for line in out.splitlines() if line.startswith("partial "))
    assert row.split()[6:] == ["-", "-", "-"]
    assert "Consumer group 'partial' has no active members." in result.stderr

    out = groups(tools, b, "--describe", "--group", "whole")
    assert offset_rows(out, "whole") == [["whole", TOPIC, "0", "10", "10", "0"]]

    state = groups(tools, b, "--describe", "--group", "partial", "--state")
    header, row = [line for line in state.splitlines() if line.strip()]
    assert header.split() == ["GROUP", "COORDINATOR", "(ID)", "ASSIGNMENT-STRATEGY", "STATE",
                              "#MEMBERS"]  # fmt: skip
    assert row.startswith("partial ") and re.search(r"\(\d+\)", row)
    assert row.split()[-2:] == ["Empty", "0"]

    assert_no_such_group(tools, b, "nobody")


def test_reset_offsets_to_earliest_and_shift_by(broker: Broker, tools: Tools) -> None:
    b = broker.bootstrap
    ten_records(tools, b)
    read_part(tools, b, "resetters", 4)
    base = ("--reset-offsets", "--group", "resetters", "--topic", TOPIC)

    dry = groups(tools, b, *base, "--to-earliest", "--dry-run")
    assert dry.split() == ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET",
                           "resetters", TOPIC, "0", "0"]  # fmt: skip
    # A dry run changes nothing.
    described = groups(tools, b, "--describe", "--group", "resetters")
    assert offset_rows(described, "resetters") == [["resetters", TOPIC, "0", "4", "10", "6"]]

    done = groups(tools, b, *base, "--to-earliest", "--execute")
    assert done.split()[-4:] == ["resetters", TOPIC, "0", "0"]
    described = groups(tools, b, "--describe", "--group", "resetters")
    assert offset_rows(described, "resetters") == [["resetters", TOPIC, "0", "0", "10", "10"]]

    shifted = groups(tools, b, *base, "--shift-by", "3", "--execute")
    assert shifted.split()[-4:] == ["resetters", TOPIC, "0", "3"]
    # Shifts are clamped to the log: below the start is the start, past the end is the end.
    assert groups(tools, b, *base, "--shift-by", "-7", "--dry-run").split()[-1] == "0"
    assert groups(tools, b, *base, "--shift-by", "100", "--execute").split()[-1] == "10"
    described = groups(tools, b, "--describe", "--group", "resetters")
    assert offset_rows(described, "resetters") == [["resetters", TOPIC, "0", "10", "10", "0"]]

    # The group reads on from where the reset put it.
    assert groups(tools, b, *base, "--shift-by", "-2", "--execute").split()[-1] == "8"
    out = consume(tools, b, TOPIC, 2, "--group", "resetters")
    assert out == ["o8", "o9"]


def test_reset_offsets_to_datetime(broker: Broker, tools: Tools) -> None:
    b = broker.bootstrap
    create_topic(tools, b, TOPIC)
    # Two producer runs, seconds apart: the second run's records are strictly later.
    produce(tools, b, TOPIC, [f"early{i}" for i in range(5)])
    produce(tools, b, TOPIC, [f"late{i}" for i in range(5)])
    stamped = consume(tools, b, TOPIC, 10, "--from-beginning",
                      "--property", "print.timestamp=true")  # fmt: skip
    stamps = [int(line.split("\t")[0].removeprefix("CreateTime:")) for line in stamped]
    assert stamps[4] < stamps[5]
    read_part(tools, b, "travellers", 2)
    base = ("--reset-offsets", "--group", "travellers", "--topic", TOPIC)

    def when(ms: int) -> str:
        # ISO 8601 in UTC with milliseconds; without a zone the tool reads it as UTC.
        moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}"

    # The first record at or after the time: the first of the second run.
    out = groups(tools, b, *base, "--to-datetime", when(stamps[5]), "--dry-run")
    assert out.split()[-4:] == ["travellers", TOPIC, "0", "5"]
    out = groups(tools, b, *base, "--to-datetime", when(stamps[4] + 1), "--execute")
    assert out.split()[-4:] == ["travellers", TOPIC, "0", "5"]
    described = groups(tools, b, "--describe", "--group", "travellers")
    assert offset_rows(described, "travellers") == [["travellers", TOPIC, "0", "5", "10", "5"]]
    # At or before the first record: offset 0. After the last: the end of the log.
    out = groups(tools, b, *base, "--to-datetime", when(stamps[0]), "--dry-run")
    assert out.split()[-1] == "0"
    out = groups(tools, b, *base, "--to-datetime", when(stamps[9] + 1), "--dry-run")
    assert out.split()[-1] == "10"


def test_delete_group(broker: Broker, tools: Tools) -> None:
    b = broker.bootstrap
    ten_records(tools, b)
    read_part(tools, b, "doomed", 3)
    read_part(tools, b, "kept", 5)
    assert sorted(groups(tools, b, "--list").split()) == ["doomed", "kept"]

    out = groups(tools, b, "--delete", "--group", "doomed")
    assert "Deletion of requested consumer groups ('doomed') was successful." in out
    assert groups(tools, b, "--list").split() == ["kept"]
    # The committed offsets went with the group.
    assert_no_such_group(tools, b, "doomed")

    again = tools.run("kafka-consumer-groups", "--bootstrap-server", b, "--delete",
                      "--group", "never-was")  # fmt: skip
    assert "Group 'never-was' could not be deleted due to" in again.stdout + again.stderr
    assert "GroupIdNotFoundException" in again.stdout + again.stderr
