"""``key=value`` command-line arguments for the small non-Hydra commands (``equilab-sample``,
``equilab-eval-property``): unknown keys and missing required ones are one-line errors."""
from __future__ import annotations

from typing import Dict, Iterable, Mapping

from equilab.errors import ConfigError


def parse_kv(argv: Iterable[str], known: Iterable[str], required: Mapping[str, str]) -> Dict[str, str]:
    """Parse ``key=value`` arguments.

    Args:
        argv: the arguments.
        known: every accepted key.
        required: required key -> what to write in the error when it is missing.
    """
    known = set(known)
    out = {}
    for a in argv:
        if "=" not in a:
            raise ConfigError(f"argument {a!r} is not of the form key=value")
        k, v = a.split("=", 1)
        out[k] = v
    bad = sorted(set(out) - known)
    if bad:
        raise ConfigError(f"unknown argument(s) {bad}; known: {sorted(known)}")
    for key, hint in required.items():
        if key not in out:
            raise ConfigError(f"missing {key}={hint}")
    return out


def int_arg(kv: Mapping[str, str], key: str, default, *, minimum: int | None = None):
    """``kv[key]`` as an int (``default`` when absent); a non-integer, or one below ``minimum``,
    is a one-line error naming the argument."""
    v = kv.get(key, default)
    if v is None:
        return None
    try:
        out = int(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={v!r} is not an integer") from None
    if minimum is not None and out < minimum:
        raise ConfigError(f"{key}={out} must be at least {minimum}")
    return out
