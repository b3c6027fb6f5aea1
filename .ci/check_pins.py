"""Fail when the installed packages differ from the committed pins (constraints.txt).

CI installs from the pins; a machine that reused an older environment would test other versions
than a user gets, and pass where a fresh install fails. Usage: python .ci/check_pins.py constraints.txt
"""
from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)")


def differences(path: Path) -> list[str]:
    """One line per pinned package installed at another version, or missing."""
    out = []
    for line in path.read_text().splitlines():
        m = PIN.match(line.strip())
        if not m:
            continue
        name, pinned = m.groups()
        try:
            have = version(name)
        except PackageNotFoundError:
            out.append(f"{name}: pinned {pinned}, not installed")
            continue
        if have != pinned:
            out.append(f"{name}: pinned {pinned}, installed {have}")
    return out


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "constraints.txt")
    found = differences(path)
    if found:
        print(f"{path}: {len(found)} installed package(s) differ from the pins "
              "(rm -rf .venv && make install, or after make test-latest passes: make pins):", file=sys.stderr)
        for line in found:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"{path}: every pinned package is installed at its pinned version")
    return 0


if __name__ == "__main__":
    sys.exit(main())
