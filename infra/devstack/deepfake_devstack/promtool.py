"""promtool checks of Prometheus configs and rule files, shared by the tests and the stack.

`promtool` runs offline: `check config` (and the rule files it names), `check rules`, and `test rules` (the alert
unit tests under infra/prometheus/tests/).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from deepfake_devstack.binaries import promtool_binary


class PromtoolError(RuntimeError):
    """promtool found a problem; the message carries its full output."""

    code = "promtool_failed"


def run_promtool(arguments: Sequence[str], cwd: Path | None = None, timeout_s: float = 120.0) -> str:
    """Run `promtool ARGUMENTS`; its output when it succeeds, PromtoolError with that output when it does not."""
    command = [str(promtool_binary()), *arguments]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=timeout_s, check=False)
    output = (completed.stdout + completed.stderr).strip()
    if completed.returncode != 0:
        raise PromtoolError(f"`promtool {' '.join(arguments)}` failed (exit {completed.returncode}):\n{output}")
    return output


def check_config(config_path: Path) -> str:
    """Validate a Prometheus config and every rule file it names (relative paths resolve beside the config)."""
    return run_promtool(["check", "config", str(config_path)])


def check_rules(rule_files: Sequence[Path]) -> str:
    return run_promtool(["check", "rules", *map(str, rule_files)])


def test_rules(test_files: Sequence[Path]) -> str:
    """Run promtool unit tests; rule files named in a test resolve relative to that test file."""
    return run_promtool(["test", "rules", *map(str, test_files)])
