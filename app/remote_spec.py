"""The job spec file of ``modelpress jobs create``: the YAML ``modelpress compress``
reads, made into a job body for a remote service.

Its teacher and dataset may name what the service already has, or local files, which
are uploaded first and replaced by their ids::

    task: sequence-classification
    teacher: teacher/                 # a save_pretrained folder (packed on the way), a
                                      # .tar.gz/.zip of one, or {model_id: mdl_…}
    dataset: {path: reviews.jsonl}    # one file, uploaded with these keys: format (else
                                      # from the suffix), text_column, label_column,
                                      # tokens_column, tags_column, tag_index; or
                                      # {dataset_id: ds_…}; train_split / eval_split as in
                                      # the API
    label_names: [negative, positive] # optional, for a dataset uploaded from a path
    target: {params_ratio: 0.5}       # the other keys: as the job API's body

Paths are relative to the file. ``{train: …, eval: …}`` (two local files) is refused:
the service takes one dataset file, whose ``split`` column can separate the rows.
Nothing here imports the engine or torch, and nothing is uploaded until every local
path has been found.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

SUFFIX_FORMATS = {
    ".jsonl": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".conll": "conll",
}
UPLOAD_KEYS = ("format", "text_column", "label_column", "tokens_column", "tags_column", "tag_index")
SPLIT_KEYS = ("train_split", "eval_split")


class SpecError(Exception):
    """The spec file is wrong; each message names the key to fix."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def load(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError as e:  # pyyaml comes with the worker extra, not the API's
        raise SpecError(["reading a spec file needs pyyaml: pip install pyyaml"]) from e
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SpecError([f"cannot read {path}: {e.strerror or e}"]) from e
    except yaml.YAMLError as e:
        raise SpecError([f"{path} is not valid YAML: {e}"]) from e
    if not isinstance(raw, dict):
        raise SpecError([f"{path} must hold a mapping with teacher, dataset, task and target"])
    return raw


def format_of(path: Path, given: str | None) -> str:
    fmt = given or SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(set(SUFFIX_FORMATS.values())))
        raise SpecError([f"dataset.format: cannot tell the format of {path.name}; give {known}"])
    return fmt


class Plan:
    """What the spec asks: the local files to upload, then the job body."""

    def __init__(self, raw: dict[str, Any], base: Path) -> None:
        self.body = {k: v for k, v in raw.items() if k not in ("teacher", "dataset", "label_names")}
        self.errors: list[str] = []
        self.teacher_path: Path | None = None
        self.dataset_path: Path | None = None
        self.dataset_upload: dict[str, Any] = {}
        self._teacher(raw.get("teacher"), base)
        self._dataset(raw.get("dataset"), raw.get("label_names"), base)
        if self.errors:
            raise SpecError(self.errors)

    def _teacher(self, teacher: Any, base: Path) -> None:
        if isinstance(teacher, dict) and set(teacher) == {"model_id"}:
            self.body["teacher"] = dict(teacher)
        elif isinstance(teacher, str) and teacher:
            path = _local(base, teacher)
            if path.exists():
                self.teacher_path = path
            elif teacher.startswith("mdl_"):
                self.body["teacher"] = {"model_id": teacher}
            else:
                self.errors.append(f"teacher: no file or folder {path}")
        else:
            self.errors.append(
                "teacher: give a local save_pretrained folder or archive, or {model_id: mdl_…}"
            )

    def _dataset(self, dataset: Any, label_names: Any, base: Path) -> None:
        if not isinstance(dataset, dict):
            self.errors.append("dataset: give {path: FILE} or {dataset_id: ds_…}")
            return
        splits = {k: dataset[k] for k in SPLIT_KEYS if k in dataset}
        if "train" in dataset or "eval" in dataset:
            self.errors.append(
                "dataset.train/eval: a remote job takes one dataset file; give dataset.path "
                "(a `split` column may separate train and validation rows) or dataset_id"
            )
        elif "dataset_id" in dataset:
            extra = sorted(set(dataset) - {"dataset_id", *SPLIT_KEYS})
            if extra:
                self.errors.append(f"dataset: {extra} apply only to an upload (dataset.path)")
            if label_names is not None:
                self.errors.append("label_names: applies only to a dataset uploaded from a path")
            self.body["dataset"] = {"dataset_id": dataset["dataset_id"], **splits}
        elif "path" in dataset:
            extra = sorted(set(dataset) - {"path", *UPLOAD_KEYS, *SPLIT_KEYS})
            if extra:
                self.errors.append(f"dataset: unknown keys {extra}")
            path = _local(base, str(dataset["path"]))
            if not path.is_file():
                self.errors.append(f"dataset.path: no file {path}")
                return
            try:
                fmt = format_of(path, dataset.get("format"))
            except SpecError as e:
                self.errors += e.messages
                return
            self.dataset_path = path
            self.dataset_upload = {k: dataset[k] for k in UPLOAD_KEYS if k in dataset}
            self.dataset_upload["format"] = fmt
            if label_names is not None:
                self.dataset_upload["label_names"] = [str(n) for n in label_names]
            self.body["dataset"] = dict(splits)
        else:
            self.errors.append("dataset: give {path: FILE} or {dataset_id: ds_…}")

    def upload(self, mp: Any, progress: Callable[[str], Callable[[int, int], None]]) -> dict:
        """Upload the local files (``progress(label)`` makes each one's callback) and
        return the job body with their ids."""
        if self.teacher_path is not None:
            model = mp.upload_model(
                self.teacher_path, on_progress=progress(f"teacher {self.teacher_path.name}")
            )
            self.body["teacher"] = {"model_id": model.id}
        if self.dataset_path is not None:
            ds = mp.upload_dataset(
                self.dataset_path,
                **self.dataset_upload,
                on_progress=progress(f"dataset {self.dataset_path.name}"),
            )
            self.body["dataset"] = {"dataset_id": ds.id, **self.body["dataset"]}
        return self.body


def _local(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path
