"""The broker's loggers as Kafka's BROKER_LOGGER config resource shows them (kafka-configs
--entity-type broker-loggers): Python loggers under Kafka's level names, "root" for the root.

Kafka's Log4jController lists every logger with its effective level; Set and Delete change one
at run time, as Kafka's RuntimeLoggerManager does.
"""

from __future__ import annotations

import logging

ROOT = "root"
TRACE = 5
LEVELS = {"TRACE": TRACE, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
          "WARN": logging.WARNING, "ERROR": logging.ERROR, "FATAL": logging.CRITICAL}  # fmt: skip
VALID_LEVELS = ", ".join(LEVELS)
_NAMES = {number: name for name, number in LEVELS.items()}


def _level_name(number: int) -> str:
    for threshold in sorted(_NAMES, reverse=True):
        if number >= threshold:
            return _NAMES[threshold]
    return "TRACE"


def loggers() -> dict[str, str]:
    """Every logger that exists, with the level in force."""
    out = {ROOT: _level_name(logging.getLogger().getEffectiveLevel())}
    for name, obj in sorted(logging.Logger.manager.loggerDict.items()):
        if isinstance(obj, logging.Logger):
            out[name] = _level_name(obj.getEffectiveLevel())
    return out


def exists(name: str) -> bool:
    return name == ROOT or isinstance(logging.Logger.manager.loggerDict.get(name), logging.Logger)


def set_level(name: str, level: str) -> None:
    logging.getLogger(None if name == ROOT else name).setLevel(LEVELS[level])


def unset_level(name: str) -> None:
    logging.getLogger(name).setLevel(logging.NOTSET)
