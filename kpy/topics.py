"""Topic names and topic creation as Kafka checks them (Topic.validate, CreateTopics defaults)."""

from __future__ import annotations

import re

from kio.schema.errors import ErrorCode

MAX_NAME_LENGTH = 249
_LEGAL = re.compile(r"[a-zA-Z0-9._-]+")
# Kafka's controller writes at most this many metadata records for one request
# (QuorumController.MAX_RECORDS_PER_USER_OP: one per topic, partition and config entry); a
# CreateTopics or CreatePartitions that would take more fails whole with POLICY_VIOLATION. kpy
# writes no such records, but keeps the bound: it is what stops one small request from asking
# for two billion partitions (a fuzzer's did, and the broker ran out of memory).
MAX_RECORDS_PER_USER_OP = 10_000
EXCESSIVE_BATCH = "Unable to perform excessively large batch operation."


def name_error(name: str | None) -> str | None:
    """Why ``name`` is not a legal topic name (Kafka's message), or None when it is."""
    if not name:
        return "Topic name is invalid: the empty string is not allowed"
    if name in (".", ".."):
        return f"Topic name is invalid: '{name}' is not allowed"
    if len(name) > MAX_NAME_LENGTH:
        return (
            f"Topic name is invalid: the length of '{name}' is longer than the max allowed "
            f"length {MAX_NAME_LENGTH}"
        )
    if not _LEGAL.fullmatch(name):
        return (
            f"Topic name is invalid: '{name}' contains one or more characters other than ASCII "
            "alphanumerics, '.', '_' and '-'"
        )
    return None


def collision_key(name: str) -> str:
    """'.' and '_' collide in metric names, so Kafka refuses topics differing only by them."""
    return name.replace(".", "_")


# Kafka 4.1's internal topics (Topic.isInternal).
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})


def is_internal(name: str) -> bool:
    return name in INTERNAL_TOPICS


INVALID_TOPIC = ErrorCode.invalid_topic_exception
