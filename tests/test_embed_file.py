"""embed-file (lightembed/embed_file.py): JSONL/CSV/Parquet in, Parquet (ids + vectors + model metadata) or .npy
out, streamed in parts, and resumable after kill -9 without a row lost or written twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from lightembed import SentenceTransformer
from lightembed.cli import main as cli_main
from lightembed.embed_file import embed_file, rows_in_chunks
from tests.tiny import WORDS, make_model

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [" ".join(WORDS[(i * 5) % len(WORDS) : (i * 5) % len(WORDS) + 1 + i % 7]) + f" {i}" for i in range(500)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("ef") / "tiny")


@pytest.fixture(scope="module")
def model(folder) -> SentenceTransformer:
    return SentenceTransformer(folder)


def write_input(path: Path, texts: list[str], ids: list | None = None, text_column: str = "text") -> Path:
    data = {text_column: texts}
    if ids is not None:
        data["doc_id"] = ids
    table = pa.table(data)
    if path.suffix == ".parquet":
        pq.write_table(table, path, row_group_size=97)
    elif path.suffix == ".csv":
        pcsv.write_csv(table, path)
    else:
        with open(path, "w", encoding="utf-8") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row) + "\n")
    return path


def read_output(path: Path) -> tuple[list, np.ndarray, dict]:
    table = pq.read_table(path)
    emb = table.column("embedding").combine_chunks()
    vectors = emb.flatten().to_numpy().reshape(len(emb), -1)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return table.column(0).to_pylist(), vectors, meta


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_each_input_format_to_parquet_with_ids_and_model_metadata(tmp_path, folder, model, suffix):
    ids = [f"doc-{i}" for i in range(len(TEXTS))]
    src = write_input(tmp_path / f"in{suffix}", TEXTS, ids)
    result = embed_file(src, tmp_path / "out.parquet", model, id_column="doc_id", chunk_rows=64, show_progress_bar=False)
    assert (result.rows, result.embedded, result.resumed_from, result.dimension) == (len(TEXTS), len(TEXTS), 0, 8)
    got_ids, vectors, meta = read_output(tmp_path / "out.parquet")
    assert got_ids == ids
    np.testing.assert_allclose(vectors, model.encode(TEXTS), rtol=1e-6, atol=1e-6)
    assert meta["lightembed.model"] == str(folder) and meta["lightembed.onnx_file"] == "onnx/model.onnx"
    assert meta["lightembed.dimension"] == "8" and meta["lightembed.text_column"] == "text"
    assert not (tmp_path / "out.parquet.parts").exists()


def test_npy_output_row_number_ids_and_the_cli_with_a_pool(tmp_path, folder, model):
    src = write_input(tmp_path / "in.csv", TEXTS)  # no id column: row numbers
    embed_file(src, tmp_path / "out.npy", model, chunk_rows=100, show_progress_bar=False)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), model.encode(TEXTS), rtol=1e-6, atol=1e-6)
    args = ["embed-file", str(src), "-o", str(tmp_path / "cli.parquet"), "--model", str(folder), "--pool", "2",
            "--chunk-rows", "128", "--normalize", "--no-progress"]
    assert cli_main(args) == 0
    ids, vectors, meta = read_output(tmp_path / "cli.parquet")
    assert ids == list(range(len(TEXTS)))
    np.testing.assert_allclose(vectors, model.encode(TEXTS, normalize_embeddings=True), rtol=1e-6, atol=1e-6)
    assert meta["lightembed.normalize_embeddings"] == "true"


def test_a_killed_run_resumes_without_losing_or_duplicating_rows(tmp_path, folder, model):
    n = 30000
    texts = [TEXTS[i % len(TEXTS)] + f" row{i}" for i in range(n)]
    src = write_input(tmp_path / "big.jsonl", texts, [f"r{i}" for i in range(n)])
    out = tmp_path / "big.parquet"
    journal = tmp_path / "big.parquet.parts" / "journal.json"
    cmd = [sys.executable, "-m", "lightembed.cli", "embed-file", str(src), "-o", str(out), "--model", str(folder),
           "--id-column", "doc_id", "--chunk-rows", "100", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE)
    done_at_kill = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done_at_kill = json.loads(journal.read_text())["rows_done"]
        except (OSError, ValueError):
            done_at_kill = 0
        if done_at_kill >= 1000:
            break
        time.sleep(0.005)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert not out.exists()
    rows_done = json.loads(journal.read_text())["rows_done"]
    assert 1000 <= rows_done < n, rows_done

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resumed at row {rows_done}" in again.stderr
    ids, vectors, _ = read_output(out)
    assert ids == [f"r{i}" for i in range(n)]  # every row once, in input order
    np.testing.assert_allclose(vectors, model.encode(texts), rtol=1e-6, atol=1e-6)
    assert not journal.parent.exists()


def test_an_interrupted_run_of_another_job_is_not_mixed_in(tmp_path, model):
    src = write_input(tmp_path / "in.parquet", TEXTS)
    out = tmp_path / "out.parquet"
    parts = tmp_path / "out.parquet.parts"
    parts.mkdir()
    job = {"input": {}, "chunk_rows": 1}
    (parts / "journal.json").write_text(json.dumps({"job": job, "rows_done": 1, "parts": [], "finished": False}))
    with pytest.raises(ValueError, match=r"interrupted run of a different job .*chunk_rows"):
        embed_file(src, out, model, chunk_rows=64, show_progress_bar=False)
    embed_file(src, out, model, chunk_rows=64, show_progress_bar=False, overwrite=True)
    assert read_output(out)[0] == list(range(len(TEXTS)))
    with pytest.raises(FileExistsError, match="--overwrite"):
        embed_file(src, out, model, show_progress_bar=False)


def test_bad_inputs_fail_with_a_clear_error(tmp_path, folder, model, capsys):
    src = write_input(tmp_path / "in.jsonl", TEXTS[:5], text_column="body")
    with pytest.raises(ValueError, match=r"no column 'text' \(columns: \['body'\]\).*--text-column"):
        embed_file(src, tmp_path / "o.parquet", model, show_progress_bar=False)
    with pytest.raises(ValueError, match=r"no column 'key'.*--id-column"):
        embed_file(src, tmp_path / "o.parquet", model, text_column="body", id_column="key", show_progress_bar=False)
    with open(tmp_path / "nulls.jsonl", "w") as f:
        f.write('{"text": "hello"}\n{"text": null}\n')
    with pytest.raises(ValueError, match=r"row 1 has no text in column 'text'"):
        embed_file(tmp_path / "nulls.jsonl", tmp_path / "o.parquet", model, show_progress_bar=False)
    with pytest.raises(ValueError, match=r"unknown input format"):
        embed_file(src.rename(tmp_path / "in.txt"), tmp_path / "o.parquet", model)
    with pytest.raises(ValueError, match=r"must end in .parquet or .npy"):
        embed_file(tmp_path / "nulls.jsonl", tmp_path / "o.csv", model)
    assert cli_main(["embed-file", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "o.npy"), "--model", str(folder)]) == 2
    assert "input file not found" in capsys.readouterr().err


def test_without_pyarrow_the_error_names_the_extra(tmp_path, monkeypatch, folder):
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r'pip install "lightembed\[files\]"'):
        embed_file(tmp_path / "x.csv", tmp_path / "o.npy", str(folder))


def test_input_is_streamed_one_chunk_at_a_time():
    consumed = []

    def batches():
        for i in range(100):
            consumed.append(i)
            yield pa.RecordBatch.from_pydict({"text": [f"t{i}-{j}" for j in range(10)]})

    chunks = rows_in_chunks(batches(), chunk_rows=25, skip=0)
    first, table = next(chunks)
    assert (first, table.num_rows, len(consumed)) == (0, 25, 3)  # three 10-row blocks read, not the file
    rest = list(chunks)
    assert [f for f, _ in rest] == list(range(25, 1000, 25)) and all(t.num_rows == 25 for _, t in rest)
    resumed = list(rows_in_chunks(batches(), chunk_rows=300, skip=437))
    assert [(f, t.num_rows) for f, t in resumed] == [(437, 300), (737, 263)]
    assert resumed[0][1].column("text")[0].as_py() == "t43-7"


def test_progress_bar_counts_rows(tmp_path, model, capsys):
    src = write_input(tmp_path / "in.parquet", TEXTS)
    embed_file(src, tmp_path / "out.npy", model, chunk_rows=100)
    err = capsys.readouterr().err
    assert "Embedding" in err and f"{len(TEXTS)}/{len(TEXTS)}" in err  # Parquet knows its row count


# ----- errors that name the row, and rows that are fine (issue 24) -----------------------------------------------
LONG = "the cat sat on the mat " * 20  # ~460 characters: 3000 rows are well past pyarrow's 1 MiB blocks


def test_a_broken_jsonl_row_after_the_first_megabyte_is_named_by_its_row(tmp_path, model):
    rows = [json.dumps({"text": LONG, "id": i}) for i in range(4000)]
    rows[3000] = '{"text": "broken'
    (tmp_path / "in.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"in\.jsonl: row 3000\b"):
        embed_file(tmp_path / "in.jsonl", tmp_path / "o.parquet", model, show_progress_bar=False)


def test_a_broken_csv_row_after_the_first_megabyte_is_named_by_its_row(tmp_path, model):
    lines = ["text,id"] + [f"{LONG},{i}" for i in range(4000)]
    lines[3001] = "a,b,c"  # data row 3000
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"in\.csv: row 3000\b"):
        embed_file(tmp_path / "in.csv", tmp_path / "o.parquet", model, show_progress_bar=False)


def test_a_valid_row_with_an_extra_field_later_in_the_file_is_embedded(tmp_path, model):
    rows = [{"text": f"{LONG} {i}", "id": i} for i in range(3000)]
    rows[2500]["source"] = "web"  # a field the first block never had
    with open(tmp_path / "in.jsonl", "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    result = embed_file(tmp_path / "in.jsonl", tmp_path / "o.parquet", model, show_progress_bar=False, chunk_rows=1000)
    assert result.rows == 3000
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.column("id").to_pylist() == list(range(3000))
    got = np.array(table.column("embedding").to_pylist()[2500], dtype=np.float32)
    np.testing.assert_allclose(got, model.encode(rows[2500]["text"]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_invalid_utf8_names_the_file_and_row(tmp_path, model, suffix):
    good = [f"{LONG} {i}" for i in range(2500)]
    if suffix == ".jsonl":
        data = b"".join(json.dumps({"text": t}).encode() + b"\n" for t in good) + b'{"text": "bad \xff"}\n'
    else:
        data = b"text\n" + b"".join(t.encode() + b"\n" for t in good) + b"bad \xff\n"
    (tmp_path / f"in{suffix}").write_bytes(data)
    with pytest.raises(ValueError, match=rf"in\{suffix}: row 2500: .*not valid UTF-8"):
        embed_file(tmp_path / f"in{suffix}", tmp_path / "o.parquet", model, show_progress_bar=False)
