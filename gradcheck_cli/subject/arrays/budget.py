"""The memory budget: how much memory loading one array may take, and sizes as people read them.

A small hostile file must not make us allocate gigabytes: the readers hold what a file declares
(a .npy header's shape, an .npz member's uncompressed size, a CSV's length) against this budget
before they allocate anything.
"""

from __future__ import annotations

import os
import re
from contextlib import suppress

from gradcheck_cli.subject.arrays.files import LoadError

MEMORY_BUDGET_VARIABLE = "GRADCHECK_MEMORY_BUDGET"
"""Environment variable that sets the memory budget: bytes, or a size such as 512M or 2G."""
MEMORY_BUDGET_SHARE = 8
"""Without the variable, the budget is the available memory divided by this: checking an input
keeps about six arrays of its size at once (a perturbed copy, the two gradients, the steps, the
error estimates), and there are usually two inputs or more."""
MEMORY_BUDGET_FLOOR = 64 * 2**20
"""The default budget is never below this (64 MiB), however little memory seems available."""
MEMORY_BUDGET_FALLBACK = 4 * 2**30
"""The default budget (4 GiB) where the available memory cannot be read."""

RAISE_BUDGET = f"set {MEMORY_BUDGET_VARIABLE} to allow more"
"""Said wherever the budget refuses a file."""

_SIZE_SUFFIXES = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE_TEXT = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)


def memory_budget() -> int:
    """The most memory, in bytes, that loading one array may take.

    `GRADCHECK_MEMORY_BUDGET` if set (bytes, or a number with K, M, G or T, binary multiples:
    `512M`, `2G`, `1.5GiB`); else the memory available now (MemAvailable, lowered to a cgroup's
    limit) divided by MEMORY_BUDGET_SHARE, at least MEMORY_BUDGET_FLOOR; MEMORY_BUDGET_FALLBACK
    where neither can be read. Read at every load: the available memory changes.
    """
    text = os.environ.get(MEMORY_BUDGET_VARIABLE, "")
    if not text.strip():
        available = _available_memory()
        if available is None:
            return MEMORY_BUDGET_FALLBACK
        return max(available // MEMORY_BUDGET_SHARE, MEMORY_BUDGET_FLOOR)
    match = _SIZE_TEXT.fullmatch(text)
    budget = 0
    if match is not None:
        number, suffix = match.groups()
        with suppress(OverflowError):  # more digits than a float holds: refused below
            budget = int(float(number) * _SIZE_SUFFIXES[suffix.lower()])
    if budget <= 0:
        raise LoadError(
            f"{MEMORY_BUDGET_VARIABLE}={text!r}: expected a memory size in bytes, or with K, M, "
            f"G or T such as 512M or 2G"
        )
    return budget


def size_text(n_bytes: int) -> str:
    """A size for people: `872 bytes`, `1.5 KiB`, `7.28 TiB`."""
    if n_bytes < 1024:
        return f"{n_bytes} bytes"
    value = float(n_bytes)
    units = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    for unit in units[:-1]:
        value /= 1024
        if value < 1024:
            return f"{value:.3g} {unit}"
    return f"{value / 1024:.3g} {units[-1]}"


def exact_size_text(n_bytes: int) -> str:
    """A size to the byte, with the rounded one beside it when it is large."""
    if n_bytes < 1024:
        return f"{n_bytes} bytes"
    return f"{n_bytes} bytes ({size_text(n_bytes)})"


def _available_memory() -> int | None:
    """Bytes of memory available now: MemAvailable, lowered to what a cgroup (a container)
    still allows; os.sysconf's free pages where /proc is not there; None if nothing says."""
    amounts: list[int] = []
    meminfo = read_small_text("/proc/meminfo")
    found = re.search(r"^MemAvailable:\s*(\d+)\s*kB", meminfo, re.MULTILINE)
    if found:
        amounts.append(int(found.group(1)) * 1024)
    limit = read_small_text("/sys/fs/cgroup/memory.max").strip()  # "max" when unlimited
    used = read_small_text("/sys/fs/cgroup/memory.current").strip()
    if limit.isdigit() and used.isdigit():
        amounts.append(max(int(limit) - int(used), 0))
    if not amounts:
        # No sysconf on Windows; no SC_AVPHYS_PAGES on macOS.
        with suppress(AttributeError, ValueError, OSError):
            amounts.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return min(amounts) if amounts else None


def read_small_text(path: str) -> str:
    """The first 64 KiB of a system file such as /proc/meminfo, or "" where it cannot be read
    (the tests put other machines' files in its place)."""
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read(1 << 16)
    except OSError:
        return ""
