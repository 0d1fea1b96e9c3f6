"""Coverage-guided runs of the fuzz targets with atheris (libFuzzer), for long runs.

hypothesis picks inputs at random within each strategy; atheris keeps the inputs that reach new
code in kpy's codecs and mutates those, which finds the deep paths of a decoder sooner. Both
drive the same targets: atheris feeds its bytes to a hypothesis test's ``fuzz_one_input``, so the
invariant, the strategies and the counts are the test's own. atheris is an optional extra
(``pip install -e '.[fuzz]'``); CI runs the targets with hypothesis only.

    python tests/fuzz/atheris_fuzz.py \\
        test_fuzz_records:test_v2_batches_validate_or_raise_record_errors \\
        -max_total_time=600 -rss_limit_mb=4096

libFuzzer's own options follow the target; a crash is written as a crash-* file (the bytes
atheris fed), and hypothesis saves the failing example in .hypothesis/fuzz, where the next
``KPY_FUZZ=long pytest tests/fuzz`` replays it. libFuzzer prints the count of inputs tried
("Done N runs").
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import atheris

HERE = Path(__file__).parent


def main() -> None:
    if len(sys.argv) < 2 or ":" not in sys.argv[1]:
        sys.exit(__doc__)
    module_name, test_name = sys.argv[1].split(":")
    os.environ.setdefault("KPY_FUZZ", "long")  # the example database, for replays
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    with atheris.instrument_imports(include=["kpy"]):
        import kpy.broker
        import kpy.protocol.compression
        import kpy.protocol.hot_requests
        import kpy.protocol.legacy_records
        import kpy.protocol.messages
        import kpy.protocol.records  # noqa: F401  (imported to be instrumented)
        from kpy.handlers.registry import APIS

        for *_, handler_module in APIS:  # imported on first use otherwise, uninstrumented
            importlib.import_module(f"kpy.handlers.{handler_module}")
    module = importlib.import_module(module_name)
    test = getattr(module, test_name)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], test.hypothesis.fuzz_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
