"""Exceptions raised by kpy.storage.

The names follow Kafka's exception classes; the comment on each says which Kafka error code a
handler should answer with when the exception reaches it.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of everything kpy.storage raises on purpose."""


class CorruptIndex(StorageError):
    """An index file fails its sanity check; the owning segment rebuilds it from the log."""


class IndexOffsetOverflow(StorageError):
    """An offset cannot be stored relative to the segment base offset (needs a new segment)."""


class InvalidIndexEntry(StorageError):
    """An append would break an index's ordering invariant (a bug in the caller)."""


class CorruptSnapshot(StorageError):
    """A producer state snapshot fails its CRC or schema check; it is deleted and ignored."""


class ProducerStateError(StorageError):
    """Base class of the errors a client append can get from producer state validation."""


class InvalidProducerEpoch(ProducerStateError):
    """The batch's producer epoch is older than the one on record (INVALID_PRODUCER_EPOCH, 47)."""


class OutOfOrderSequence(ProducerStateError):
    """The batch's base sequence does not follow the last one (OUT_OF_ORDER_SEQUENCE_NUMBER, 45)."""


class DuplicateSequence(ProducerStateError):
    """A multi-batch append repeats a cached batch (DUPLICATE_SEQUENCE_NUMBER, 46).

    A single-batch duplicate is not an error: Log.append answers it with the cached offsets.
    """


class InvalidTxnState(ProducerStateError):
    """A non-transactional write inside an open transaction (INVALID_TXN_STATE, 48)."""


class TransactionCoordinatorFenced(ProducerStateError):
    """A transaction marker from a coordinator epoch older than the last marker's for that
    producer (TRANSACTION_COORDINATOR_FENCED, 52)."""


class KafkaStorageError(StorageError):
    """The log cannot be used (KAFKA_STORAGE_ERROR, 56): it went offline after a failed write
    could not be undone, or it was closed or deleted while a request still held it."""


class LogOffline(KafkaStorageError):
    """An append to a log that went offline: a failed write left bytes in a segment file that
    could not be truncated away. Only a restart (which recovers the log) brings it back."""


class LogClosed(KafkaStorageError):
    """A read of a log that was closed or deleted (its files may be gone)."""


class RecordTooLarge(StorageError):
    """A batch exceeds max.message.bytes (MESSAGE_TOO_LARGE, 10)."""


class RecordBatchTooLarge(StorageError):
    """The appended bytes exceed segment.bytes (RECORD_LIST_TOO_LARGE, 18)."""


class OffsetOutOfRange(StorageError):
    """A read below the log start offset or above the log end offset (OFFSET_OUT_OF_RANGE, 1)."""


class InvalidConfig(StorageError, ValueError):
    """An unknown topic config name or a bad value (INVALID_CONFIG, 40)."""


class InvalidTopic(StorageError, ValueError):
    """A topic name Kafka would reject (INVALID_TOPIC_EXCEPTION, 17)."""


class TopicExists(StorageError):
    """create_topic for a name already in use (TOPIC_ALREADY_EXISTS, 36)."""


class UnknownTopic(StorageError):
    """delete_topic for a name not in use (UNKNOWN_TOPIC_OR_PARTITION, 3)."""


class InvalidPartitions(StorageError, ValueError):
    """A partition count below 1 (INVALID_PARTITIONS, 37)."""


class InconsistentMetadata(StorageError):
    """meta.properties in the data dir disagrees with this broker (node id, version)."""
