"""The idempotent producer, as Kafka checks it: a retried batch is acknowledged with its first
offset and not written twice; a gap in sequence numbers is OUT_OF_ORDER_SEQUENCE_NUMBER; an older
epoch is INVALID_PRODUCER_EPOCH; producer state survives clean and unclean restarts."""

from __future__ import annotations

import pytest
from kio.schema.errors import ErrorCode
from kpy_process import KpyProcess
from rawclient import RawClient
from requests_v import fetch, init_producer_id, metadata, produce, produce_result

from kpy.protocol import records as rb

TOPIC = "idem"


def batch(pid: int, epoch: int, seq: int, n: int = 5, tag: bytes = b"") -> bytes:
    return rb.build_batch(
        [(b"k", tag + b"-%d" % (seq + i)) for i in range(n)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        timestamp=1_000,
    )


def end_offset(c: RawClient) -> int:
    return fetch(c, [(TOPIC, 0, 0, 1)]).responses[0].partitions[0].high_watermark


def test_producer_ids_are_distinct(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        ids = {init_producer_id(c)[0] for _ in range(5)}
    assert len(ids) == 5


def test_retry_is_acknowledged_with_the_original_offset(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        metadata(c, TOPIC)
        pid, epoch = init_producer_id(c)
        assert produce_result(produce(c, TOPIC, batch(pid, epoch, 0))) == (ErrorCode.none, 0)
        assert produce_result(produce(c, TOPIC, batch(pid, epoch, 5))) == (ErrorCode.none, 5)
        # Both batches retried: answered from the cache, nothing appended.
        assert produce_result(produce(c, TOPIC, batch(pid, epoch, 0))) == (ErrorCode.none, 0)
        assert produce_result(produce(c, TOPIC, batch(pid, epoch, 5))) == (ErrorCode.none, 5)
        assert end_offset(c) == 10


def test_sequence_gap_is_out_of_order(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        metadata(c, TOPIC)
        pid, epoch = init_producer_id(c)
        assert produce_result(produce(c, TOPIC, batch(pid, epoch, 0)))[0] == ErrorCode.none
        error, _ = produce_result(produce(c, TOPIC, batch(pid, epoch, 7)))
        assert error == ErrorCode.out_of_order_sequence_number
        # A new epoch must start at sequence 0.
        error, _ = produce_result(produce(c, TOPIC, batch(pid, epoch + 1, 5)))
        assert error == ErrorCode.out_of_order_sequence_number
        assert end_offset(c) == 5


def test_older_epoch_is_fenced(kpy: KpyProcess) -> None:
    with RawClient(kpy.bootstrap) as c:
        metadata(c, TOPIC)
        pid, _ = init_producer_id(c)
        assert produce_result(produce(c, TOPIC, batch(pid, 3, 0)))[0] == ErrorCode.none
        assert produce_result(produce(c, TOPIC, batch(pid, 4, 0)))[0] == ErrorCode.none
        error, _ = produce_result(produce(c, TOPIC, batch(pid, 3, 5)))
        assert error == ErrorCode.invalid_producer_epoch
        assert end_offset(c) == 10


@pytest.mark.parametrize("stop", ["clean", "kill"])
def test_producer_state_survives_a_restart(kpy: KpyProcess, stop: str) -> None:
    with RawClient(kpy.bootstrap) as c:
        metadata(c, TOPIC)
        pid, epoch = init_producer_id(c)
        for seq in range(0, 50, 5):
            assert produce_result(produce(c, TOPIC, batch(pid, epoch, seq)))[0] == ErrorCode.none
    if stop == "clean":
        kpy.stop()
    else:
        kpy.kill()
    kpy.start()
    with RawClient(kpy.bootstrap) as c:
        # The last batch retried after the restart is still recognised.
        assert produce_result(produce(c, TOPIC, batch(pid, epoch, 45))) == (ErrorCode.none, 45)
        error, _ = produce_result(produce(c, TOPIC, batch(pid, epoch, 55)))
        assert error == ErrorCode.out_of_order_sequence_number
        assert produce_result(produce(c, TOPIC, batch(pid, epoch, 50))) == (ErrorCode.none, 50)
        assert end_offset(c) == 55
        # Producer ids are not handed out twice across the restart.
        assert init_producer_id(c)[0] != pid
