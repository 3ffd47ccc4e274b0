"""One entry point for every benchmark: run them, stamp their JSON, regenerate RESULTS.md.

    python -m benchmarks                     # every benchmark this machine can run (train_cpt needs a GPU)
    python -m benchmarks eval index          # just these
    python -m benchmarks --quick             # smoke run of all: small sizes, results/quick/ (never the real JSON)
    python -m benchmarks --report            # only regenerate RESULTS.md from results/*.json
    make bench                               # = python -m benchmarks

Each benchmark runs as its own process (`python benchmarks/NAME.py ...`), so a crash or a peak RSS of one
never touches the others. A result file that lacks ``when``, ``device`` or ``versions`` gets them added
afterwards, so every section of RESULTS.md says where and when its numbers came from.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
QUICK = RESULTS / "quick"


@dataclass(frozen=True)
class Bench:
    script: str
    full: list[str] = field(default_factory=list)
    quick: list[str] = field(default_factory=list)
    gpu_only: bool = False   # the full run needs CUDA (the quick one runs anywhere)
    gpu_extra: list[str] = field(default_factory=list)  # added to the full run on a GPU machine


BENCHMARKS: dict[str, Bench] = {
    "encode": Bench("encode.py", quick=["--pages", "2", "--preset", "tiny"], gpu_extra=["--gpu-3b"]),
    "index": Bench("index.py", quick=["--quick"]),
    "store_query": Bench("store_query.py", quick=["--n", "1000", "--queries", "20", "--configs", "64:exact",
                                                  "--out", str(QUICK / "store_query.json")]),
    "train_cpt": Bench("train_cpt.py", quick=["--smoke"], gpu_only=True),
    "eval": Bench("eval.py", quick=["--quick"]),
    "cpt_ablation": Bench("cpt_ablation.py", quick=["--quick"], gpu_only=True),
    "learns": Bench("learns.py", full=["--ablation"], quick=["--quick"]),
    "train_contrastive": Bench("train_contrastive.py", quick=["--smoke"], gpu_only=True),
    "ocr": Bench("ocr.py", quick=["--pages", "2", "--rapid-pages", "1"]),
    "fusion": Bench("fusion.py", quick=["--tiny-text-encoder", "--pages", "6"]),
    "quality": Bench("quality.py", quick=["--quick"]),
    "text_models": Bench("text_models.py", quick=["--only", "builtin"]),
}

# Runs a benchmark script with benchmarks.common's results folder pointed elsewhere (quick runs).
_LAUNCH = """
import runpy, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import benchmarks.common as common
common.RESULTS = Path(sys.argv[2])
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def run(names: list[str], quick: bool) -> dict[str, int]:
    cuda = _cuda()
    out_dir = QUICK if quick else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    codes: dict[str, int] = {}
    for name in names:
        bench = BENCHMARKS[name]
        if bench.gpu_only and not quick and not cuda:
            print(f"== {name}: skipped (needs a CUDA GPU; `python -m benchmarks --quick {name}` checks the script)")
            continue
        args = bench.quick if quick else bench.full + (bench.gpu_extra if cuda else [])
        script = str(HERE / bench.script)
        cmd = ([sys.executable, "-c", _LAUNCH, str(ROOT), str(out_dir), script, *args] if quick
               else [sys.executable, script, *args])
        shown = " ".join(["python", f"benchmarks/{bench.script}", *args])
        print(f"== {name}: {shown}", flush=True)
        before = _mtimes(out_dir)
        started = time.time()
        codes[name] = subprocess.call(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        for path in _changed(out_dir, before):
            stamp(path, shown, started)
        print(f"== {name}: {'ok' if codes[name] == 0 else f'failed (exit {codes[name]})'} "
              f"in {time.time() - started:.0f} s", flush=True)
    return codes


def _mtimes(folder: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in folder.glob("*.json")}


def _changed(folder: Path, before: dict[Path, float]) -> list[Path]:
    return [p for p, t in _mtimes(folder).items() if before.get(p) != t]


def stamp(path: Path, command: str, started: float) -> None:
    """Add what a result file lacks of: when, device, versions, command."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return
    if not isinstance(data, dict):
        return
    from benchmarks.common import device_name
    from benchmarks.eval import versions

    data.setdefault("when", time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)))
    data.setdefault("device", device_name())
    data.setdefault("versions", versions())
    data.setdefault("command", command)
    path.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (all)")
    ap.add_argument("--quick", action="store_true", help="smoke run at small sizes; writes results/quick/")
    ap.add_argument("--report", action="store_true", help="only regenerate RESULTS.md from the JSON")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from benchmarks import report

    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    codes = {} if args.report else run(args.names or list(BENCHMARKS), args.quick)
    if args.quick:
        for p in QUICK.glob("*.json"):  # index-quick.json, train_cpt-smoke.json: the names the notes use
            for tag in ("-quick", "-smoke"):
                if p.stem.endswith(tag):
                    p.replace(p.with_name(p.stem[: -len(tag)] + ".json"))
        out = report.write(QUICK, QUICK / "RESULTS.md")
    else:
        out = report.write()
    print(f"wrote {out.relative_to(ROOT)}")
    failed = [n for n, c in codes.items() if c]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
