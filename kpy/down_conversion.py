"""Down-conversion of stored batches for Fetch v0-v3, as Kafka 3.9's KafkaApis did it.

Fetch v0-v1 read message format v0, v2-v3 format v1; kpy stores v2 batches, so every non-empty
read for those versions is converted (kpy.protocol.legacy_records.down_convert) before it is
sent: control batches dropped, uncompressed records below the fetch offset dropped, compressed
batches as one wrapper. The converted bytes are kept within the partition's byte budget at
message boundaries (at least one message goes), where Kafka sends the first converted chunks
and cuts the rest at the budget. A zstd batch cannot be expressed in v0/v1: Kafka's
down-conversion refuses it (UNSUPPORTED_COMPRESSION_TYPE), kpy sends its records uncompressed.
Any Fetch below v10 on a topic whose compression.type is zstd is refused, as Kafka does
(KafkaApis.maybeConvertFetchedData). Large reads are converted on a worker thread.
"""

from __future__ import annotations

import functools

import anyio
from kio.schema.errors import ErrorCode

from kpy.protocol import legacy_records as lr
from kpy.protocol import records as rb
from kpy.storage.log import Log

LAST_V0_FETCH = 1  # Fetch v0-v1 read message format v0
LAST_V1_FETCH = 3  # v2-v3 read format v1
FIRST_ZSTD_FETCH = 10
# Reads above this many bytes are converted on a worker thread.
INLINE_CONVERT_LIMIT = 128 * 1024


def needs_conversion(version: int) -> bool:
    return version <= LAST_V1_FETCH


def refuses_compression(log: Log, version: int) -> bool:
    """Kafka refuses Fetch below v10 on a topic configured to compress with zstd."""
    return version < FIRST_ZSTD_FETCH and log.config.other.get("compression.type") == "zstd"


async def down_convert(
    data: bytes, version: int, fetch_offset: int, budget: int
) -> tuple[ErrorCode, bytes]:
    """(error, converted records) for what Log.read returned to a Fetch of ``version``."""
    magic = 0 if version <= LAST_V0_FETCH else 1
    convert = functools.partial(lr.down_convert, data, magic, fetch_offset, budget)
    try:
        if len(data) > INLINE_CONVERT_LIMIT:
            return ErrorCode.none, await anyio.to_thread.run_sync(convert)
        return ErrorCode.none, convert()
    except (rb.CorruptRecordBatch, rb.InvalidRecordBatch):
        return ErrorCode.corrupt_message, b""
