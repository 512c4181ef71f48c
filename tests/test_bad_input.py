"""Bad input and failure cases a hostile test found (issue 8): each is answered clearly, the same way in the
three model classes and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from lightembed import CrossEncoder, SentenceTransformer, SparseEncoder
from lightembed.cli import main
from tests.test_cross_encoder import make_ce
from tests.test_sparse_encoder import make_splade
from tests.tiny import make_model


@pytest.fixture
def three(tmp_path):
    return (
        SentenceTransformer(make_model(tmp_path / "st")),
        CrossEncoder(make_ce(tmp_path / "ce")),
        SparseEncoder(make_splade(tmp_path / "sp")),
    )


def _run_all(models, texts):
    st, ce, sp = models
    return [lambda: st.encode(texts), lambda: ce.predict([(t, "cat") for t in texts]), lambda: sp.encode(texts)]


# ----- inputs ---------------------------------------------------------------------------------------------------
def test_zero_d_string_array_is_one_text(tiny_model):
    model = SentenceTransformer(tiny_model)
    out = model.encode(np.array("hello world"))
    assert out.shape == (8,)  # one text: a 1-D vector, as for a str
    np.testing.assert_array_equal(out, model.encode("hello world"))
    sparse = SparseEncoder(make_splade(tiny_model.parent / "sp"))
    assert sparse.encode(np.array("hello world")).toarray().shape == (sparse.get_embedding_dimension(),)


@pytest.mark.parametrize("bad", ["\ud800", "caf\udce9", b"caf\xe9".decode("utf-8", "surrogateescape")])
def test_lone_surrogate_is_rejected_naming_the_input_in_every_class(three, bad):
    for call in _run_all(three, ["hello world", bad]):
        with pytest.raises(ValueError, match=r"inputs\[1\].*(lone surrogate|not valid Unicode)"):
            call()


def test_cli_names_the_stdin_line_that_is_not_utf8(tiny_model):
    proc = subprocess.run(
        [sys.executable, "-m", "lightembed.cli", "encode", str(tiny_model)],
        input=b"hello world\ncaf\xe9 cat\n",
        capture_output=True,
        timeout=120,
    )
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "stdin line 2 is not valid UTF-8" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_numpy_integers_are_integers(three):
    st, ce, sp = three
    texts = ["hello world", "the cat sat"]
    np.testing.assert_array_equal(st.encode(texts, batch_size=np.int64(1)), st.encode(texts, batch_size=1))
    np.testing.assert_array_equal(st.encode(texts, truncate_dim=np.int32(4)), st.encode(texts)[:, :4])
    pairs = [(t, "cat") for t in texts]
    np.testing.assert_array_equal(ce.predict(pairs, batch_size=np.int64(1)), ce.predict(pairs, batch_size=1))
    np.testing.assert_array_equal(sp.encode(texts, batch_size=np.int64(1)).toarray(), sp.encode(texts, batch_size=1).toarray())
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        st.encode(texts, batch_size=np.bool_(True))


def test_rank_rejects_a_negative_top_k_like_semantic_search(tmp_path):
    from lightembed import util

    ce = CrossEncoder(make_ce(tmp_path / "ce"))
    docs = ["the cat", "a dog", "red mat"]
    with pytest.raises(ValueError, match="top_k must be an integer >= 0"):
        ce.rank("cat", docs, top_k=-1)
    with pytest.raises(ValueError, match="top_k"):
        util.semantic_search(np.ones((1, 2)), np.ones((3, 2)), top_k=-1)
    assert len(ce.rank("cat", docs, top_k=np.int64(2))) == 2
    assert ce.rank("cat", docs, top_k=0) == []


# ----- max_seq_length -----------------------------------------------------------------------------------------
def test_max_seq_length_beyond_the_position_embeddings_is_refused(three):
    for model in three:  # the tiny configs have 64 position embeddings
        model.max_seq_length = 64
        with pytest.raises(ValueError, match="64 position embeddings"):
            model.max_seq_length = 65
        assert model.max_seq_length == 64


def test_roberta_style_position_offset_is_taken_off_the_limit(tiny_model):
    config = json.loads((tiny_model / "config.json").read_text())
    config.update(model_type="xlm-roberta", max_position_embeddings=66, pad_token_id=1)
    (tiny_model / "config.json").write_text(json.dumps(config))
    model = SentenceTransformer(tiny_model)
    model.max_seq_length = 64
    with pytest.raises(ValueError, match="64 position embeddings"):
        model.max_seq_length = 65


def test_setting_max_seq_length_while_other_threads_encode_is_safe(tiny_model):
    model = SentenceTransformer(tiny_model)
    texts = ["the cat sat on the mat " * 4, "hello world"] * 200
    errors: list[BaseException] = []
    stop = threading.Event()

    def encode() -> None:
        try:
            while not stop.is_set():
                model.encode(texts, batch_size=64)
        except BaseException as exc:  # noqa: BLE001 - any error is the failure under test
            errors.append(exc)

    workers = [threading.Thread(target=encode) for _ in range(3)]
    for w in workers:
        w.start()
    for i in range(300):
        model.max_seq_length = 8 + i % 20
    stop.set()
    for w in workers:
        w.join(60)
    assert not errors, errors[:1]
    model.max_seq_length = 5
    assert model.tokenize(["the cat sat on the mat"])["input_ids"].shape == (1, 5)


# ----- model files ------------------------------------------------------------------------------------------
def test_malformed_tokenizer_json_names_the_file(three, tmp_path):
    for folder, cls in ((tmp_path / "st", SentenceTransformer), (tmp_path / "ce", CrossEncoder), (tmp_path / "sp", SparseEncoder)):
        (folder / "tokenizer.json").write_text('{"version": "1.0", "model": ')
        with pytest.raises(ValueError, match=r"tokenizer\.json is not a valid tokenizer file"):
            cls(folder)
    assert main(["info", str(tmp_path / "st")]) == 2


def test_non_integer_max_seq_length_names_the_config_file(tiny_model):
    (tiny_model / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": "abc"}))
    with pytest.raises(ValueError, match=r"max_seq_length in .*sentence_bert_config\.json must be a positive integer"):
        SentenceTransformer(tiny_model)


def test_empty_modules_json_is_not_a_model(tiny_model):
    (tiny_model / "modules.json").write_text("[]")
    with pytest.raises(ValueError, match="lists no modules"):
        SentenceTransformer(tiny_model)


# ----- batches and progress -----------------------------------------------------------------------------------
class _Bar:
    def __init__(self, iterable, desc=None, total=None):
        self.iterable, self.total = list(iterable), total
        _Bar.seen.append(self)

    def __iter__(self):
        return iter(self.iterable)


def test_progress_total_counts_the_batches_that_run(monkeypatch, tiny_model):
    tqdm_auto = pytest.importorskip("tqdm.auto")
    _Bar.seen = []
    monkeypatch.setattr(tqdm_auto, "tqdm", _Bar)
    model = SentenceTransformer(tiny_model, max_batch_tokens=24)
    texts = ["the cat sat on the mat a dog ran"] * 10 + ["hello"] * 10
    model.encode(texts, batch_size=16, show_progress_bar=True)
    bar = _Bar.seen[-1]
    assert bar.total == len(bar.iterable) > 2  # ceil(20 / 16) = 2 would be wrong


def _record_graph(model):
    shapes = []
    graph = model._graph

    class Recorder:
        def __getattr__(self, name):
            return getattr(graph, name)

        def __call__(self, arrays, *args):
            shapes.append(arrays["input_ids"].shape)
            return graph(arrays, *args)

    model._graph = Recorder()
    return shapes


def test_cross_and_sparse_encoders_keep_the_token_budget(tmp_path):
    long = "the cat sat on the mat a dog ran in park"
    texts = [long] * 12 + ["cat"] * 4
    ce = CrossEncoder(make_ce(tmp_path / "ce"))
    unbounded = ce.predict([(t, "hello world") for t in texts])
    ce.max_batch_tokens = 40
    shapes = _record_graph(ce)
    np.testing.assert_allclose(ce.predict([(t, "hello world") for t in texts]), unbounded, rtol=1e-6)
    assert len(shapes) > 1 and all(r * s <= 40 or r == 1 for r, s in shapes)

    sp = SparseEncoder(make_splade(tmp_path / "sp"))
    reference = sp.encode(texts).toarray()
    sp.max_batch_tokens = 40
    shapes = _record_graph(sp)
    np.testing.assert_array_equal(sp.encode(texts).toarray(), reference)
    assert len(shapes) > 1 and all(r * s <= 40 or r == 1 for r, s in shapes)


# ----- prompts and precision --------------------------------------------------------------------------------
def test_encode_document_falls_back_to_passage_then_corpus(tmp_path):
    model = SentenceTransformer(make_model(tmp_path / "p", prompts={"passage": "red ", "corpus": "blue "}))
    np.testing.assert_array_equal(model.encode_document("cat"), model.encode("red cat"))
    model = SentenceTransformer(make_model(tmp_path / "c", prompts={"corpus": "blue "}))
    np.testing.assert_array_equal(model.encode_document("cat"), model.encode("blue cat"))


def test_int8_docstring_says_how_to_quantize_one_text():
    doc = SentenceTransformer.encode.__doc__
    assert "ranges" in doc and "calibration_embeddings" in doc


# ----- integrity against lightembed.json ----------------------------------------------------------------------
def _manifest(folder: Path, **entry) -> None:
    from lightembed.graphs.integrity import sha256_of

    onnx = folder / "onnx" / "model.onnx"
    record = {"path": "onnx/model.onnx", "sha256": sha256_of(onnx), "passed": True, "metrics": {"cos_min": 1.0}}
    record.update(entry)
    (folder / "lightembed.json").write_text(json.dumps({"files": [record]}))


def _flip_middle(path: Path, size: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + size] = bytes(b ^ 0xFF for b in data[mid : mid + size])
    path.write_bytes(bytes(data))


def test_a_damaged_file_is_refused_and_verify_false_loads_it(tiny_model, monkeypatch):
    _manifest(tiny_model)
    assert SentenceTransformer(tiny_model).runtime_info.verified is True
    onnx = tiny_model / "onnx" / "model.onnx"
    original = onnx.read_bytes()
    from tests.tiny import weights

    data = bytearray(original)
    at = original.index(weights()[0].tobytes()[:64])
    data[at] ^= 0x01  # one bit of a weight: the graph still loads, so only the hash can tell
    onnx.write_bytes(bytes(data))
    assert SentenceTransformer(tiny_model, verify=False).encode("cat").shape == (8,)
    with pytest.raises(ValueError, match="does not match lightembed.json: sha256"):
        SentenceTransformer(tiny_model)
    assert SentenceTransformer(tiny_model, verify=False).runtime_info.verified is False
    monkeypatch.setenv("LIGHTEMBED_VERIFY", "0")  # an image that verified at build time
    assert SentenceTransformer(tiny_model).runtime_info.verified is False
    monkeypatch.delenv("LIGHTEMBED_VERIFY")
    onnx.write_bytes(original)
    _flip_middle(onnx)
    with pytest.raises(ValueError, match="does not match lightembed.json"):
        SentenceTransformer(tiny_model)


def test_a_file_that_failed_its_check_is_not_loadable(tiny_model):
    _manifest(tiny_model, passed=False, metrics={"cos_min": 0.5})
    with pytest.raises(ValueError, match="failed the exporter's comparison"):
        SentenceTransformer(tiny_model)


def test_cli_verify(tiny_model, capsys):
    assert main(["verify", str(tiny_model)]) == 2  # no manifest: nothing could be verified
    _manifest(tiny_model)
    assert main(["verify", str(tiny_model)]) == 0
    assert "onnx/model.onnx: ok" in capsys.readouterr().out
    _flip_middle(tiny_model / "onnx" / "model.onnx", 64)
    assert main(["verify", str(tiny_model)]) == 2
    assert "does not match" in capsys.readouterr().err


# ----- the CLI's destinations ---------------------------------------------------------------------------------
def _cli(*args: str, stdin: bytes | None = None, shell: str | None = None) -> subprocess.CompletedProcess:
    if shell is not None:
        return subprocess.run(shell, shell=True, executable="/bin/bash", capture_output=True, timeout=120)
    return subprocess.run(
        [sys.executable, "-m", "lightembed.cli", *args], input=stdin, capture_output=True, timeout=120
    )


def _one_line_error(proc: subprocess.CompletedProcess, text: str) -> None:
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert text in err and "Traceback" not in err and err.count("\n") == 1, err


def test_cli_output_to_a_directory_or_unwritable_path_fails_before_encoding(tiny_model, tmp_path):
    # The model path does not exist: an error about -o proves the destination was checked first.
    _one_line_error(_cli("encode", str(tmp_path / "missing"), "cat", "-o", str(tmp_path)), "is a directory")
    _one_line_error(
        _cli("encode", str(tmp_path / "missing"), "cat", "-o", str(tmp_path / "no" / "such" / "e.json")),
        "cannot write there",
    )


def test_cli_npy_goes_to_exactly_the_named_file(tiny_model, tmp_path):
    target = tmp_path / "out.bin"
    assert _cli("encode", str(tiny_model), "red dog", "--format", "npy", "-o", str(target)).returncode == 0
    assert not (tmp_path / "out.bin.npy").exists()
    np.testing.assert_allclose(np.load(target), SentenceTransformer(tiny_model).encode(["red dog"]), atol=1e-6)


def test_cli_npy_into_a_closed_pipe_is_not_a_traceback(tiny_model):
    texts = " ".join(f'"the cat sat {i}"' for i in range(2000))
    proc = _cli(
        shell=f"set -o pipefail; {sys.executable} -m lightembed.cli encode {tiny_model} {texts} --format npy | head -c 10"
    )
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr and len(proc.stdout) == 10


def test_cli_malformed_tokenizer_is_one_line(tiny_model):
    (tiny_model / "tokenizer.json").write_text("{")
    _one_line_error(_cli("encode", str(tiny_model), "cat"), "tokenizer.json is not a valid tokenizer file")


# ----- thread spinning ----------------------------------------------------------------------------------------
def test_spinning_is_off_by_default_and_the_environment_can_turn_it_on(tiny_model, monkeypatch):
    def spinning(model) -> str:
        return model._graph.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")

    monkeypatch.delenv("LIGHTEMBED_SPINNING", raising=False)
    assert spinning(SentenceTransformer(tiny_model)) == "0"
    monkeypatch.setenv("LIGHTEMBED_SPINNING", "1")
    with pytest.raises(Exception):  # no entry set: onnxruntime's default (spinning) applies
        spinning(SentenceTransformer(tiny_model))
