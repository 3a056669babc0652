"""The lock that makes one process the only one running a sweep folder."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import socket
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


LOCK_FILE = ".sweep.lock"


HEARTBEAT_S = 30.0


# A lock from another host whose heartbeat is older than this belongs to a dead process.
STALE_AFTER_S = 10 * HEARTBEAT_S


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class SweepLock:
    """`.sweep.lock` in a sweep folder: host, pid and start time of the process running
    the sweep. A second process is refused; a lock whose process is dead (same host: no
    such pid; another host: no heartbeat for STALE_AFTER_S) is taken over."""

    def __init__(self, sweep_dir: Path):
        self.path = Path(sweep_dir) / LOCK_FILE
        self.mine = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.now().isoformat(timespec="seconds"),
        }
        self._stop = threading.Event()

    def holder(self) -> dict[str, Any] | None:
        """The live process holding the lock, or None (no lock, or a stale one)."""
        try:
            held = json.loads(self.path.read_text())
            age = time.time() - self.path.stat().st_mtime
        except (OSError, ValueError):
            return None
        if held.get("host") == self.mine["host"]:
            return held if _alive(int(held.get("pid", -1))) else None
        return held if age < STALE_AFTER_S else None

    def acquire(self) -> dict[str, Any] | None:
        """Take the lock; return the live holder instead when another process has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            tmp = self.path.with_name(f"{LOCK_FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.mine))
            try:
                os.link(tmp, self.path)  # atomic: fails if a lock exists
                break
            except FileExistsError:
                held = self.holder()
                mine = held is not None and (held.get("host"), held.get("pid")) == (
                    self.mine["host"],
                    self.mine["pid"],
                )
                if held is not None and not mine:
                    return held
                if not mine:
                    log.warning("Taking over %s: the process that held it is gone.", self.path)
                self.path.unlink(missing_ok=True)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            return self.holder() or {"host": "?", "pid": "?", "started": "?"}
        atexit.register(self.release)
        threading.Thread(target=self._heartbeat, daemon=True).start()
        return None

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        try:
            if json.loads(self.path.read_text()) == self.mine:
                self.path.unlink()
        except (OSError, ValueError):
            pass
