"""Container HEALTHCHECK: liveness of the process in this container, without any dependency.

The image serves every process type, but only web (gunicorn) and ws (daphne) listen on HTTP. The check reads
PID 1's command line (the entrypoint execs the process, so PID 1 *is* it) and, for those two, GETs /healthz on
the local port. Other processes are healthy while they run: ECS replaces a task whose essential container
exits. Standard library only, so it costs a few milliseconds and needs no Django import.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path


def _pid1_cmdline() -> str:
    try:
        return Path("/proc/1/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def main() -> int:
    cmdline = _pid1_cmdline()
    if "gunicorn" in cmdline:
        port = os.environ.get("PORT", "8000")
    elif "daphne" in cmdline:
        port = os.environ.get("WS_PORT", "8001")
    else:
        return 0
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
