"""Ray Data: embed a dataset's text column on many processes or machines (the `ray` extra).

`Embedder` is a callable class for `ray.data.Dataset.map_batches`: each Ray actor loads the model once, with as
many intra-op threads as the CPUs Ray gave the actor, and appends an embedding column (fixed-size float32
lists, which Parquet, pandas and Arrow read as they are) to each pyarrow batch. `embed_dataset()` wires it up
with `concurrency` (actors) and `num_cpus`/`num_gpus` per actor; `embed_file_with_ray()` is `lightembed
embed-file --ray`. `SparseEmbedder`/`embed_sparse_dataset` (SPLADE: a struct column of indices and values) and
`Reranker`/`rerank_dataset` (CrossEncoder scores of a query and a document column) work the same way. Outputs come
from the models' own encode()/predict(), so they equal a direct call.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from lightembed.errors import LightembedValueError

META_FILE = "_lightembed.json"


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError('lightembed.integrations.ray needs Ray Data: pip install "lightembed[ray]"') from None
    return ray


def actor_cpus() -> int | None:
    """CPUs Ray assigned to the current actor or task (None outside Ray or when it assigned none)."""
    ray = _ray()
    if not ray.is_initialized():
        return None
    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # noqa: BLE001 - the driver, not inside an actor
        return None
    return max(1, int(round(cpus))) if cpus else None


class _ActorModel:
    """Loads one lightembed model per Ray actor: CUDA when Ray gave the actor a GPU, threads = its CPUs."""

    model_class = "SentenceTransformer"

    def __init__(
        self,
        model: str,
        *,
        file_name: str | None = None,
        device: str | None = None,
        threads: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        import lightembed

        if device is None and _ray().is_initialized():
            device = "cuda" if ray_gpu_ids() else "cpu"
        cls = getattr(lightembed, self.model_class)
        self.model = cls(model, device=device, file_name=file_name, threads=threads or actor_cpus(), **(model_kwargs or {}))

    @staticmethod
    def _texts(batch: Any, column: str) -> list[str]:
        if column not in batch.column_names:
            raise LightembedValueError(f"The dataset has no column {column!r} (columns: {batch.column_names}).")
        texts = batch.column(column)
        if texts.null_count:
            raise LightembedValueError(f"Column {column!r} has {texts.null_count} null value(s); every row needs a text.")
        return texts.to_pylist()


class Embedder(_ActorModel):
    """`ds.map_batches(Embedder, fn_constructor_kwargs={"model": ...}, batch_format="pyarrow", ...)`: one model
    per actor; `column` in, `output_column` (fixed_size_list<float32>[dim]) out, other columns kept.

    `threads` defaults to the CPUs Ray assigned to the actor (num_cpus); `device` to CUDA when the actor has a
    GPU (num_gpus) and onnxruntime-gpu is installed, else CPU. Other keywords go to encode()
    (normalize_embeddings, prompt_name, batch_size, truncate_dim ...).
    """

    def __init__(
        self,
        model: str,
        *,
        column: str = "text",
        output_column: str = "embedding",
        file_name: str | None = None,
        device: str | None = None,
        threads: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        **encode_kwargs: Any,
    ) -> None:
        super().__init__(model, file_name=file_name, device=device, threads=threads, model_kwargs=model_kwargs)
        self.column = column
        self.output_column = output_column
        self.encode_kwargs = encode_kwargs

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        emb = self.model.encode(self._texts(batch, self.column), **self.encode_kwargs)
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
        return batch.append_column(self.output_column, vectors)


class SparseEmbedder(_ActorModel):
    """As Embedder, for a SparseEncoder: `output_column` is struct<indices: list<int64>, values: list<float32>>
    (the active vocabulary ids and their weights). Keywords go to SparseEncoder.encode (max_active_dims ...)."""

    model_class = "SparseEncoder"

    def __init__(
        self,
        model: str,
        *,
        column: str = "text",
        output_column: str = "sparse_embedding",
        file_name: str | None = None,
        device: str | None = None,
        threads: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        **encode_kwargs: Any,
    ) -> None:
        super().__init__(model, file_name=file_name, device=device, threads=threads, model_kwargs=model_kwargs)
        self.column = column
        self.output_column = output_column
        self.encode_kwargs = encode_kwargs

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows = self.model.encode(self._texts(batch, self.column), convert_to_tensor=False, **self.encode_kwargs)
        indices = pa.array([r.indices for r in rows], type=pa.list_(pa.int64()))
        values = pa.array([r.values for r in rows], type=pa.list_(pa.float32()))
        return batch.append_column(self.output_column, pa.StructArray.from_arrays([indices, values], ["indices", "values"]))


class Reranker(_ActorModel):
    """For a CrossEncoder: scores of (`query_column`, `document_column`) pairs in `output_column` (float32, or
    fixed_size_list<float32>[num_labels] for several labels). Keywords go to CrossEncoder.predict."""

    model_class = "CrossEncoder"

    def __init__(
        self,
        model: str,
        *,
        query_column: str = "query",
        document_column: str = "document",
        output_column: str = "score",
        file_name: str | None = None,
        device: str | None = None,
        threads: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        **predict_kwargs: Any,
    ) -> None:
        super().__init__(model, file_name=file_name, device=device, threads=threads, model_kwargs=model_kwargs)
        self.columns = (query_column, document_column)
        self.output_column = output_column
        self.predict_kwargs = predict_kwargs

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        pairs = list(zip(self._texts(batch, self.columns[0]), self._texts(batch, self.columns[1])))
        scores = np.ascontiguousarray(self.model.predict(pairs, **self.predict_kwargs), dtype=np.float32)
        if scores.ndim == 2:
            column = pa.FixedSizeListArray.from_arrays(pa.array(scores.reshape(-1)), scores.shape[1])
        else:
            column = pa.array(scores)
        return batch.append_column(self.output_column, column)


def ray_gpu_ids() -> list[Any]:
    try:
        return list(_ray().get_gpu_ids())
    except Exception:  # noqa: BLE001 - the driver has none assigned
        return []


def _compute(concurrency: int | tuple[int, int] | None) -> Any:
    """Ray's actor-pool strategy for `concurrency` (n actors, or (min, max) autoscaling)."""
    ray = _ray()
    if concurrency is None:
        return None
    if isinstance(concurrency, tuple):
        return ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise LightembedValueError(f"concurrency must be a positive number of actors or (min, max), got {concurrency!r}.")
    return ray.data.ActorPoolStrategy(size=concurrency)


def _map(
    ds: Any,
    cls: type,
    constructor_kwargs: dict[str, Any],
    batch_size: int,
    concurrency: int | tuple[int, int] | None,
    num_cpus: float | None,
    num_gpus: float | None,
) -> Any:
    compute = _compute(concurrency)
    options: dict[str, Any] = {"num_cpus": num_cpus} if num_cpus is not None else {}
    if num_gpus is not None:
        options["num_gpus"] = num_gpus
    if compute is not None:
        options["compute"] = compute
    threads = int(num_cpus) if num_cpus and num_cpus >= 1 else None
    return ds.map_batches(
        cls,
        fn_constructor_kwargs=dict(constructor_kwargs, threads=threads),
        batch_format="pyarrow",
        batch_size=batch_size,
        zero_copy_batch=False,
        **options,
    )


def embed_dataset(
    ds: Any,
    model: str,
    column: str = "text",
    output_column: str = "embedding",
    *,
    batch_size: int = 1024,
    concurrency: int | tuple[int, int] | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    file_name: str | None = None,
    device: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    **encode_kwargs: Any,
) -> Any:
    """`ds` with an `output_column` of embeddings of `column`, computed by `concurrency` Ray actors (default: an
    autoscaling pool), each with `num_cpus` CPUs (its intra-op threads) and `num_gpus` GPUs. `model` is a path
    every node can read (or a Hub id); `batch_size` rows go to an actor per call."""
    kwargs = dict(model=str(model), column=column, output_column=output_column, file_name=file_name, device=device,
                  model_kwargs=model_kwargs, **encode_kwargs)
    return _map(ds, Embedder, kwargs, batch_size, concurrency, num_cpus, num_gpus)


def embed_sparse_dataset(
    ds: Any,
    model: str,
    column: str = "text",
    output_column: str = "sparse_embedding",
    *,
    batch_size: int = 256,
    concurrency: int | tuple[int, int] | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    file_name: str | None = None,
    device: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    **encode_kwargs: Any,
) -> Any:
    """As embed_dataset, with a SparseEncoder: `output_column` holds struct<indices, values> per row."""
    kwargs = dict(model=str(model), column=column, output_column=output_column, file_name=file_name, device=device,
                  model_kwargs=model_kwargs, **encode_kwargs)
    return _map(ds, SparseEmbedder, kwargs, batch_size, concurrency, num_cpus, num_gpus)


def rerank_dataset(
    ds: Any,
    model: str,
    query_column: str = "query",
    document_column: str = "document",
    output_column: str = "score",
    *,
    batch_size: int = 256,
    concurrency: int | tuple[int, int] | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    file_name: str | None = None,
    device: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    **predict_kwargs: Any,
) -> Any:
    """`ds` with an `output_column` of CrossEncoder scores of each row's (query, document) pair."""
    kwargs = dict(model=str(model), query_column=query_column, document_column=document_column,
                  output_column=output_column, file_name=file_name, device=device, model_kwargs=model_kwargs,
                  **predict_kwargs)
    return _map(ds, Reranker, kwargs, batch_size, concurrency, num_cpus, num_gpus)


def read_dataset(path: str | os.PathLike, columns: list[str] | None = None) -> Any:
    """A Ray dataset from a .jsonl, .csv or .parquet file (or a folder of one of them), in file order."""
    from lightembed.file_formats import input_format

    ray = _ray()
    fmt = "parquet" if Path(path).is_dir() else input_format(Path(path))
    if fmt == "parquet":
        return ray.data.read_parquet(str(path), columns=columns)
    ds = ray.data.read_csv(str(path)) if fmt == "csv" else ray.data.read_json(str(path), lines=True)
    return ds.select_columns(columns) if columns else ds


def embed_file_with_ray(
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    model: str,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    batch_size: int = 1024,
    normalize_embeddings: bool = False,
    prompt_name: str | None = None,
    concurrency: int | tuple[int, int] | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    file_name: str | None = None,
    overwrite: bool = False,
) -> int:
    """`lightembed embed-file --ray`: write a folder of Parquet files (the id column, when the input has it, and
    `embedding`, in input order) plus `_lightembed.json` naming the model; the number of rows written. Connects
    to the cluster in RAY_ADDRESS, else starts a local Ray."""
    ray = _ray()
    output_dir = Path(output_dir)
    if output_dir.exists():
        if not overwrite:
            raise FileExistsError(f"{output_dir} already exists; pass --overwrite to replace it.")
        shutil.rmtree(output_dir) if output_dir.is_dir() else output_dir.unlink()
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ds = read_dataset(input_path)
    names = ds.columns()
    if text_column not in names:
        raise LightembedValueError(f"{input_path} has no column {text_column!r} (columns: {names}); choose one with --text-column.")
    if id_column is not None and id_column not in names:
        raise LightembedValueError(f"{input_path} has no column {id_column!r} (columns: {names}); choose one with --id-column.")
    id_name = id_column or ("id" if "id" in names else None)
    ds = ds.select_columns([text_column] + ([id_name] if id_name else []))
    ds = embed_dataset(
        ds, model, text_column, batch_size=batch_size, concurrency=concurrency, num_cpus=num_cpus, num_gpus=num_gpus,
        file_name=file_name, normalize_embeddings=normalize_embeddings, prompt_name=prompt_name,
    ).drop_columns([text_column])
    ds.write_parquet(str(output_dir))
    rows = ray.data.read_parquet(str(output_dir)).count()
    meta = {"model": str(model), "onnx_file": file_name, "text_column": text_column, "id_column": id_name,
            "normalize_embeddings": normalize_embeddings, "rows": rows, "input": str(Path(input_path).resolve())}
    (output_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return rows
