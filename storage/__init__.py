"""kpy.storage: the segment store, in Apache Kafka's on-disk format.

Nouns as Kafka's: LogManager (a data directory) owns Logs (a partition directory each), a Log owns
LogSegments (a .log file with an OffsetIndex and a TimeIndex) and a ProducerStateManager.
"""

from kpy.storage.config import LogConfig
from kpy.storage.errors import (
    CorruptIndex,
    CorruptSnapshot,
    DuplicateSequence,
    InvalidConfig,
    InvalidPartitions,
    InvalidProducerEpoch,
    InvalidTopic,
    InvalidTxnState,
    KafkaStorageError,
    LogClosed,
    LogOffline,
    OffsetOutOfRange,
    OutOfOrderSequence,
    ProducerStateError,
    RecordBatchTooLarge,
    RecordTooLarge,
    StorageError,
    TopicExists,
    TransactionCoordinatorFenced,
    UnknownTopic,
)
from kpy.storage.log import AppendResult, Log
from kpy.storage.log_manager import LogManager, TopicInfo
from kpy.storage.offset_index import OffsetIndex
from kpy.storage.producer_state import AppendOrigin, ProducerStateManager
from kpy.storage.segment import LogSegment
from kpy.storage.time_index import TimeIndex

__all__ = [
    "AppendOrigin",
    "AppendResult",
    "CorruptIndex",
    "CorruptSnapshot",
    "DuplicateSequence",
    "InvalidConfig",
    "InvalidPartitions",
    "InvalidProducerEpoch",
    "InvalidTopic",
    "InvalidTxnState",
    "KafkaStorageError",
    "Log",
    "LogClosed",
    "LogConfig",
    "LogManager",
    "LogOffline",
    "LogSegment",
    "OffsetIndex",
    "OffsetOutOfRange",
    "OutOfOrderSequence",
    "ProducerStateError",
    "ProducerStateManager",
    "RecordBatchTooLarge",
    "RecordTooLarge",
    "StorageError",
    "TimeIndex",
    "TopicExists",
    "TopicInfo",
    "TransactionCoordinatorFenced",
    "UnknownTopic",
]
