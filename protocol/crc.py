"""CRC-32C (Castagnoli), the checksum of v2 record batches and of producer snapshots.

The function is the crc32c package's C extension, loaded by itself: the package's
``__init__`` also looks up its own version with importlib.metadata, whose import (email,
zipfile, csv, ...) costs the broker 20-50 ms of start-up and serves it nothing. Where the
extension cannot be found that way (another layout of the package), or the package is already
imported, the package is used as usual; either way the function is the same C code.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

_EXTENSION = "crc32c._crc32c"


def _load_extension() -> Any | None:
    spec = importlib.util.find_spec("crc32c")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        return None
    for directory in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(directory, "_crc32c" + suffix)
            if not os.path.exists(path):
                continue
            loader = importlib.machinery.ExtensionFileLoader(_EXTENSION, path)
            found = importlib.util.spec_from_file_location(_EXTENSION, path, loader=loader)
            if found is None:
                return None
            module = importlib.util.module_from_spec(found)
            loader.exec_module(module)
            # A later ``import crc32c`` (kio.records, tests) then reuses this module.
            sys.modules[_EXTENSION] = module
            return module
    return None


def _crc32c_function() -> Callable[..., int]:
    module = sys.modules.get(_EXTENSION)
    if module is None and "crc32c" not in sys.modules:
        try:
            module = _load_extension()
        except (ImportError, OSError):
            module = None
    if module is None:
        import crc32c

        return crc32c.crc32c
    function: Callable[..., int] = module.crc32c
    return function


crc32c: Callable[..., int] = _crc32c_function()
