"""embed-file: embed the text column of a JSONL, CSV or Parquet file into Parquet (ids + vectors, the model in the
schema metadata) or .npy, in bounded memory, resumably.

The input is read as a stream of record batches with pyarrow (the `files` extra) and cut into parts of
`chunk_rows` rows. Each part is embedded with the model's own encode() (on a multi-process pool when asked),
written to `OUTPUT.parts/part-NNNNNN.parquet` through a temporary file and an atomic rename, and only then
recorded in `OUTPUT.parts/journal.json` (also replaced atomically). A run that is killed at any point leaves a
journal that lists only complete parts; the next run with the same job checks that it is the same job, skips the
rows those parts cover and goes on, so no row is lost or written twice. When every row is done the parts are
joined into OUTPUT (again through a temporary file and a rename) and the parts folder is removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from lightembed.errors import LightembedRuntimeError, LightembedValueError
from lightembed.file_formats import INPUT_FORMATS, input_format  # noqa: F401 - part of this module's API

JOURNAL = "journal.json"
OUTPUT_FORMATS = (".parquet", ".npy")
META_PREFIX = "lightembed."
DEFAULT_ID = "id"


def pyarrow_modules() -> Any:
    """pyarrow, imported on use: the `files` extra."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ImportError(
            'embed-file reads and writes files with pyarrow: pip install "lightembed[files]"'
        ) from None
    return pyarrow


@dataclass
class EmbedFileResult:
    """What a run did: rows in the output, rows embedded by this run, whether it resumed an interrupted run."""

    output: Path
    rows: int
    embedded: int
    resumed_from: int
    dimension: int


def read_batches(path: Path, text_column: str, id_column: str | None, block_rows: int) -> tuple[Iterator[Any], int | None, str | None]:
    """(record batches holding the text and id columns in file order, total rows if the file says, the id column
    that exists: `id_column` or None when it is absent)."""
    pa = pyarrow_modules()
    fmt = input_format(path)
    total = None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        reader = pq.ParquetFile(path)
        names = reader.schema_arrow.names
        total = reader.metadata.num_rows
        have_id = _check_columns(path, names, text_column, id_column)
        columns = [text_column] + ([id_column or DEFAULT_ID] if have_id else [])
        batches: Iterator[Any] = reader.iter_batches(batch_size=block_rows, columns=columns)
    elif fmt == "csv":
        import pyarrow.csv as pcsv

        # One thread, so the parser knows row numbers (its errors say "Row #N", counting the header line);
        # UTF-8 is checked per chunk (embed_file), where the row is known.
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(block_size=1 << 20, use_threads=False),
            parse_options=pcsv.ParseOptions(invalid_row_handler=lambda row: "error"),
            convert_options=pcsv.ConvertOptions(
                column_types={text_column: pa.string()}, strings_can_be_null=False, quoted_strings_can_be_null=False,
                check_utf8=False,
            ),
        )
        have_id = _check_columns(path, reader.schema.names, text_column, id_column)
        batches = _located(reader, path, "csv")
    else:
        import pyarrow.json as pjson

        # The columns as inferred from the first block, before the text column is forced to string (which would
        # make a missing column look present and empty).
        # One thread, so a block's errors ("in row N", counted within the block) follow the rows read before it.
        read_options = pjson.ReadOptions(block_size=1 << 20, use_threads=False)
        try:
            first = pjson.open_json(path, read_options=read_options).schema
        except pa.ArrowInvalid as exc:
            raise LightembedValueError(_where(path, "json", 0, exc)) from None
        have_id = _check_columns(path, first.names, text_column, id_column)
        fields = [(text_column, pa.string())]
        if have_id:
            name = id_column or DEFAULT_ID
            fields.append((name, first.field(name).type))
        # Only the columns used are read: a field that appears later in the file is ignored, not an error.
        reader = pjson.open_json(
            path,
            read_options=read_options,
            parse_options=pjson.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="ignore"),
        )
        batches = _located(reader, path, "json")
    id_name = (id_column or DEFAULT_ID) if have_id else None
    keep = [text_column] + ([id_name] if id_name else [])
    return (b.select(keep) for b in batches), total, id_name


def _where(path: Path, fmt: str, row: int, exc: Exception) -> str:
    """pyarrow's parse error with the file and the row (0-based data row, as every row number here)."""
    message = str(exc)
    if fmt == "json":
        found = re.search(r"\s*in row (\d+)", message)  # counted from the start of the failing block
        if found:
            return f"{path}: row {row + int(found.group(1))}: {message.replace(found.group(0), '')}"
    else:
        found = re.search(r"Row #(\d+): ", message)  # the file's line, the header being line 1
        if found:
            return f"{path}: row {int(found.group(1)) - 2}: {message.replace(found.group(0), '')}"
    return f"{path}: after row {row}: {message}"


def _located(batches: Any, path: Path, fmt: str) -> Iterator[Any]:
    """`batches`, with a parse error turned into a ValueError naming the file and the row."""
    pa = pyarrow_modules()
    row = 0
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            raise LightembedValueError(_where(path, fmt, row, exc)) from None
        yield batch
        row += batch.num_rows


def _texts(column: Any, path: Path, first: int, name: str) -> list[str]:
    """The column as Python strings; a ValueError naming the row when one is not valid UTF-8."""
    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        for i, value in enumerate(column):
            try:
                value.as_py()
            except UnicodeDecodeError as exc:
                raise LightembedValueError(f"{path}: row {first + i}: column {name!r} is not valid UTF-8 ({exc.reason} at "
                                 f"byte {exc.start}).") from None
        raise


def _check_columns(path: Path, names: list[str], text_column: str, id_column: str | None) -> bool:
    """Whether the id column is there; a missing text column, or a missing id column that was named, is an error
    (the default id column "id" may be absent: row numbers are used)."""
    if text_column not in names:
        raise LightembedValueError(f"{path} has no column {text_column!r} (columns: {names}); choose one with --text-column.")
    if id_column is not None and id_column not in names:
        raise LightembedValueError(f"{path} has no column {id_column!r} (columns: {names}); choose one with --id-column.")
    return id_column is not None or DEFAULT_ID in names


def rows_in_chunks(batches: Iterator[Any], chunk_rows: int, skip: int) -> Iterator[tuple[int, Any]]:
    """(first row, table of `chunk_rows` rows) for the rows after the first `skip`, in order; the last may be
    shorter. Only one chunk and one reader block are in memory at a time."""
    pa = pyarrow_modules()
    pending: list[Any] = []
    pending_rows = 0
    row = 0  # rows consumed from the reader
    start = skip
    for batch in batches:
        if row + batch.num_rows <= skip:
            row += batch.num_rows
            continue
        if row < skip:
            batch = batch.slice(skip - row)
            row = skip
        row += batch.num_rows
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield start, table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending, pending_rows = rest.to_batches(), rest.num_rows
            start += chunk_rows
    if pending_rows:
        yield start, pa.Table.from_batches(pending)


def _fingerprint(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _vectors(pa: Any, emb: np.ndarray) -> Any:
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])


def embed_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    model: Any,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    chunk_rows: int = 4096,
    batch_size: int = 32,
    normalize_embeddings: bool = False,
    prompt_name: str | None = None,
    pool: Any = None,
    show_progress_bar: bool = True,
    overwrite: bool = False,
    model_name: str | None = None,
) -> EmbedFileResult:
    """Embed `text_column` of INPUT (.jsonl/.csv/.parquet) into OUTPUT (.parquet: `id_column` values, or the row
    number when `id_column` is None and the input has no "id" column, and an `embedding` column; .npy: the vectors only, in input order).

    `model` is a SentenceTransformer or a path/Hub id to load one from; `pool` a pool from
    start_multi_process_pool() or a number of CPU workers. An interrupted run resumes from OUTPUT.parts when
    called again with the same arguments; `overwrite` starts over instead (and replaces OUTPUT).
    """
    pa = pyarrow_modules()
    import pyarrow.parquet as pq

    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise FileNotFoundError(f"input file not found: {input_path}")
    out_format = output_path.suffix.lower()
    if out_format not in OUTPUT_FORMATS:
        raise LightembedValueError(f"{output_path}: the output must end in .parquet or .npy.")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise LightembedValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}.")
    parts_dir = output_path.with_name(output_path.name + ".parts")
    shutil.rmtree(parts_dir.with_name(parts_dir.name + ".remove"), ignore_errors=True)
    if overwrite:
        shutil.rmtree(parts_dir, ignore_errors=True)
    elif output_path.exists() and not parts_dir.exists():
        raise FileExistsError(f"{output_path} already exists; pass --overwrite to replace it.")

    if isinstance(model, (str, os.PathLike)):
        from lightembed.encoder import SentenceTransformer

        model_name = model_name or str(model)
        model = SentenceTransformer(os.fspath(model))
    model_name = model_name or str(model.model_dir)
    onnx_file = model.runtime_info.onnx_file
    dimension = int(model.get_sentence_embedding_dimension() or 0)

    batches, total, have_id = read_batches(input_path, text_column, id_column, min(chunk_rows, 65536))
    job = {
        "input": _fingerprint(input_path),
        "model": model_name,
        "onnx_file": onnx_file,
        "model_dir": str(model.model_dir),
        "text_column": text_column,
        "id_column": have_id,
        "chunk_rows": chunk_rows,
        "normalize_embeddings": bool(normalize_embeddings),
        "prompt_name": prompt_name,
        "max_seq_length": model.max_seq_length,
        "output_format": out_format,
    }
    journal: dict[str, Any] = {"job": job, "rows_done": 0, "parts": [], "finished": False}
    journal_path = parts_dir / JOURNAL
    if journal_path.is_file():
        previous = json.loads(journal_path.read_text())
        changed = sorted(k for k in set(job) | set(previous.get("job", {})) if previous.get("job", {}).get(k) != job.get(k))
        if changed:
            raise LightembedValueError(
                f"{parts_dir} holds an interrupted run of a different job (it differs in {changed}); run the same "
                "command again to resume it, or pass --overwrite to start over."
            )
        journal = previous
    parts_dir.mkdir(parents=True, exist_ok=True)
    resumed_from = int(journal["rows_done"])

    owned_pool = None
    if isinstance(pool, int) and not isinstance(pool, bool):
        if pool < 1:
            raise LightembedValueError(f"pool must be a positive number of worker processes, got {pool}.")
        owned_pool = pool = model.start_multi_process_pool(["cpu"] * pool) if pool > 1 else None
    bar = _bar(show_progress_bar and not journal["finished"], total, resumed_from)
    embedded = 0
    try:
        if not journal["finished"]:
            for first, table in rows_in_chunks(batches, chunk_rows, resumed_from):
                texts = table.column(text_column)
                if texts.null_count:
                    bad = first + next(i for i, v in enumerate(texts.is_null().to_pylist()) if v)
                    raise LightembedValueError(f"{input_path}: row {bad} has no text in column {text_column!r} (null).")
                emb = model.encode(
                    _texts(texts, input_path, first, text_column),
                    batch_size=batch_size,
                    normalize_embeddings=normalize_embeddings,
                    prompt_name=prompt_name,
                    pool=pool,
                    show_progress_bar=False,
                )
                ids = table.column(have_id) if have_id else pa.array(np.arange(first, first + table.num_rows))
                part = pa.table({have_id or DEFAULT_ID: ids, "embedding": _vectors(pa, emb)})
                name = f"part-{len(journal['parts']):06d}.parquet"
                tmp = parts_dir / (name + ".tmp")
                pq.write_table(part, tmp)
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, parts_dir / name)
                _fsync_dir(parts_dir)
                journal["parts"].append({"file": name, "first_row": first, "rows": table.num_rows})
                journal["rows_done"] = first + table.num_rows
                _write_atomic(journal_path, json.dumps(journal).encode())
                embedded += table.num_rows
                if bar is not None:
                    bar.update(table.num_rows)
            journal["finished"] = True
            _write_atomic(journal_path, json.dumps(journal).encode())
    finally:
        if bar is not None:
            bar.close()
        if owned_pool is not None:
            owned_pool.close()

    rows = _finalize(pa, pq, parts_dir, journal, output_path, out_format, model_name, onnx_file, dimension, job)
    # Renamed first, so a run killed while deleting never finds a parts folder without its journal.
    trash = parts_dir.with_name(parts_dir.name + ".remove")
    os.replace(parts_dir, trash)
    shutil.rmtree(trash)
    return EmbedFileResult(output_path, rows, embedded, resumed_from, dimension)


def _bar(enabled: bool, total: int | None, initial: int) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="rows", desc="Embedding")


def _finalize(
    pa: Any, pq: Any, parts_dir: Path, journal: dict, output: Path, out_format: str, model_name: str,
    onnx_file: str, dimension: int, job: dict,
) -> int:
    """Join the parts into OUTPUT through a temporary file and a rename; the number of rows written."""
    parts = [parts_dir / p["file"] for p in journal["parts"]]
    rows = sum(p["rows"] for p in journal["parts"])
    expected_first = 0
    for p in journal["parts"]:  # the journal's own invariant: parts are contiguous from row 0
        if p["first_row"] != expected_first:
            raise LightembedRuntimeError(f"{parts_dir / JOURNAL} is inconsistent at {p['file']}; pass --overwrite to start over.")
        expected_first += p["rows"]
    tmp = output.with_name(output.name + ".tmp")
    if out_format == ".npy":
        from numpy.lib.format import open_memmap

        width = dimension
        if parts:
            width = pq.ParquetFile(parts[0]).schema_arrow.field("embedding").type.list_size
        out = open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, width))
        at = 0
        for part in parts:
            column = pq.read_table(part, columns=["embedding"]).column("embedding").combine_chunks()
            block = column.flatten().to_numpy().reshape(len(column), -1)
            out[at : at + len(block)] = block
            at += len(block)
        out.flush()
        del out
    else:
        id_name = job["id_column"] or "id"
        if parts:
            schema = pq.ParquetFile(parts[0]).schema_arrow
        else:
            schema = pa.schema([(id_name, pa.int64()), ("embedding", pa.list_(pa.float32(), dimension))])
        metadata = {
            f"{META_PREFIX}model": model_name,
            f"{META_PREFIX}onnx_file": onnx_file,
            f"{META_PREFIX}dimension": str(schema.field("embedding").type.list_size),
            f"{META_PREFIX}text_column": job["text_column"],
            f"{META_PREFIX}normalize_embeddings": str(job["normalize_embeddings"]).lower(),
            f"{META_PREFIX}input": job["input"]["path"],
        }
        schema = schema.with_metadata(metadata)
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in parts:
                writer.write_table(pq.read_table(part).replace_schema_metadata(metadata))
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, output)
    return rows


def _parser() -> Any:
    import argparse

    p = argparse.ArgumentParser(
        prog="lightembed embed-file",
        description="Embed a text column of a JSONL, CSV or Parquet file into Parquet (ids + vectors) or .npy. "
        "An interrupted run continues where it stopped when the same command is run again.",
    )
    p.add_argument("input", help="input file: .jsonl, .csv (optionally .gz) or .parquet")
    p.add_argument("-o", "--output", required=True, help=".parquet (ids + embedding) or .npy (vectors in input order); "
                   "with --ray, a folder of Parquet files")
    p.add_argument("--model", required=True, help="local model folder or Hugging Face Hub repo id")
    p.add_argument("--file-name", help="ONNX file inside the model, e.g. onnx/model_O3.onnx")
    p.add_argument("--device", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="intra-op threads (default: usable cores)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--id-column", default=None, help='column carried through as the id (default: "id" if present, '
                   "else the row number)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--chunk-rows", type=int, default=4096, help="rows per part file (the unit of resumption)")
    p.add_argument("--normalize", action="store_true", help="L2-normalize the embeddings")
    p.add_argument("--prompt-name", help="a prompt name from the model's config")
    p.add_argument("--pool", type=int, default=None, metavar="K", help="embed on K CPU worker processes")
    p.add_argument("--ray", action="store_true", help="run the job on Ray Data (needs lightembed[ray])")
    p.add_argument("--concurrency", type=int, default=None, help="with --ray: number of model actors "
                   "(default: an autoscaling pool)")
    p.add_argument("--num-cpus", type=float, default=None, help="with --ray: CPUs per actor, also its threads (Ray's "
                   "default: 1); leave CPUs for reading and writing, or the job waits for resources forever")
    p.add_argument("--num-gpus", type=float, default=None, help="with --ray: GPUs per actor")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="start over: replace OUTPUT and drop an interrupted run")
    return p


def main(argv: list[str] | None = None) -> int:
    """`lightembed embed-file`: exit status 0 on success, 2 with a one-line error otherwise."""
    import sys

    args = _parser().parse_args(argv)
    try:
        if args.ray:
            from lightembed.integrations.ray import embed_file_with_ray

            rows = embed_file_with_ray(
                args.input, args.output, args.model, text_column=args.text_column, id_column=args.id_column,
                batch_size=args.batch_size, normalize_embeddings=args.normalize, prompt_name=args.prompt_name,
                concurrency=args.concurrency, num_cpus=args.num_cpus, num_gpus=args.num_gpus, file_name=args.file_name,
                overwrite=args.overwrite,
            )
            print(f"wrote {rows} rows to {args.output}", file=sys.stderr)
            return 0
        pyarrow_modules()
        from lightembed.encoder import SentenceTransformer

        model = SentenceTransformer(args.model, device=args.device, file_name=args.file_name, threads=args.threads)
        result = embed_file(
            args.input, args.output, model, text_column=args.text_column, id_column=args.id_column,
            chunk_rows=args.chunk_rows, batch_size=args.batch_size, normalize_embeddings=args.normalize,
            prompt_name=args.prompt_name, pool=args.pool, show_progress_bar=not args.no_progress,
            overwrite=args.overwrite, model_name=args.model,
        )
    except (ImportError, OSError, ValueError, TypeError, RuntimeError) as exc:
        print(f"lightembed embed-file: error: {exc}", file=sys.stderr)
        return 2
    resumed = f" (resumed at row {result.resumed_from})" if result.resumed_from else ""
    print(f"wrote {result.rows} rows x {result.dimension} to {result.output}{resumed}", file=sys.stderr)
    return 0
