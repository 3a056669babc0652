"""Secrets kept out of what a run writes: values of secret-named environment variables, redacted."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

# Config keys and environment variables whose values are credentials.
SECRET_NAME = re.compile(
    r"api_?key|access_?key|token|secret|password|passwd|credential", re.IGNORECASE
)


REDACTED = "<redacted>"


def secret_values() -> list[str]:
    """Values of secret-named environment variables, long enough to be worth hiding."""
    return [v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= 8]


def redact_secrets(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of plain dicts/lists/strings with credentials replaced by <redacted>: values
    under secret-named keys, and any environment secret that a value contains."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, Mapping):
        return {
            k: REDACTED
            if SECRET_NAME.search(str(k)) and obj[k] not in (None, "")
            else redact_secrets(obj[k], secrets)
            for k in obj
        }
    if isinstance(obj, (list, tuple)):
        return [redact_secrets(v, secrets) for v in obj]
    if isinstance(obj, str):
        for secret in secrets:
            obj = obj.replace(secret, REDACTED)
        # A `key=value` override whose key names a secret.
        name, sep, value = obj.partition("=")
        if sep and value and SECRET_NAME.search(name) and " " not in name:
            return f"{name}={REDACTED}"
    return obj


@contextmanager
def redacted_argv() -> Iterator[None]:
    """sys.argv with credentials redacted, for the duration (W&B records the command line).
    Restored after, since DDP relaunches the script with it."""
    saved = sys.argv[:]
    sys.argv[:] = redact_secrets(saved)
    try:
        yield
    finally:
        sys.argv[:] = saved
