"""Import cost: `import veneer`, `from veneer import Cache` / `AsyncCache` and `veneer --help`
against `import redis`, each in a fresh interpreter, in one run.

Each case is timed as the wall time of ``python -c CODE`` minus that of
``python -c pass``, best of N interleaved rounds (the best is the cost without
the machine's noise; imports do no I/O that the best would hide).
"""

from __future__ import annotations

import subprocess
import sys
import time

CASES = {
    "import redis (baseline)": "import redis",
    "import veneer": "import veneer",
    "from veneer import Cache": "from veneer import Cache",
    "from veneer import AsyncCache": "from veneer import AsyncCache",
    "veneer --help": (
        "from veneer.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    ),
}
ROUNDS = 15


def run(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    best = {name: float("inf") for name in ["pass", *CASES]}
    codes = {"pass": "pass", **CASES}
    for _ in range(ROUNDS):
        for name, code in codes.items():
            best[name] = min(best[name], run(code))
    base = best["import redis (baseline)"] - best["pass"]
    print(f"interpreter start: {best['pass'] * 1000:.1f} ms (subtracted)")
    print("| case | ms | ratio to import redis |")
    print("| --- | ---: | ---: |")
    for name in CASES:
        cost = best[name] - best["pass"]
        print(f"| {name} | {cost * 1000:.1f} | {cost / base:.2f}x |")


if __name__ == "__main__":
    main()
