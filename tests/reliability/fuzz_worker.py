"""The fuzz's long-lived worker: runs many CLI cases in one process (imports paid once).

Protocol: one JSON object a line on stdin, ``{"args": [...], "cwd": DIR}``; one JSON object a
line back on the file descriptor given as ``argv[1]``: the exit code, the CLI's stdout and
stderr, the exception if one escaped the CLI (type and traceback), whatever the process wrote
to its real stdout and stderr meanwhile (children, C libraries), and the case's peak resident
memory (``VmHWM``, reset before each case through ``/proc/self/clear_refs``).

Run by :mod:`tests.reliability.fuzz_harness`; not a test module.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        match = re.search(r"VmHWM:\s+(\d+) kB", fh.read())
    return int(match.group(1)) * 1024 if match else 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def main() -> None:
    reply = os.fdopen(int(sys.argv[1]), "w", buffering=1)
    log_path = sys.argv[2]
    # the real stdout/stderr go to a log: stray writes can neither corrupt the protocol nor hide
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.environ.pop("CODESIGN_DEBUG", None)

    from typer.testing import CliRunner

    from codesign.cli import app

    runner = CliRunner()
    reply.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        case = json.loads(line)
        os.chdir(case["cwd"])
        log_start = os.lseek(log_fd, 0, os.SEEK_END)
        _reset_peak()
        result = runner.invoke(app, case["args"], catch_exceptions=True)
        peak = _peak_rss_bytes()
        exc = result.exception
        escaped = None
        if exc is not None and not isinstance(exc, SystemExit):
            escaped = "".join(traceback.format_exception(exc))
        with open(log_path, "rb") as fh:
            fh.seek(log_start)
            stray = fh.read(20000).decode("utf-8", "replace")
        reply.write(
            json.dumps(
                {
                    "exit_code": result.exit_code,
                    "stdout": result.stdout[-20000:],
                    "stderr": result.stderr[-20000:],
                    "escaped": escaped,
                    "stray": stray,
                    "peak_rss_bytes": peak,
                }
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
