"""Running the ``pyliftbridge`` command as a subprocess, and checking what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class Result:
    """What a command run produced."""

    returncode: int
    stdout: str
    stderr: str
    stdout_bytes: bytes

    def lines(self) -> list[str]:
        return self.stdout.splitlines()


class Cli:
    """``python -m pyliftbridge ...`` with ``LIFTBRIDGE_BROKERS`` set to the test server."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.env = {**os.environ, "LIFTBRIDGE_BROKERS": address, "COLUMNS": "200"}

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pyliftbridge", *args]

    def __call__(
        self,
        *args: str,
        input: bytes | str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Result:
        proc = subprocess.run(
            self.command(*args),
            input=input.encode() if isinstance(input, str) else input,
            capture_output=True,
            env=env or self.env,
            timeout=timeout,
            check=False,
        )
        return Result(
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
            proc.stdout,
        )

    def ok(self, *args: str, **kwargs: Any) -> Result:
        """Run and insist on exit status 0."""
        result = self(*args, **kwargs)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            **kwargs,
        )


def assert_one_error_line(result: Result, code: int, *needles: str) -> None:
    """Exit status ``code``, no traceback, and one stderr line naming the problem."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
