#!/usr/bin/env python3
"""Store put/get: Mooncake's wheel against ours, same machine, same session, interleaved.

For each run, in alternating order, benches/store_bench.py `run` (scenarios remote and local):
  wheel : with the wheel's venv (its mooncake_master, its mooncake.store);
  ours  : the same file, unchanged, with our python/ package first on PYTHONPATH (OURS_PYTHON,
          default the wheel's interpreter, so both run the same Python) and our
          target/release/mooncake_master;
  rust  : `mooncake-bench store` (the same rounds in Rust, no Python in the loop), shown for
          reference only; ratios compare Python against Python.
Prints a Markdown table of medians over the runs: p50 latency (us) and GB/s for put and get,
with the ratio ours/wheel per run (latency: lower is better; GB/s: higher is better).

Knobs: RUNS (3), SIZES (4096,16777216), APIS (bytes,zerocopy,batch_zc), DURATION (1),
SEGMENT_MIB (1024), WHEEL_PYTHON (~/.cache/mooncake-anchor/venv/bin/python), OURS_PYTHON,
OUT (dir), SCENARIOS (remote,local), RUST (1; 0 skips `mooncake-bench store`, which has no
batch_multi API: its column is then nan).
Example: RUNS=3 python3 benches/compare_store.py > /tmp/store.md
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BENCH = os.path.join(HERE, "store_bench.py")
WHEEL_PY = os.environ.get("WHEEL_PYTHON", os.path.expanduser("~/.cache/mooncake-anchor/venv/bin/python"))
OURS_PY = os.environ.get("OURS_PYTHON", WHEEL_PY)
RUNS = int(os.environ.get("RUNS", "3"))
SIZES = os.environ.get("SIZES", "4096,16777216")
APIS = os.environ.get("APIS", "bytes,zerocopy,batch_zc")
DURATION = os.environ.get("DURATION", "1")
SEGMENT_MIB = os.environ.get("SEGMENT_MIB", "1024")
SCENARIOS = os.environ.get("SCENARIOS", "remote,local")
RUST = os.environ.get("RUST", "1") != "0"
OUT = os.environ.get("OUT") or tempfile.mkdtemp(prefix="mooncake-store-compare.")
RELEASE = os.path.join(ROOT, "target", "release")
os.makedirs(OUT, exist_ok=True)


def bench_run(log, python, env=None, extra=()):
    out = subprocess.run([python, BENCH, "run", "--segment-mib", SEGMENT_MIB, "--apis", APIS, "--sizes", SIZES,
                          "--duration", DURATION, "--scenarios", SCENARIOS, "--log", os.path.join(OUT, "servers.log"), *extra],
                         env=env, capture_output=True, text=True, timeout=1800, check=False)
    log.write(out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"store_bench.py under {python} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)["rows"]


def wheel_run(log):
    return bench_run(log, WHEEL_PY, {k: v for k, v in os.environ.items() if k != "PYTHONPATH"})


def ours_run(log):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"),
               MOONCAKE_LIB=os.path.join(RELEASE, "libmooncake.so"))
    return bench_run(log, OURS_PY, env, ["--master-bin", os.path.join(RELEASE, "mooncake_master")])


def rust_run(log):
    out = subprocess.run([os.path.join(RELEASE, "mooncake-bench"), "store", "--json", f"--sizes={SIZES}",
                          f"--apis={APIS}", f"--duration={DURATION}", f"--segment_mib={SEGMENT_MIB}"],
                         capture_output=True, text=True, timeout=1800, check=False)
    log.write(out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"mooncake-bench store failed: {out.stderr[-2000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def key(row):
    return (row["scenario"], row["api"], int(row["size"]))


def main():
    results = {"wheel": [], "ours": [], "rust": []}
    with open(os.path.join(OUT, "log.txt"), "w") as log:
        for run in range(RUNS):
            order = [("wheel", wheel_run), ("ours", ours_run)]
            if run % 2:
                order.reverse()
            for name, fn in order + ([("rust", rust_run)] if RUST else []):
                print(f"run {run + 1}/{RUNS}: {name}", file=sys.stderr, flush=True)
                results[name].append({key(r): r for r in fn(log)})
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump({k: [{"|".join(map(str, kk)): v for kk, v in run.items()} for run in runs]
                   for k, runs in results.items()}, f, indent=1)
    print("| scenario | api | size | phase | wheel p50 us | ours p50 us | ratio | rust p50 us | "
          "wheel GB/s | ours GB/s | ratio | rust GB/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k in sorted(results["wheel"][0]):
        for phase in ("put", "get"):
            def med(name, field, k=k, phase=phase):
                vals = [run[k][phase][field] for run in results[name] if k in run]
                return statistics.median(vals) if vals else float("nan")

            def ratio(field, k=k, phase=phase):
                vals = [o[k][phase][field] / w[k][phase][field]
                        for w, o in zip(results["wheel"], results["ours"], strict=True) if k in w and k in o]
                return statistics.median(vals) if vals else float("nan")

            print(f"| {k[0]} | {k[1]} | {k[2]} | {phase} | {med('wheel', 'lat_p50_us'):.1f} | "
                  f"{med('ours', 'lat_p50_us'):.1f} | {ratio('lat_p50_us'):.2f}x | {med('rust', 'lat_p50_us'):.1f} | "
                  f"{med('wheel', 'GBps'):.3f} | {med('ours', 'GBps'):.3f} | {ratio('GBps'):.2f}x | "
                  f"{med('rust', 'GBps'):.3f} |")
    print(f"\nRaw results: {OUT}/results.json", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
