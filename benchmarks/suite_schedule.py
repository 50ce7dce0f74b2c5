"""Whether `make test`'s two xdist workers idle: a run's per-test times replayed through xdist's scheduling.

    .venv/bin/python -m pytest test -n 2 --dist loadfile --junitxml=run.xml ...   # any run's junit
    .venv/bin/python benchmarks/suite_schedule.py run.xml [--workers 2] [--split FILE ...] [--only test_training]

Prints the longest files and when each worker ends under xdist's own order (`--loadscope-reorder`, its
default: the files with most tests first), under longest-file-first (`--no-loadscope-reorder` with the files
collected in that order) and with each `--split` file cut into two files of half its tests, against the
end with no worker idle (the tests' seconds / workers). The replay follows xdist 3's loadfile scheduler: a
worker gets its next file once 2 or fewer of its tests are left. Answers "would another order or a split
file finish sooner"; it cannot tell what a test costs (run the file with `--durations`).
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from collections import deque
from pathlib import Path


def per_test_seconds(junit: Path) -> dict[str, list[float]]:
    """File stem -> its tests' seconds, in the order they ran."""
    files: dict[str, list[float]] = {}
    for case in ET.parse(junit).iter("testcase"):
        files.setdefault(case.get("classname", "").rpartition(".")[2], []).append(float(case.get("time", 0)))
    return files


def replay(files: dict[str, list[float]], order: list[str], workers: int) -> list[float]:
    """Each worker's finish time when the files are handed out in `order` (xdist's loadfile refill rule)."""
    queue, pending, clock = deque(order), [deque() for _ in range(workers)], [0.0] * workers

    def refill(w: int) -> None:
        while queue and len(pending[w]) <= 2:
            pending[w].extend(files[queue.popleft()])

    for w in range(workers):  # one file each, then each tops up to more than 2 tests
        if queue:
            pending[w].extend(files[queue.popleft()])
    for w in range(workers):
        refill(w)
    while any(pending):
        w = min((w for w in range(workers) if pending[w]), key=lambda w: clock[w])
        clock[w] += pending[w].popleft()
        refill(w)
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("junit", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--split", nargs="*", default=[], help="file stems to replay as two files each")
    parser.add_argument("--only", default="test_", help="replay only the files whose stem starts so")
    args = parser.parse_args()
    files = {k: v for k, v in per_test_seconds(args.junit).items() if k.startswith(args.only)}
    for name in args.split:
        tests = files.pop(name)
        files[name], files[f"{name}_2"] = tests[: len(tests) // 2], tests[len(tests) // 2 :]
    total = sum(map(sum, files.values()))
    busy = total / args.workers
    print(f"{len(files)} files, {total:.0f} s of tests; {args.workers} workers never idle would take {busy:.0f} s")
    for name in sorted(files, key=lambda f: -sum(files[f]))[:20]:
        print(f"  {sum(files[name]):7.1f} s {len(files[name]):4d} tests  {name}")
    by_name = sorted(files)  # pytest collects test/ alphabetically
    xdist = sorted(by_name, key=lambda f: -len(files[f]))
    longest = sorted(by_name, key=lambda f: -sum(files[f]))
    for label, order in (("xdist's order (most tests first)", xdist), ("longest file first", longest)):
        ends = replay(files, order, args.workers)
        print(f"{label:34s} ends at {max(ends):7.0f} s (workers: {', '.join(f'{e:.0f}' for e in ends)})")


if __name__ == "__main__":
    main()
