"""Leader epochs over raw requests: OffsetForLeaderEpoch as Kafka's leader answers it, Fetch's
last_fetched_epoch and current_leader_epoch checks, ListOffsets' fencing, and the epoch every
API reports being the one stored in the batches."""

from __future__ import annotations

from pathlib import Path

from kio.schema.errors import ErrorCode
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import (
    create_topic,
    describe_topic_partitions,
    fetch_with_epoch,
    list_offsets,
    metadata,
    offset_for_leader_epoch,
    produce,
)

from kpy.protocol.records import build_batch, iter_headers

TOPIC = "epochs"


def fill(c: RawClient, topic: str, records: int) -> None:
    """Produce ``records`` records, one batch each; the client leaves the batch epoch at -1."""
    create_topic(c, topic)
    for i in range(records):
        batch = build_batch([(None, b"v%d" % i)], partition_leader_epoch=-1)
        assert produce(c, topic, batch).responses[0].partition_responses[0].error_code == 0


def stored_epochs(data_dir: Path, topic: str, partition: int) -> set[int]:
    epochs = set()
    for segment in (data_dir / f"{topic}-{partition}").glob("*.log"):
        epochs |= {h.partition_leader_epoch for _, h in iter_headers(segment.read_bytes())}
    return epochs


def test_offset_for_leader_epoch(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        fill(c, TOPIC, 5)
        for version in (2, 3, 4):

            def ask(epoch: int, current: int = -1, v: int = version) -> tuple[int, int, int]:
                r = offset_for_leader_epoch(c, TOPIC, 0, epoch, current=current, version=v)
                return r.error_code, r.leader_epoch, r.end_offset

            # The current epoch ends at the log end offset, whether or not the client says
            # which epoch it believes current.
            assert ask(0) == (ErrorCode.none, 0, 5)
            assert ask(0, current=0) == (ErrorCode.none, 0, 5)
            # -1 and an epoch newer than any the leader knows: unknown, without an error.
            assert ask(-1) == (ErrorCode.none, -1, -1)
            assert ask(3, current=0) == (ErrorCode.none, -1, -1)
            # An epoch older than any known: itself, ending where the first known epoch starts.
            assert ask(-7) == (ErrorCode.none, -7, 0)
            # The client's view of the current epoch: newer is unknown, older (any value but
            # -1, which means none) is fenced.
            assert ask(0, current=1) == (ErrorCode.unknown_leader_epoch, -1, -1)
            assert ask(0, current=-3) == (ErrorCode.fenced_leader_epoch, -1, -1)
        for topic, partition in ((TOPIC, 1), ("missing", 0)):
            r = offset_for_leader_epoch(c, topic, partition, 0)
            assert (r.error_code, r.leader_epoch, r.end_offset) == (
                ErrorCode.unknown_topic_or_partition,
                -1,
                -1,
            )
        # An empty partition: epoch 0 ends at offset 0.
        create_topic(c, "empty")
        r = offset_for_leader_epoch(c, "empty", 0, 0)
        assert (r.error_code, r.leader_epoch, r.end_offset) == (ErrorCode.none, 0, 0)


def test_fetch_checks_the_last_fetched_epoch(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        fill(c, TOPIC, 5)
        # Within epoch 0: records as usual.
        ok = fetch_with_epoch(c, TOPIC, 0, 2, last_fetched_epoch=0, current_leader_epoch=0)
        assert ok.error_code == ErrorCode.none and ok.high_watermark == 5
        assert [h.base_offset for _, h in iter_headers(ok.records)] == [2, 3, 4]
        assert ok.diverging_epoch.epoch == -1  # the default: nothing diverges
        # Past the end of epoch 0: no records, and where the epoch ends, to truncate to.
        div = fetch_with_epoch(c, TOPIC, 0, 9, last_fetched_epoch=0)
        assert div.error_code == ErrorCode.none and not div.records
        assert (div.diverging_epoch.epoch, div.diverging_epoch.end_offset) == (0, 5)
        assert div.high_watermark == 5
        # The same offset without an epoch is simply out of range.
        oor = fetch_with_epoch(c, TOPIC, 0, 9)
        assert oor.error_code == ErrorCode.offset_out_of_range
        # An epoch the leader does not know is out of range.
        newer = fetch_with_epoch(c, TOPIC, 0, 2, last_fetched_epoch=4)
        assert newer.error_code == ErrorCode.offset_out_of_range and not newer.records
        # A newer current epoch than the leader's; negative ones mean none in a fetch.
        ahead = fetch_with_epoch(c, TOPIC, 0, 0, current_leader_epoch=1)
        assert ahead.error_code == ErrorCode.unknown_leader_epoch
        assert fetch_with_epoch(c, TOPIC, 0, 0, current_leader_epoch=-5).error_code == 0


def test_list_offsets_fences_any_epoch_but_minus_one(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        fill(c, TOPIC, 2)
        latest = list_offsets(c, TOPIC, 0, -1, current_epoch=0)
        assert (latest.error_code, latest.offset, latest.leader_epoch) == (ErrorCode.none, 2, 0)
        assert list_offsets(c, TOPIC, 0, -1, current_epoch=1).error_code == (
            ErrorCode.unknown_leader_epoch
        )
        assert list_offsets(c, TOPIC, 0, -1, current_epoch=-2).error_code == (
            ErrorCode.fenced_leader_epoch
        )
        assert list_offsets(c, TOPIC, 0, -2).leader_epoch == 0


def test_every_api_reports_the_stored_epoch(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        fill(c, TOPIC, 3)
        # Produce stamped the leader's epoch over the client's -1.
        assert stored_epochs(kpy.data_dir, TOPIC, 0) == {0}
        fetched = fetch_with_epoch(c, TOPIC, 0, 0)
        assert {h.partition_leader_epoch for _, h in iter_headers(fetched.records)} == {0}
        assert metadata(c, TOPIC).topics[0].partitions[0].leader_epoch == 0
        described = describe_topic_partitions(c, [TOPIC]).topics[0].partitions[0]
        assert described.leader_epoch == 0
        assert list_offsets(c, TOPIC, 0, -1).leader_epoch == 0
        # Where the stored epoch ends is where the log ends.
        r = offset_for_leader_epoch(c, TOPIC, 0, 0, current=0)
        assert (r.leader_epoch, r.end_offset) == (0, 3)
