"""`docrag train pipeline`: a domain variant end to end -- your PDFs in, a better encoder out, and its score.

Phases, in order (``OUT/work`` holds what they make):

1. ``eval-set``    pages split (seeded) into test and train, queries made from the test pages' text
                   (`app.evaluation.build`, the `docrag eval build` builder). Test pages are never trained on.
2. ``cpt-data``    every train page as a CPT row: page image + text layer (`docrag train data cpt`'s builder).
3. ``pairs``       contrastive pairs: queries synthesised from each train page's text -> its page image.
4. ``eval-before`` the base encoder on the test queries (visual) and BM25 (text), through `docrag eval`'s runner.
5. ``cpt``         MoCa stage 1 (MLM + MAE) on the CPT rows; ``steps_cpt=0`` skips it.
6. ``contrastive`` MoCa stage 2 (InfoNCE) on the pairs, from the CPT output.
7. ``eval-after``  the trained encoder on the same test queries; its visual RRF weight calibrated on half of them
                   and checked on the other half (`docrag eval calibrate`'s tuner).
8. ``export``      the final encoder into OUT (``docrag index --encoder OUT``; its ``docrag_encoder.json`` holds the
                   calibrated weight, which search uses for it) and ``OUT/eval.json``:
                   ``{"before": {"ndcg@5": ...}, "after": {...}, "bm25": {...}}`` (and the other metrics).

Each finished phase is recorded in ``OUT/pipeline.json`` with the run's settings: a rerun skips finished
phases, the training phases resume from their own checkpoints, and a rerun with other settings is refused
(a new ``--out`` starts afresh). ``--preset`` picks the training recipe (packaged stage configs, steps,
image resolution); ``--base`` the starting encoder (a preset name for random init, a folder, a hub id).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .pipeline_data import build_page_pairs, build_train_cpt_data, held_out_pages

STATE_FILE = "pipeline.json"
EVAL_FILE = "eval.json"
STATE_VERSION = 1
PHASES: tuple[tuple[str, str], ...] = (
    ("eval-set", "evaluation set and held-out split"),
    ("cpt-data", "CPT data from the train pages"),
    ("pairs", "contrastive pairs from the train pages"),
    ("eval-before", "evaluation of the base encoder (and BM25)"),
    ("cpt", "continual pre-training (MLM + MAE)"),
    ("contrastive", "contrastive fine-tuning"),
    ("eval-after", "evaluation of the trained encoder"),
    ("export", "final encoder and eval.json"),
)
PHASE_NAMES = tuple(name for name, _ in PHASES)
MERGED = 28 * 28  # pixels per merged visual token


class PipelineError(ValueError):
    """Bad input or a state the pipeline cannot continue from; one line for the user."""


@dataclass(frozen=True)
class PipelinePreset:
    """A training recipe: the packaged stage configs, default steps, render resolution, config overrides."""

    cpt_config: str
    cl_config: str
    steps_cpt: int
    steps_cl: int
    dpi: int
    cpt: dict = field(default_factory=dict)
    cl: dict = field(default_factory=dict)


PIPELINE_PRESETS: dict[str, PipelinePreset] = {
    # CPU in minutes: small pages (16-64 visual tokens), short rows, a high learning rate for a random model.
    "tiny": PipelinePreset("tiny", "tiny", 50, 50, 72),
    # A small model on one GPU in minutes: 64-256 visual tokens per page.
    "small": PipelinePreset("tiny", "tiny", 400, 400, 96,
                            cpt={"min_pixels": 64 * MERGED, "max_pixels": 256 * MERGED, "max_len": 512,
                                 "token_budget": 16384, "train.lr": 5e-4, "train.precision": "auto"},
                            cl={"min_pixels": 64 * MERGED, "max_pixels": 256 * MERGED, "batch_size": 32,
                                "train.lr": 2e-4, "train.precision": "auto"}),
    # The paper's settings (moca_train/configs/{cpt,cl}_3b.yaml); steps sized for a domain's pages.
    "3b": PipelinePreset("3b", "3b", 2000, 1000, 144),
}


@dataclass
class PipelineOptions:
    pdfs: list[Path]
    base: str
    out: Path
    preset: str = "tiny"
    steps_cpt: int | None = None           # None: the preset's; 0 skips CPT
    steps_cl: int | None = None
    seed: int = 0
    split: float = 0.2                     # fraction of pages held out for testing
    eval_queries_per_page: int = 2
    pair_queries_per_page: int = 3
    dpi: int | None = None                 # None: the preset's
    min_pixels: int | None = None          # None: the stage configs'
    max_pixels: int | None = None
    llm: bool = False                      # LLM-written questions too (needs a configured LLM)
    processor: str | None = None           # tokenizer/image processor for a base without one

    def settings(self) -> dict[str, Any]:
        """What a rerun must match (recorded in pipeline.json)."""
        p = PIPELINE_PRESETS[self.preset]
        return {"pdfs": [str(Path(x).expanduser().resolve()) for x in self.pdfs], "base": self.base,
                "preset": self.preset, "steps_cpt": self.steps_cpt if self.steps_cpt is not None else p.steps_cpt,
                "steps_cl": self.steps_cl if self.steps_cl is not None else p.steps_cl, "seed": self.seed,
                "split": self.split, "eval_queries_per_page": self.eval_queries_per_page,
                "pair_queries_per_page": self.pair_queries_per_page, "dpi": self.dpi or p.dpi,
                "min_pixels": self.min_pixels, "max_pixels": self.max_pixels, "llm": self.llm,
                "processor": self.processor}


class Bar:
    """A progress bar handle (the CLI's is a rich task); this one shows nothing."""

    def advance(self, n: int = 1) -> None: ...

    def update(self, completed: int) -> None: ...


class PipelineEvents:
    """Progress hooks; the library default shows nothing."""

    def phase(self, number: int, total: int, name: str, title: str, skipped: bool) -> None: ...

    def phase_done(self, name: str, summary: dict) -> None: ...

    @contextlib.contextmanager
    def bar(self, description: str, total: int | None):
        yield Bar()

    @contextlib.contextmanager
    def evaluation(self):
        from .evaluation.runner import EvalEvents

        yield EvalEvents()

    def note(self, text: str) -> None: ...


@dataclass
class PipelineResult:
    out: Path
    ran: list[str]
    skipped: list[str]
    stopped_after: str | None
    eval: dict | None


class Pipeline:
    def __init__(self, options: PipelineOptions, events: PipelineEvents | None = None) -> None:
        if options.preset not in PIPELINE_PRESETS:
            raise PipelineError(f"unknown preset {options.preset!r}; choose one of {', '.join(PIPELINE_PRESETS)}")
        self.o, self.events = options, events or PipelineEvents()
        self.preset = PIPELINE_PRESETS[options.preset]
        self.settings = options.settings()
        self.out = Path(options.out).expanduser().absolute()
        self.work = self.out / "work"
        self.pdfs = [Path(p) for p in self.settings["pdfs"]]

    # ---- state ---------------------------------------------------------------------------------------------
    def _check_input(self) -> None:
        from indexing.scan import scan

        s = self.settings
        if s["steps_cpt"] < 0 or s["steps_cl"] < 0 or s["steps_cpt"] + s["steps_cl"] == 0:
            raise PipelineError("--steps-cpt and --steps-cl must not be negative, and not both 0")
        if not 0 < s["split"] < 1:
            raise PipelineError(f"--split is the fraction of pages held out for testing, in (0, 1); got {s['split']}")
        files, problems = scan(self.pdfs, exclude=[self.out])
        if not any(f.kind == "pdf" for f in files):
            why = "; ".join(str(p) for p in problems)
            raise PipelineError(f"no PDF files in {', '.join(map(str, self.o.pdfs))}" + (f" ({why})" if why else ""))
        if self.out.exists() and not self.out.is_dir():
            raise PipelineError(f"{self.out}: exists and is not a folder")
        if self.out.is_dir() and any(self.out.iterdir()) and not (self.out / STATE_FILE).is_file():
            raise PipelineError(f"{self.out}: folder is not empty and holds no {STATE_FILE}; choose a new --out")

    def load_state(self) -> dict:
        path = self.out / STATE_FILE
        if not path.is_file():
            return {"version": STATE_VERSION, "settings": self.settings, "done": {}}
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise PipelineError(f"{path}: unreadable ({e}); choose a new --out") from None
        changed = [k for k, v in self.settings.items() if state.get("settings", {}).get(k) != v]
        if changed:
            k = changed[0]
            raise PipelineError(f"{self.out} was made with other settings ({k}: {state['settings'].get(k)!r}, "
                                f"now {self.settings[k]!r}); use a new --out to start afresh")
        return state

    def _save_state(self, state: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        _write_json(self.out / STATE_FILE, state)

    # ---- running -------------------------------------------------------------------------------------------
    def run(self, stop_after: str | None = None) -> PipelineResult:
        """Run the phases not yet finished; ``stop_after`` ends the run once that phase is done."""
        if stop_after is not None and stop_after not in PHASE_NAMES:
            raise PipelineError(f"unknown phase {stop_after!r}; choose one of {', '.join(PHASE_NAMES)}")
        self._check_input()
        state = self.load_state()
        self._save_state(state)
        ran, skipped = [], []
        for number, (name, title) in enumerate(PHASES, 1):
            done = name in state["done"]
            self.events.phase(number, len(PHASES), name, title, skipped=done)
            if not done:
                summary = getattr(self, "_" + name.replace("-", "_"))(state)
                state["done"][name] = summary
                self._save_state(state)
                self.events.phase_done(name, summary)
                ran.append(name)
            else:
                skipped.append(name)
            if name == stop_after:
                return PipelineResult(self.out, ran, skipped, name, None)
        return PipelineResult(self.out, ran, skipped, None, json.loads((self.out / EVAL_FILE).read_text()))

    # ---- phases --------------------------------------------------------------------------------------------
    @property
    def eval_dir(self) -> Path:
        return self.work / "eval"

    @property
    def cpt_jsonl(self) -> Path:
        return self.work / "cpt-data" / "pages.jsonl"

    @property
    def pairs_jsonl(self) -> Path:
        return self.work / "pairs.jsonl"

    def _eval_set(self, state: dict) -> dict:
        from .evaluation.build import LLMUnavailable, build_eval_set, llm_question_writer

        writer = None
        if self.o.llm:
            try:
                writer = llm_question_writer(self._config())
            except LLMUnavailable as e:
                raise PipelineError(str(e)) from None
        with self.events.bar("pages read", None) as bar:
            report = build_eval_set(self.pdfs, self.eval_dir, self.settings["eval_queries_per_page"],
                                    self.settings["split"], self.settings["seed"], writer,
                                    lambda p, r: self.events.note(f"skipped {p}: {r}"), lambda: bar.advance(1))
        if report.train_pages == 0:
            raise PipelineError("every page went to the test split: give more pages or a smaller --split")
        return {k: v for k, v in report.as_dict().items() if k != "problems"}

    def _cpt_data(self, state: dict) -> dict:
        held_out = held_out_pages(self.eval_dir)
        total = state["done"]["eval-set"]["pages"] - len(held_out)
        with self.events.bar("pages rendered", total) as bar:
            report = build_train_cpt_data(self.pdfs, self.cpt_jsonl, held_out, self.settings["dpi"], bar.advance)
        for problem in report.problems:
            self.events.note(f"skipped {problem}")
        if report.pages == 0:
            raise PipelineError("no train page could be rendered")
        return {"pages": report.pages, "documents": report.documents}

    def _pairs(self, state: dict) -> dict:
        report = build_page_pairs(self.pdfs, self.eval_dir, self.cpt_jsonl, self.pairs_jsonl,
                                  self.settings["pair_queries_per_page"], self.settings["seed"])
        if report.rows == 0:
            raise PipelineError("no query could be made from the train pages' text (scans without a text layer?)")
        return {"rows": report.rows, "pages": report.pages, "types": report.types}

    def _eval_before(self, state: dict) -> dict:
        result = self._evaluate(self._base_encoder(), ["visual", "text"], "before")
        return {"encoder": result.encoder, "visual": _metrics(result.modes["visual"]),
                "bm25": _metrics(result.modes["text"])}

    def _cpt(self, state: dict) -> dict:
        steps = self.settings["steps_cpt"]
        if steps == 0:
            return {"skipped": True}
        from moca_train.stages.cpt import CPTConfig, run_cpt

        cfg = self._stage_config(CPTConfig, self.preset.cpt_config, self.preset.cpt, self._base_encoder(),
                                 self.cpt_jsonl, self.work / "cpt", steps)
        return self._train("cpt", run_cpt, cfg)

    def _contrastive(self, state: dict) -> dict:
        steps = self.settings["steps_cl"]
        if steps == 0:
            return {"skipped": True}
        from moca_train.stages.contrastive import ContrastiveConfig, run_contrastive

        base = str(self.work / "cpt") if self.settings["steps_cpt"] else self._base_encoder()
        rows = state["done"]["pairs"]["rows"]
        cfg = self._stage_config(ContrastiveConfig, self.preset.cl_config, self.preset.cl, base, self.pairs_jsonl,
                                 self.work / "cl", steps)
        cfg = dataclasses.replace(cfg, batch_size=min(cfg.batch_size, rows))  # a few pages: a smaller batch
        return self._train("contrastive", run_contrastive, cfg)

    def _eval_after(self, state: dict) -> dict:
        encoder = str(self._trained())
        result = self._evaluate(encoder, ["visual", "hybrid"], "after")
        return {"encoder": result.encoder, "visual": _metrics(result.modes["visual"]),
                "hybrid": _metrics(result.modes["hybrid"]), "fusion": self._calibrate_visual(encoder)}

    def _calibrate_visual(self, encoder: str) -> dict:
        """The visual RRF weight for the trained encoder, tuned on half the test queries and checked on the other
        half (`docrag eval calibrate`'s tuner, only that weight free); recorded with the exported encoder."""
        from .evaluation.calibrate import Calibrator
        from .evaluation.dataset import load_dataset

        config = self._config(index_dir=self.work / "eval-index", encoder=encoder, dpi=self.settings["dpi"])
        with self.events.evaluation() as events:
            cal = Calibrator(load_dataset(self.eval_dir), config, events, name="after", encoder=encoder,
                             seed=self.settings["seed"]).run(tune=["visual"], ks=[config.rrf_k])
        for note in cal.notes():
            self.events.note(note)
        return {"weight_visual": cal.after.weights["visual"], "rrf_k": cal.after.rrf_k, "rows": cal.rows,
                "kept_before": cal.kept_before, "n_tune": cal.n_tune, "n_held_out": cal.n_held_out}

    def _export(self, state: dict) -> dict:
        src = self._trained()
        for f in sorted(src.iterdir()):
            if f.is_file():
                _link_or_copy(f, self.out / f.name)
        done = state["done"]
        fusion = done["eval-after"].get("fusion")
        if fusion:  # `docrag index --encoder OUT` searches with the weight calibrated for it (app.encoders)
            notes_file = self.out / "docrag_encoder.json"
            notes = json.loads(notes_file.read_text()) if notes_file.is_file() else {}
            notes["fusion"] = {"weight_visual": fusion["weight_visual"], "rrf_k": fusion["rrf_k"],
                               "calibrated_on": f"{fusion['n_tune']} + {fusion['n_held_out']} held-out queries"}
            _write_json(notes_file, notes)  # a new file: the training run's copy (a hard link) stays as it was
        report = {"before": done["eval-before"]["visual"], "after": done["eval-after"]["visual"],
                  "bm25": done["eval-before"]["bm25"], "hybrid_after": done["eval-after"]["hybrid"],
                  "fusion": {k: v for k, v in (fusion or {}).items() if k != "rows"},
                  "data": {"test_pages": done["eval-set"]["test_pages"], "train_pages": done["eval-set"]["train_pages"],
                           "test_queries": done["eval-set"]["test_queries"], "pairs": done["pairs"]["rows"]},
                  "settings": self.settings}
        _write_json(self.out / EVAL_FILE, report)
        return {"encoder": str(self.out), "eval": str(self.out / EVAL_FILE)}

    # ---- helpers -------------------------------------------------------------------------------------------
    def _config(self, **overrides: Any):
        from .config import load_config

        return load_config({"processor": self.o.processor, **overrides})

    def _pixels(self) -> dict:
        """The image resolution every phase uses: the options', else the contrastive config's."""
        from moca_train.stages.contrastive import ContrastiveConfig

        cfg = ContrastiveConfig.load(self.preset.cl_config, self._pixel_overrides(self.preset.cl))
        return {"min_pixels": cfg.min_pixels, "max_pixels": cfg.max_pixels}

    def _pixel_overrides(self, preset_overrides: dict) -> dict:
        over = dict(preset_overrides)
        for key in ("min_pixels", "max_pixels"):
            if self.settings[key] is not None:
                over[key] = self.settings[key]
        return over

    def _base_encoder(self) -> str:
        """The base as an encoder folder (a preset is initialised once, into work/base, at the run's pixels)."""
        from moca_train.presets import PRESETS, init_checkpoint

        base = self.settings["base"]
        if base not in PRESETS:
            return base
        folder = self.work / "base"
        if not (folder / "docrag_encoder.json").is_file():
            tmp = self.work / ".base.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            init_checkpoint(base, tmp, seed=self.settings["seed"], **self._pixels())
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
        return str(folder)

    def _trained(self) -> Path:
        return self.work / ("cl" if self.settings["steps_cl"] else "cpt")

    def _stage_config(self, config_cls, name: str, preset_overrides: dict, base: str, data: Path, out: Path,
                      steps: int):
        over = self._pixel_overrides(preset_overrides)
        over.update({"base": base, "data": [str(data)], "seed": self.settings["seed"], "processor": self.o.processor,
                     "train.out": str(out), "train.max_steps": steps, "train.resume": True,
                     "train.seed": self.settings["seed"]})
        try:
            cfg = config_cls.load(name, over)
        except (FileNotFoundError, ValueError, TypeError) as e:
            raise PipelineError(str(e)) from None
        if not cfg.train.save_every:  # checkpoints along the way, so an interrupted run resumes mid-phase
            cfg.train.save_every = max(1, math.ceil(steps / 4))
        return cfg

    def _train(self, label: str, run, cfg) -> dict:
        from moca_train.checkpoint import CheckpointError
        from moca_train.data import DataError

        out = Path(cfg.train.out)
        with self.events.bar(f"{label} steps", cfg.train.max_steps) as bar, _watch_log(out, bar):
            try:
                summary = run(cfg)
            except (OSError, CheckpointError, DataError) as e:
                raise PipelineError(f"{label}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        if not summary.get("exported"):
            raise PipelineError(f"{label}: stopped at step {summary['step']} before the end; rerun to resume")
        last = summary.get("last") or {}
        return {"steps": summary["step"], "out": str(out),
                **{k: last[k] for k in ("loss", "acc", "mlm_loss", "mae_loss") if k in last}}

    def _evaluate(self, encoder: str, modes: list[str], name: str):
        from .evaluation.dataset import load_dataset
        from .evaluation.runner import EvalRunner

        config = self._config(index_dir=self.work / "eval-index", encoder=encoder, dpi=self.settings["dpi"])
        ds = load_dataset(self.eval_dir)
        with self.events.evaluation() as events:
            return EvalRunner(ds, config, events, name=name).run(modes=modes, encoder=encoder)


def run_pipeline(options: PipelineOptions, events: PipelineEvents | None = None,
                 stop_after: str | None = None) -> PipelineResult:
    """Run (or resume) the domain-variant pipeline; see the module docstring."""
    return Pipeline(options, events).run(stop_after)


def _metrics(mode_result) -> dict:
    from .evaluation.metrics import METRICS

    m = mode_result.metrics
    return {**{k: float(m[k]) for k in METRICS}, "n_queries": int(m["n_queries"])}


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the file system allows (a 3B encoder is not written twice), else a copy."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    tmp.replace(dst)


@contextlib.contextmanager
def _watch_log(out: Path, bar: Bar, every_s: float = 0.5):
    """Moves ``bar`` to the last step in ``out/train_log.jsonl`` while a stage trains (the trainer has no
    step callback; its log is the progress)."""
    from moca_train.trainer import read_train_log

    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(every_s):
            with contextlib.suppress(OSError, ValueError):
                rows = read_train_log(out) if (out / "train_log.jsonl").is_file() else []
                if rows:
                    bar.update(int(rows[-1].get("step", 0)))

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


__all__ = ["PHASES", "PHASE_NAMES", "PIPELINE_PRESETS", "Bar", "Pipeline", "PipelineError", "PipelineEvents",
           "PipelineOptions", "PipelinePreset", "PipelineResult", "run_pipeline"]
