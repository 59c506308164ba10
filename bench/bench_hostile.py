"""What a hostile spec costs `hpt compile` before it is refused: wall time and peak memory, against a plain spec.

    .venv/bin/python bench/bench_hostile.py

Each spec runs `hpt compile` in its own process (an address-space limit of 1.5 GiB, so a regression fails
instead of eating the machine); the process reports its own peak RSS. The baseline, in the same run: a
small valid spec compiled to a 2-trial plan. Printed per spec: exit code, wall seconds, peak MiB, and the
ratio of each to the baseline. The issue's bounds: every refusal exit 2 in under 10 s and 500 MB.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
from hpt.cli import main
sys.argv = ["hpt"] + sys.argv[1:]
try:
    main()
finally:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec (it would report a large parent's)
    peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    sys.stderr.write("\\nPEAK %d\\n" % (peak * 1024))
"""
BASE = {"architecture": "bag-of-words", "date-range": [["2010-09-01", "2010-11-01"]],
        "parameters": {"learning_rate": [0.001, 0.01]}, "epochs": 1}


def specs() -> dict[str, tuple[str, str]]:
    laughs = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))
    grid = {"learning_rate": [round(1e-5 * (i + 1), 6) for i in range(100)], "batch_size": list(range(8, 108)),
            "max_tokens": list(range(1, 101))}
    return {
        "baseline (2 trials)": (json.dumps(BASE), "json"),
        "YAML billion laughs (9 x 9)": ("architecture: bag-of-words\n" + laughs, "yaml"),
        "JSON arrays 100,000 deep": ('{"architecture": "bag-of-words", "description": ' + "[" * 100_000 + "]" * 100_000 + "}", "json"),
        "JSON objects 3,000 deep": ('{"architecture": "bag-of-words", "description": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}", "json"),
        "YAML flow 50,000 deep": ("architecture: bag-of-words\ndescription: " + "[" * 50_000 + "]" * 50_000 + "\n", "yaml"),
        "1,000,000-value list (9 MB)": ('{"architecture": "bag-of-words", "parameters": {"learning_rate": [' +
                                        ",".join(f"{1e-5 + i * 1e-12:.12g}" for i in range(1_000_000)) + "]}}", "json"),
        "80,000-value list (0.9 MB)": ('{"architecture": "bag-of-words", "parameters": {"learning_rate": [' +
                                        ",".join(f"{1e-5 + i * 1e-9:.9g}" for i in range(80_000)) + "]}}", "json"),
        "random search trials 10^9": (json.dumps(BASE | {"parameters": {"learning_rate": {"distribution": "log-uniform", "min": 1e-5, "max": 0.1}},
                                                          "search": {"method": "random", "trials": 10**9}}), "json"),
        "10^6 configs x 100 repeats": (json.dumps(BASE | {"parameters": grid, "repeats": 100}), "json"),
    }


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"HPT_DEMO_DATA": str(Path(tmp) / "no-demo"), "NO_GCE_CHECK": "True"}
        for i, (name, (text, ext)) in enumerate(specs().items()):
            spec = Path(tmp) / f"spec{i}.{ext}"
            spec.write_text(text, encoding="utf-8")
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", CHILD, "compile", str(spec), "--out", str(Path(tmp) / f"plan{i}"),
                                   "--today", "2026-11-26"], capture_output=True, text=True, env=env, timeout=120)
            wall = time.perf_counter() - start
            peak = int(proc.stderr.rsplit("PEAK ", 1)[1]) if "PEAK " in proc.stderr else -1
            message = next((line for line in proc.stderr.splitlines() if line.startswith("error:")), "")
            rows.append((name, spec.stat().st_size, proc.returncode, wall, peak, message))
    base_wall, base_peak = rows[0][3], rows[0][4]
    print(f"{'spec':32} {'bytes':>10} {'exit':>4} {'wall s':>7} {'x base':>6} {'peak MiB':>8} {'x base':>6}  message")
    for name, size, code, wall, peak, message in rows:
        print(f"{name:32} {size:>10,} {code:>4} {wall:>7.2f} {wall / base_wall:>6.2f} {peak / 2**20:>8.0f} "
              f"{peak / base_peak:>6.2f}  {message[:90]}")


if __name__ == "__main__":
    main()
