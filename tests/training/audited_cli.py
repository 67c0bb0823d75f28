"""`deepfake-train` with a record of what this process writes, for running under torchrun in tests.

  python -m torch.distributed.run --standalone --nproc_per_node 2 tests/training/audited_cli.py train ...

An audit hook records every file opened for writing, and every folder made, file renamed or removed, under the
folders AUDIT_ROOTS names (os.pathsep between them); at exit the list goes to AUDIT_OUT/writes-rank-R.json, so a
test can check that rank 0 alone writes a run's files (test_distributed.py).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOTS = [os.path.realpath(root) for root in os.environ["AUDIT_ROOTS"].split(os.pathsep)]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
writes: list[str] = []
_busy = False


def _under_roots(path: object) -> str | None:
    if isinstance(path, int):
        return None
    try:
        resolved = os.path.realpath(os.fsdecode(path))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return resolved if any(resolved == r or resolved.startswith(r + os.sep) for r in ROOTS) else None


def _audit(event: str, args: tuple) -> None:
    global _busy
    if _busy or event not in ("open", "os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree"):
        return
    _busy = True  # the checks below must not audit themselves
    try:
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & WRITE_FLAGS)
            paths = [path] if writing else []
        else:
            paths = list(args[:2]) if event == "os.rename" else [args[0]]
        for path in paths:
            found = _under_roots(path)
            if found:
                writes.append(f"{event} {found}")
    finally:
        _busy = False


def main() -> int:
    sys.addaudithook(_audit)
    from deepfake_training.cli import main as cli_main

    try:
        return cli_main(sys.argv[1:])
    finally:
        out = Path(os.environ["AUDIT_OUT"]) / f"writes-rank-{os.environ.get('RANK', '0')}.json"
        out.write_text(json.dumps(sorted(set(writes)), indent=1))


if __name__ == "__main__":
    sys.exit(main())
