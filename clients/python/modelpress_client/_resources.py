"""Models and datasets (uploads with progress), and the health checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelpress_client._base import Base
from modelpress_client._uploads import MultipartFile, ProgressCallback, form_fields, packed
from modelpress_client.types import Dataset, Model, Page


class ResourcesMixin(Base):
    # ---------------------------------------------------------------- models

    def upload_model(
        self,
        path: str | Path | None = None,
        *,
        uri: str | None = None,
        name: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Model:
        """Upload a teacher: ``path`` is a ``save_pretrained`` folder (packed here as a
        .tar.gz) or such a folder already packed (.tar.gz or .zip); or give ``uri``, an
        ``s3://bucket/key`` archive in the service's own store or a bucket its operator
        lists. The file is streamed;
        ``on_progress(bytes_sent, total)`` follows it."""
        if (path is None) == (uri is None):
            raise ValueError("give either path or uri")
        if uri is not None:
            data = self._t.json("POST", "/v1/models", **_form(uri=uri, name=name))
            return Model.from_dict(data)
        source = Path(path)  # type: ignore[arg-type]
        with packed(source) as archive:
            filename = source.name + ".tar.gz" if source.is_dir() else source.name
            body = MultipartFile(
                form_fields(name=name), archive, filename=filename, on_progress=on_progress
            )
            data = self._t.json("POST", "/v1/models", content=body.body, headers=body.headers)
        return Model.from_dict(data)

    def get_model(self, model_id: str) -> Model:
        return Model.from_dict(self._t.json("GET", f"/v1/models/{model_id}"))

    def list_models(self, *, limit: int = 20, after: str | None = None) -> Page[Model]:
        return self._page("/v1/models", Model.from_dict, {"limit": limit, "after": after})

    def iter_models(self, *, page_size: int = 100) -> Iterator[Model]:
        return self._iterate("/v1/models", Model.from_dict, {"limit": page_size})

    def delete_model(self, model_id: str) -> None:
        self._t.send("DELETE", f"/v1/models/{model_id}")

    # -------------------------------------------------------------- datasets

    def upload_dataset(
        self,
        path: str | Path | None = None,
        *,
        uri: str | None = None,
        format: str = "jsonl",
        name: str | None = None,
        task: str | None = None,
        text_column: str | None = None,
        label_column: str | None = None,
        tokens_column: str | None = None,
        tags_column: str | None = None,
        tag_index: int | None = None,
        split: str | None = None,
        label_names: list[str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Dataset:
        """Upload a data file (jsonl, csv, tsv, parquet or conll), streamed, or give
        ``uri``, an ``s3://bucket/key`` the service may read (its own store or a bucket
        its operator lists); the other arguments are the upload's form fields (see
        POST /v1/datasets)."""
        if (path is None) == (uri is None):
            raise ValueError("give either path or uri")
        fields = form_fields(
            format=format,
            name=name,
            task=task,
            text_column=text_column,
            label_column=label_column,
            tokens_column=tokens_column,
            tags_column=tags_column,
            tag_index=tag_index,
            split=split,
            label_names=",".join(label_names) if label_names is not None else None,
        )
        if uri is not None:
            data = self._t.json("POST", "/v1/datasets", **_form(uri=uri, **fields))
            return Dataset.from_dict(data)
        body = MultipartFile(fields, Path(path), on_progress=on_progress)  # type: ignore[arg-type]
        data = self._t.json("POST", "/v1/datasets", content=body.body, headers=body.headers)
        return Dataset.from_dict(data)

    def get_dataset(self, dataset_id: str) -> Dataset:
        return Dataset.from_dict(self._t.json("GET", f"/v1/datasets/{dataset_id}"))

    def list_datasets(self, *, limit: int = 20, after: str | None = None) -> Page[Dataset]:
        return self._page("/v1/datasets", Dataset.from_dict, {"limit": limit, "after": after})

    def iter_datasets(self, *, page_size: int = 100) -> Iterator[Dataset]:
        return self._iterate("/v1/datasets", Dataset.from_dict, {"limit": page_size})

    def delete_dataset(self, dataset_id: str) -> None:
        self._t.send("DELETE", f"/v1/datasets/{dataset_id}")

    # ---------------------------------------------------------------- health

    def health(self) -> dict[str, Any]:
        """Liveness: ``{"status": "ok"}`` while the API process answers."""
        return self._t.json("GET", "/healthz")

    def ready(self) -> dict[str, Any]:
        """Readiness: ``{"status": "ok"|"unavailable", "checks": {...}}``; an unavailable
        service is reported, not raised nor retried."""
        response = self._t.send("GET", "/readyz", ok_statuses=(503,))
        return response.json()


def _form(**values: str | None) -> dict[str, Any]:
    """A small url-encoded form, for the upload by ``uri`` (no file part)."""
    from urllib.parse import urlencode

    body = urlencode({k: v for k, v in values.items() if v is not None}).encode()
    return {
        "content": lambda: body,
        "headers": {"Content-Type": "application/x-www-form-urlencoded"},
    }
