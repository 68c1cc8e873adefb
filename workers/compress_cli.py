"""``modelpress compress SPEC.yaml --out DIR``: the engine on a spec file, without the service.

The file speaks the job API's vocabulary (API.md's job body) with local paths where the
API takes ids; paths are relative to the file::

    task: sequence-classification
    teacher: teacher/                  # a save_pretrained folder with a tokenizer
    dataset: {path: reviews.jsonl}     # jsonl, csv, tsv, parquet or conll, split as an
                                       # upload is (a `split` column, or a seeded 10% held
                                       # out); or {train: a.jsonl, eval: b.jsonl}; columns
                                       # as at an upload: text_column, label_column...
    target: {params_ratio: 0.5}
    strategy: prune_then_distill       # distillation, pruning, training: as in API.md
    training: {epochs: 3}
    export: {formats: [safetensors, onnx-int8]}  # optional; default [safetensors]
    label_names: [negative, positive]  # optional, as at a dataset upload

``DIR`` receives ``data/`` (the normalised splits), ``model/`` (and ``model-onnx/``,
``model-onnx-int8/`` for those export formats), ``report.json``, the
model card ``README.md`` and the PNG plots. Exit status: 0 done, 2 the inputs are wrong
(the message names the key to fix), 130 stopped with Ctrl-C.

Nothing here imports torch until the spec file has been checked, so a wrong file is
reported at once.
"""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any, Literal, TextIO

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, model_validator
from tqdm import tqdm

from app.datasets.columns import ColumnRequest
from app.datasets.parse import FORMATS, ParseOptions, parse_dataset
from app.datasets.splits import ParsedDataset
from app.errors import ProblemError
from app.jobs.schemas import JobCreate, Strict
from app.jobspec import vocabulary
from app.jobspec.vocabulary import TASKS
from app.sweeps import policy
from app.sweeps.report import sweep_table
from app.sweeps.state import child_request, is_sweep
from workers.engine.plots import MAIN_METRIC_BY_TASK
from workers.engine.spec import CompressionSpec, EngineInputError, EngineStopped
from workers.local_sweep import LocalSweep, run_local_sweep
from workers.request_spec import engine_sections

EXIT_INPUT = 2
EXIT_STOPPED = 130

# The job body's sections that mean the same here; teacher and dataset are local.
JOB_KEYS = ("task", "target", "strategy", "distillation", "pruning", "training", "export")
SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".conll": "conll",
}


class SpecFileError(Exception):
    """The spec file or what it points at is wrong; each message names the key."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


class LocalDataset(Strict):
    """A dataset upload's settings (API.md), with local files in place of the upload."""

    path: str | None = Field(None, description="One file, split as an upload is.")
    train: str | None = None
    eval: str | None = None
    format: Literal["jsonl", "csv", "tsv", "parquet", "conll"] | None = Field(
        None, description="Default: from the file name's suffix."
    )
    text_column: str | None = None
    label_column: str | None = None
    tokens_column: str | None = None
    tags_column: str | None = None
    tag_index: int | None = Field(None, ge=1, le=100)
    train_split: str = "train"
    eval_split: str = "validation"

    @model_validator(mode="after")
    def _one_source(self) -> LocalDataset:
        pair = (self.train, self.eval)
        if self.path is None and None in pair:
            raise ValueError("give either path, or both train and eval")
        if self.path is not None and pair != (None, None):
            raise ValueError("give either path, or train and eval, not both")
        split_keys = {"train_split", "eval_split"} & self.model_fields_set
        if self.path is None and split_keys:
            raise ValueError(f"{sorted(split_keys)} apply only to a single file (path)")
        return self


# The job sections are JobCreate's own fields (types, bounds, defaults), so the file and
# the API accept exactly the same values.
SpecFile: type[BaseModel] = create_model(
    "SpecFile",
    __base__=Strict,
    teacher=(str, Field(min_length=1)),
    dataset=(LocalDataset, ...),
    label_names=(list[str] | None, None),
    **{
        key: (JobCreate.model_fields[key].annotation, JobCreate.model_fields[key])
        for key in JOB_KEYS
    },
)


def load_spec_file(path: Path) -> BaseModel:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SpecFileError([f"cannot read {path}: {e.strerror or e}"]) from e
    except yaml.YAMLError as e:
        raise SpecFileError([f"{path} is not valid YAML: {e}"]) from e
    if not isinstance(raw, dict):
        raise SpecFileError(
            [f"{path} must hold a mapping with the keys {['teacher', 'dataset', *JOB_KEYS]}"]
        )
    try:
        return SpecFile.model_validate(raw)
    except ValidationError as e:
        raise SpecFileError(_messages(e)) from e


def _messages(error: ValidationError) -> list[str]:
    messages = []
    for item in error.errors():
        loc = item["loc"]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            detail = "unknown key" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        elif item["type"] == "missing":
            detail = "required key is missing"
        else:
            detail = item["msg"].removeprefix("Value error, ")
        messages.append(f"{where or '(top level)'}: {detail}")
    return messages


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = SpecFile
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = field.annotation if field is not None else None
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)


def _local_path(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def prepare_data(
    dataset: LocalDataset, task: str, base: Path, data_dir: Path, label_names: list[str] | None
) -> tuple[Path, Path, list[str]]:
    """Normalised train and eval files in ``data_dir`` and the label names, by the
    parser (and the seeded hold-out) of a dataset upload."""
    if dataset.path is not None:
        parsed = _parse(dataset, "path", task, base, data_dir, label_names, default_split=None)
        missing = [
            (key, name)
            for key, name in (
                ("train_split", dataset.train_split),
                ("eval_split", dataset.eval_split),
            )
            if name not in parsed.splits
        ]
        if missing:
            raise SpecFileError(
                [
                    f"dataset.{key}: the file has no split {name!r}; it has {sorted(parsed.splits)}"
                    for key, name in missing
                ]
            )
        train, eval_ = parsed.splits[dataset.train_split], parsed.splits[dataset.eval_split]
        return train, eval_, parsed.label_names
    # Every row of the train file trains and every row of the eval file evaluates: the
    # rows are parsed into a split that is not "train", so none is held out, and any
    # split a `split` column names is joined back.
    train_parsed = _parse(
        dataset, "train", task, base, data_dir / "train-parts", label_names, default_split="rows"
    )
    eval_parsed = _parse(
        dataset,
        "eval",
        task,
        base,
        data_dir / "eval-parts",
        train_parsed.label_names,
        default_split="rows",
        names_from="label_names" if label_names else "dataset.train",
    )
    train = _join(train_parsed, data_dir / "train.jsonl")
    eval_ = _join(eval_parsed, data_dir / "eval.jsonl")
    return train, eval_, train_parsed.label_names


def _parse(
    dataset: LocalDataset,
    key: str,
    task: str,
    base: Path,
    out_dir: Path,
    label_names: list[str] | None,
    *,
    default_split: str | None,
    names_from: str = "label_names",
) -> ParsedDataset:
    path = _local_path(base, getattr(dataset, key))
    if not path.is_file():
        raise SpecFileError([f"dataset.{key}: no such file {path}"])
    fmt = dataset.format or SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SpecFileError(
            [
                f"dataset.format: cannot tell the format of {path.name} from its suffix; "
                f"set it to one of {list(FORMATS)}"
            ]
        )
    options = ParseOptions(
        columns=ColumnRequest(
            task=task,
            text=dataset.text_column,
            label=dataset.label_column,
            tokens=dataset.tokens_column,
            tags=dataset.tags_column,
        ),
        label_names=label_names,
        tag_index=dataset.tag_index,
        split=default_split,
    )
    try:
        return parse_dataset(path, fmt, out_dir, options)
    except ProblemError as e:
        where = "dataset.tag_index" if e.param == "tag_index" else f"dataset.{key}"
        detail = e.detail
        if e.param == "label_names":
            detail += f" (the label names are those of {names_from})"
        raise SpecFileError([f"{where}: {path.name}: {detail}"]) from e


def _join(parsed: ParsedDataset, dest: Path) -> Path:
    with dest.open("w", encoding="utf-8") as out:
        for part in parsed.splits.values():
            out.write(part.read_text(encoding="utf-8"))
    shutil.rmtree(next(iter(parsed.splits.values())).parent)
    return dest


def build_local_spec(
    spec_path: Path, out_dir: Path, *, device: str, latency_threads: int = 2
) -> CompressionSpec:
    spec_path = Path(spec_path)
    spec_file = load_spec_file(spec_path)
    base = spec_path.resolve().parent
    teacher_dir = _local_path(base, spec_file.teacher)
    if not (teacher_dir / "config.json").is_file():
        raise SpecFileError(
            [f"teacher: {teacher_dir} is not a save_pretrained folder (it has no config.json)"]
        )
    if spec_file.task not in TASKS:
        raise SpecFileError(
            [
                f"task: {spec_file.task!r} is not supported by this engine yet; "
                f"supported: {list(TASKS)}"
            ]
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    train, eval_, label_names = prepare_data(
        spec_file.dataset, spec_file.task, base, out_dir / "data", spec_file.label_names
    )
    work_dir = out_dir / "work"
    work_dir.mkdir(exist_ok=True)
    request = spec_file.model_dump(include=set(JOB_KEYS))
    if is_sweep(request):
        # The candidates' own targets are set by the sweep (workers/local_sweep.py).
        request = child_request(request, policy.DEFAULT_LO)
    return CompressionSpec(
        teacher_dir=teacher_dir,
        train_file=train,
        eval_file=eval_,
        label_names=tuple(label_names),
        output_dir=out_dir,
        work_dir=work_dir,
        device=device,
        latency_threads=latency_threads,
        **engine_sections(request),
    )


def sweep_of(spec_path: Path) -> LocalSweep | None:
    """The sweep a (valid) spec file asks for, or None for one target."""
    target = load_spec_file(spec_path).target
    kind = next((k for k in vocabulary.SWEEP_TARGET_KINDS if getattr(target, k) is not None), None)
    if kind is None:
        return None
    return LocalSweep(
        kind=kind,
        value=float(getattr(target, kind)),
        runtime=target.runtime or vocabulary.DEFAULT_RUNTIME,
        batch_size=target.batch_size or 1,
        candidates=target.budget.candidates if target.budget else 6,
        seq_len=target.seq_len,
    )


class TerminalCallback:
    """A progress bar on stderr with the engine's log lines above it; Ctrl-C asks the
    engine to stop at its next check, a second Ctrl-C aborts at once."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stop_requested = False
        self._stream = stream
        self._bar = tqdm(
            total=1000,
            file=stream,
            desc="starting",
            bar_format="{desc:<17} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
            dynamic_ncols=True,
        )

    def on_phase(self, phase: str) -> None:
        self._bar.set_description_str(phase)

    def on_progress(self, progress: float) -> None:
        target = round(min(max(progress, 0.0), 1.0) * 1000)
        if target > self._bar.n:
            self._bar.update(target - self._bar.n)

    def on_log(self, message: str, *, level: str = "info", data: dict | None = None) -> None:
        prefix = "" if level == "info" else f"{level}: "
        self._bar.write(prefix + message, file=self._stream)

    def should_stop(self) -> bool:
        return self.stop_requested

    def on_checkpoint(self, path: Path, info: dict[str, Any]) -> None:
        # The checkpoint stays in DIR/work until the run ends; nothing to copy.
        pass

    def interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        self._bar.write(
            "stopping at the next step (Ctrl-C again to abort at once)", file=self._stream
        )

    def close(self) -> None:
        self._bar.close()


def results_table(metrics: dict[str, Any], main_metric: str = "accuracy") -> str:
    """Teacher vs student; ``main_metric`` (the metrics' own ``main_metric`` first) is
    the one retention is given for."""
    main_metric = metrics.get("main_metric") or main_metric
    teacher, student = metrics.get("teacher") or {}, metrics.get("student") or {}
    threads = metrics.get("latency_threads")
    on = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    rows: list[tuple[str, str, Any]] = [
        ("Accuracy", "pct", "accuracy"),
        ("Macro-F1", "pct", "macro_f1"),
        ("Entity F1", "pct", "f1"),
        ("Entity precision", "pct", "precision"),
        ("Entity recall", "pct", "recall"),
        ("Token accuracy", "pct", "token_accuracy"),
        ("Parameters", "int", "num_parameters"),
        ("Size on disk", "mb", "size_bytes"),
        (f"CPU latency bs1{on}", "ms", "latency_ms_cpu_bs1"),
        (f"CPU latency bs32{on}", "ms", "latency_ms_cpu_bs32"),
    ]
    present = [r for r in rows if r[2] in teacher or r[2] in student]
    width = max(len(label) for label, _, _ in present) if present else 10
    lines = [f"{'':<{width}}  {'teacher':>12}  {'student':>12}"]
    for label, kind, key in present:
        cells = [_cell(part.get(key), kind) for part in (teacher, student)]
        lines.append(f"{label:<{width}}  {cells[0]:>12}  {cells[1]:>12}")
    lines.append("")
    bs1, bs32 = metrics.get("speedup_cpu_bs1"), metrics.get("speedup_cpu_bs32")
    lines.append(f"CPU speed-up: {_times(bs1)} at batch 1, {_times(bs32)} at batch 32")
    t_main, s_main = teacher.get(main_metric), student.get(main_metric)
    if isinstance(t_main, int | float) and isinstance(s_main, int | float) and t_main > 0:
        label = next((name for name, _, key in rows if key == main_metric), main_metric)
        lines.append(f"Retention ({label}): {100 * s_main / t_main:.2f}% of the teacher")
    if metrics.get("compression_ratio"):
        lines.append(f"Compression: {metrics['compression_ratio']:.2f}x fewer parameters")
    return "\n".join(lines)


def _cell(value: Any, kind: str) -> str:
    if not isinstance(value, int | float):
        return "n/a"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "mb":
        return f"{value / 1e6:.2f} MB"
    return f"{value:.2f} ms"


def _times(value: Any) -> str:
    return f"{value:.2f}x" if isinstance(value, int | float) else "n/a"


def run_compress(
    spec_path: Path, out_dir: Path, *, device: str = "auto", latency_threads: int = 2
) -> int:
    out_dir = Path(out_dir)
    try:
        spec = build_local_spec(
            Path(spec_path), out_dir, device=device, latency_threads=latency_threads
        )
    except SpecFileError as e:
        for message in e.messages:
            print(f"error: {spec_path}: {message}", file=sys.stderr)
        return EXIT_INPUT

    # torch: only once the inputs are good.
    from transformers.utils import logging as transformers_logging

    from workers.engine.compress import compress

    # Its load and save bars would break into ours.
    transformers_logging.disable_progress_bar()

    sweep = sweep_of(Path(spec_path))
    callback = TerminalCallback()
    previous = signal.signal(signal.SIGINT, callback.interrupt)
    try:
        if sweep is None:
            metrics = compress(spec, callback).metrics
        else:
            metrics = run_local_sweep(spec, sweep, out_dir, callback)
    except EngineInputError as e:
        callback.close()
        print(f"error: {spec_path}: {e.message} ({e.code})", file=sys.stderr)
        return EXIT_INPUT
    except EngineStopped as e:
        callback.close()
        print(f"stopped: {e}; the run did not finish", file=sys.stderr)
        return EXIT_STOPPED
    except KeyboardInterrupt:
        callback.close()
        print("aborted", file=sys.stderr)
        return EXIT_STOPPED
    finally:
        signal.signal(signal.SIGINT, previous)
    callback.close()
    shutil.rmtree(spec.work_dir, ignore_errors=True)

    if sweep is not None:
        print(sweep_table(metrics["sweep"]), end="\n\n")
    print(results_table(metrics, MAIN_METRIC_BY_TASK.get(spec.task, "accuracy")))
    produced = sorted(p.name + ("/" if p.is_dir() else "") for p in out_dir.iterdir())
    print(f"\nWritten to {out_dir}: {', '.join(produced)}")
    return 0
