"""The fuzz tests' shared budget: how many examples each property gets, deterministic so CI is stable.

Every property runs with `derandomize=True` (the same examples on every run, no example database) and
no per-example deadline (a busy 2-core machine must not fail a property on time); hangs are caught by
each test's pytest timeout instead. `count_example` tallies examples per test, for the reliability report.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, settings

#: Where the example counts go at the end of the session (set by loadtests/reliability_report.py).
COUNTS_FILE_VARIABLE = "DEEPFAKE_FUZZ_COUNTS_FILE"

#: Examples per property: small and cheap ones get more, decoders fewer (each example decodes a file).
CHEAP_EXAMPLES = 300
PARSER_EXAMPLES = 200
DECODER_EXAMPLES = 150

EXAMPLE_COUNTS: Counter[str] = Counter()


def fuzz_settings(max_examples: int) -> settings:
    """Hypothesis settings of one property: `max_examples`, derandomized, no deadline, no database."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def count_example(name: str) -> None:
    EXAMPLE_COUNTS[name] += 1


def write_counts(path: Path) -> None:
    """Merge this session's counts into `path` (JSON object: test name -> examples run)."""
    existing = json.loads(path.read_text()) if path.is_file() else {}
    existing.update(EXAMPLE_COUNTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")


def counts_file() -> Path | None:
    value = os.environ.get(COUNTS_FILE_VARIABLE)
    return Path(value) if value else None
