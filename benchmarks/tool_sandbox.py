"""What isolating a tool call costs: calls per second and latency per call of the python tool in each
`agent.sandbox` mode, beside a bare `python -I -c` subprocess (what a call cost before any sandbox) and
the calculator, one at a time and `--parallel` at once (the agent loop runs a step's calls concurrently).

    python benchmarks/tool_sandbox.py --calls 100 --parallel 16
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from core.agent.python_tool import PythonExecutor
from core.agent.sandbox import namespaces_missing
from core.agent.tools import Calculator

CODE = "print(sum(i * i for i in range(1000)))"


def bare_subprocess(code: str) -> str:
    return subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=30).stdout


def measure(call, calls: int, parallel: int) -> tuple[float, float, float]:
    """(calls per second, median latency ms, 95th percentile latency ms)."""
    call(CODE)  # warm the page cache and the namespace probe

    def timed(_):
        started = time.perf_counter()
        call(CODE)
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        latencies = sorted(pool.map(timed, range(calls)))
    elapsed = time.perf_counter() - started
    return calls / elapsed, 1000 * statistics.median(latencies), 1000 * latencies[int(0.95 * (len(latencies) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=16)
    args = parser.parse_args()
    contenders = {"bare `python -I -c` (no sandbox)": bare_subprocess,
                  "agent.sandbox=process": PythonExecutor(sandbox="process").run}
    if namespaces_missing() is None:
        contenders["agent.sandbox=namespaces"] = PythonExecutor(sandbox="namespaces").run
    else:
        print(f"(no namespaces on this host: {namespaces_missing()})")
    calculator = Calculator()
    contenders["calculator (in process)"] = lambda _: calculator.run("(3 + 4) * -2 ** 10")
    print(f"| tool | one at a time: calls/s | median ms | p95 ms | {args.parallel} at once: calls/s | median ms |")
    print("|---|---|---|---|---|---|")
    medians = {}
    for name, call in contenders.items():
        alone = measure(call, args.calls, 1)
        together = measure(call, args.calls, args.parallel)
        medians[name] = alone[1]
        print(f"| {name} | {alone[0]:.1f} | {alone[1]:.1f} | {alone[2]:.1f} | {together[0]:.1f} | {together[1]:.1f} |")
    bare = medians["bare `python -I -c` (no sandbox)"]
    for name in ("agent.sandbox=process", "agent.sandbox=namespaces"):
        if name in medians:
            print(f"{name}: {medians[name] - bare:+.1f} ms a call over a bare subprocess (median, one at a time)")


if __name__ == "__main__":
    main()
