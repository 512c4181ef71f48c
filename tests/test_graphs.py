"""The graphs/ layer: one way to open a model file (lightembed.graphs), one manifest reader (lightembed.manifest),
one place for the machine's facts (lightembed.machine), one list of environment variables (lightembed.env), one
error root (lightembed.errors)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lightembed import SentenceTransformer, env, machine, manifest
from lightembed.errors import IntegrityError, LightembedError, LightembedValueError, NotSupportedError, PoolError
from lightembed.graphs import Graph, GraphOptions, open_graph, policy
from lightembed.graphs.onnxruntime import OnnxGraph
from lightembed.graphs.openvino import OpenVinoGraph

ROOT = Path(__file__).resolve().parent.parent / "lightembed"
TEXTS = ["the cat sat on the mat", "a dog ran in the park", "hello world"]


def _sources() -> dict[str, ast.Module]:
    return {p.relative_to(ROOT).as_posix(): ast.parse(p.read_text()) for p in ROOT.rglob("*.py")}


def test_only_the_onnxruntime_backend_creates_sessions():
    found = []
    for name, tree in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "InferenceSession":
                found.append(name)
    assert set(found) == {"graphs/onnxruntime.py"}


def test_only_the_manifest_module_reads_lightembed_json():
    """No module but lightembed/manifest.py parses the manifest file (the rest call manifest.read)."""
    readers = ("load", "loads", "read_json", "read_json_file", "_read_json", "read_text")
    offenders = []
    for name, tree in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                text = ast.unparse(node)
                if func in readers and ("MANIFEST_NAME" in text or "lightembed.json" in text):
                    offenders.append(name)
    assert offenders == []  # the pre-graphs tree had six: integrity, openvino_backend, variants, preoptimized, saving


def test_a_backend_is_one_module_and_one_line(monkeypatch, tiny_model):
    monkeypatch.setitem(policy.OPENERS, "numpy", "tests.numpy_backend")
    ours = SentenceTransformer(tiny_model, backend="numpy")
    reference = SentenceTransformer(tiny_model, backend="onnx")
    assert ours.get_backend() == "numpy" and ours.runtime_info.providers == ["NumPy"]
    np.testing.assert_allclose(ours.encode(TEXTS), reference.encode(TEXTS), atol=1e-6)


def test_every_backend_graph_is_a_graph(tiny_model):
    path = Path(tiny_model) / "onnx" / "model.onnx"
    onnx = open_graph(Path(tiny_model), path, GraphOptions())
    vino = open_graph(Path(tiny_model), path, GraphOptions(backend="openvino"))
    assert isinstance(onnx.graph, OnnxGraph) and isinstance(vino.graph, OpenVinoGraph)
    for opened in (onnx, vino):
        assert isinstance(opened.graph, Graph)
        assert opened.graph.output_shape()[-1] == 8 and opened.graph.threads >= 1
    batch = {"input_ids": np.array([[2, 4, 3]]), "attention_mask": np.ones((1, 3)), "token_type_ids": np.zeros((1, 3))}
    np.testing.assert_allclose(onnx.graph(batch), vino.graph(batch), atol=1e-6)


def _exported(tiny_model: Path) -> Path:
    """The tiny folder with a manifest record for its file, as the exporter writes one."""
    from lightembed.graphs.integrity import sha256_of

    onnx = tiny_model / "onnx" / "model.onnx"
    record = {"path": "onnx/model.onnx", "sha256": sha256_of(onnx), "passed": True, "metrics": {"min_cosine": 1.0}}
    manifest.write(tiny_model, {"format_version": 1, "model": {"class": "SentenceTransformer"}, "files": [record]})
    return tiny_model


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda data: [data], "holds a JSON list"),
        (lambda data: {**data, "files": {"onnx/model.onnx": {}}}, "`files` is a dict"),
        (lambda data: {**data, "files": [{**data["files"][0], "sha256": None}]}, "records no sha256"),
        (lambda data: {**data, "files": ["onnx/model.onnx"]}, r"files\[0\] is not a record"),
    ],
)
def test_a_damaged_manifest_never_turns_the_check_off(tiny_model, damage, why):
    folder = _exported(Path(tiny_model))
    path = folder / manifest.MANIFEST_NAME
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    with pytest.raises(IntegrityError, match=why):
        SentenceTransformer(folder)
    unchecked = SentenceTransformer(folder, verify=False)  # the explicit way to load it anyway
    assert unchecked.runtime_info.verified is False and unchecked.encode(TEXTS).shape == (3, 8)


def test_broken_manifest_json_is_an_error_naming_the_file(tiny_model):
    folder = _exported(Path(tiny_model))
    (folder / manifest.MANIFEST_NAME).write_text("{not json")
    with pytest.raises(IntegrityError, match="lightembed.json cannot be read as JSON"):
        SentenceTransformer(folder)


def test_the_manifest_is_read_once_per_load(tiny_model, monkeypatch):
    folder = _exported(Path(tiny_model))
    reads = []
    real = manifest.read
    monkeypatch.setattr(manifest, "read", lambda *a, **k: reads.append(a) or real(*a, **k))
    model = SentenceTransformer(folder)
    assert model.runtime_info.verified is True and model.precision == "float32"
    assert len(reads) == 1


def test_manifest_writes_are_atomic_and_typed(tmp_path):
    data = {"files": [{"path": "onnx/a.onnx", "sha256": "ab", "passed": True, "quantization": {"mode": "x"}}]}
    manifest.write(tmp_path, data)
    assert not list(tmp_path.glob("*.tmp"))
    read = manifest.read(tmp_path)
    assert read is not None and read.files["onnx/a.onnx"].precision == "int8"
    manifest.set_file_blocks(tmp_path, "extra", {"onnx/a.onnx": {"k": 1}})
    assert manifest.read(tmp_path).files["onnx/a.onnx"].raw["extra"] == {"k": 1}


def test_the_class_the_exporter_recorded_decides_what_the_server_loads(tiny_model):
    from lightembed.server.loading import model_kind

    folder = _exported(Path(tiny_model))
    assert model_kind(folder) == "embed"
    data = json.loads((folder / manifest.MANIFEST_NAME).read_text())
    data["model"]["class"] = "CrossEncoder"  # the record wins over the folder's Pooling module
    manifest.write(folder, data)
    assert model_kind(folder) == "rerank"


ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 sha_ni

processor\t: 1
vendor_id\t: AuthenticAMD
"""


def test_machine_reads_the_cpu_once_in_one_place(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(ZEN4)
    assert machine.cpu_identity(info) == {
        "vendor": "AuthenticAMD",
        "family": "25",
        "model": "17",
        "model_name": "AMD EPYC 9R14 96-Core Processor",
    }
    flags = machine.cpu_flags(info)
    assert "avx512_bf16" in flags and not machine.has_amx_bf16(flags)
    assert machine.isa(flags) == ["avx", "avx2", "avx512_bf16", "avx512_vnni", "avx512bw", "avx512f", "avx512vl", "fma"]
    key = machine.machine_class()  # this machine's: what a measured choice is recorded under
    assert set(key) == {"machine", "vendor", "family", "model", "isa"} and key["isa"] == machine.isa()


def test_every_variable_is_listed_and_booleans_parse_one_way(monkeypatch):
    names = {v.name for v in env.VARIABLES}
    used = set()
    for tree in _sources().values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                used.update(re.findall(r"\bLIGHTEMBED_[A-Z_]*[A-Z]\b", node.value))
    assert used - names - {"LIGHTEMBED_"} == set()
    monkeypatch.setenv("LIGHTEMBED_PREOPTIMIZED", "Off")
    assert env.flag("LIGHTEMBED_PREOPTIMIZED", True) is False
    monkeypatch.setenv("LIGHTEMBED_PREOPTIMIZED", "maybe")
    with pytest.raises(ValueError, match="LIGHTEMBED_PREOPTIMIZED='maybe'"):
        env.flag("LIGHTEMBED_PREOPTIMIZED", True)


def test_environment_behaviours_have_constructor_twins(tiny_model, monkeypatch):
    monkeypatch.setenv("LIGHTEMBED_SPINNING", "0")

    def spinning(model):
        entries = model._graph.session.get_session_options().get_session_config_entry
        try:
            return entries("session.intra_op.allow_spinning")
        except RuntimeError:  # not set: onnxruntime's default, which spins
            return None

    assert spinning(SentenceTransformer(tiny_model)) == "0"
    assert spinning(SentenceTransformer(tiny_model, spinning=True)) is None  # the argument wins


def test_one_error_root_keeps_the_builtin_types(tiny_model):
    for error in (IntegrityError, LightembedValueError, NotSupportedError, PoolError):
        assert issubclass(error, LightembedError)
    with pytest.raises(LightembedError) as caught:
        SentenceTransformer(tiny_model, threads=0)
    assert isinstance(caught.value, ValueError)


def test_processor_and_config_kwargs_apply_or_are_refused_by_name(tiny_model):
    assert SentenceTransformer(tiny_model, processor_kwargs={"model_max_length": 5}).max_seq_length == 5
    assert SentenceTransformer(tiny_model, tokenizer_kwargs={"model_max_length": 6}).max_seq_length == 6
    with pytest.raises(ValueError, match=r"processor_kwargs \['padding_side'\]"):
        SentenceTransformer(tiny_model, processor_kwargs={"padding_side": "left"})
    with pytest.raises(ValueError, match=r"config_kwargs \['attn_implementation'\]"):
        SentenceTransformer(tiny_model, config_kwargs={"attn_implementation": "sdpa"})
    assert SentenceTransformer(tiny_model, processor_kwargs={}, config_kwargs={}).max_seq_length == 12


def test_a_graph_that_returns_nan_is_an_error_not_a_vector(tiny_model):
    """Damaged weights with no manifest to catch them: the output is refused, never returned as a vector."""
    from tests.tiny import poison_weights

    poison_weights(Path(tiny_model))
    for backend in ("onnx", "openvino"):
        with pytest.raises(ValueError, match="non-finite values"):
            SentenceTransformer(tiny_model, backend=backend).encode(TEXTS)


def test_module_paths_stay_inside_the_folder(tiny_model, tmp_path):
    modules_json = Path(tiny_model) / "modules.json"
    modules = json.loads(modules_json.read_text())
    outside = tmp_path / "elsewhere"
    (outside / "1_Pooling").mkdir(parents=True)
    (outside / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    modules[1]["path"] = "../elsewhere/1_Pooling"
    modules_json.write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="leads outside the model folder"):
        SentenceTransformer(tiny_model)


def test_the_manifest_covers_the_tokenizer_and_configs(tiny_model):
    """A valid but scrambled tokenizer.json, or an edited config, changes the vectors without touching the ONNX
    file: the manifest's support_files catch it at load."""
    folder = _exported(Path(tiny_model))
    data = json.loads((folder / manifest.MANIFEST_NAME).read_text())
    data[manifest.SUPPORT_FILES] = manifest.support_files(folder)
    manifest.write(folder, data)
    listed = {f["path"] for f in data[manifest.SUPPORT_FILES]}
    assert {"tokenizer.json", "modules.json", "1_Pooling/config.json", "config.json"} <= listed
    assert SentenceTransformer(folder).runtime_info.verified
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    names = list(vocab)
    tokenizer["model"]["vocab"] = dict(zip(names, reversed(list(vocab.values()))))  # still a valid tokenizer
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(IntegrityError, match="tokenizer.json does not match"):
        SentenceTransformer(folder)
    assert SentenceTransformer(folder, verify=False).encode(TEXTS).shape == (3, 8)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(IntegrityError, match="tokenizer.json, which lightembed.json lists, is missing"):
        SentenceTransformer(folder)


def test_every_error_lightembed_raises_is_a_lightembed_error():
    """No bare built-in ValueError/TypeError/RuntimeError raised anywhere in lightembed/: each is one of
    lightembed.errors' types (which keep the built-in type as a base)."""
    bare = []
    for name, tree in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                if isinstance(func, ast.Name) and func.id in ("ValueError", "TypeError", "RuntimeError"):
                    bare.append(f"{name}:{node.lineno}")
    assert bare == []


def test_a_handoff_graph_runs_the_first_graph_until_the_later_one_is_open():
    """graphs.handoff: the first calls run on `first`, the second starts opening the later graph; then every call
    runs on it. A later graph that fails to open leaves `first` answering, with the error kept."""
    import threading

    import numpy as np

    from lightembed.graphs.handoff import HandoffGraph

    class Fake:
        input_dtypes = {"input_ids": "int64"}
        output_names = ["out"]
        output_name = "out"
        output_width = 1
        metadata: dict = {}
        io_binding = False
        threads = 1

        def __init__(self, value):
            self.value, self.providers, self.input_names = value, [f"P{value}"], ["input_ids"]

        def output_shape(self, name=None):
            return [None, 1]

        def __call__(self, arrays, output=None):
            return np.full((len(arrays["input_ids"]), 1), self.value, np.float32)

    gate = threading.Event()
    opened = []

    def open_later():
        gate.wait(10)
        opened.append(True)
        return Fake(2)

    graph = HandoffGraph(Fake(1), open_later)
    feed = {"input_ids": np.zeros((2, 3), np.int64)}
    assert graph.providers == ["P1"] and not opened  # nothing opened before the first call
    assert graph(feed)[0, 0] == 1
    assert graph._thread is None  # one call (a one-text script) opens nothing
    assert graph(feed)[0, 0] == 1 and graph._thread is not None  # the second starts the opening
    assert graph(feed)[0, 0] == 1  # still opening
    gate.set()
    assert graph.wait(10) and graph(feed)[0, 0] == 2 and graph.providers == ["P2"]
    assert graph._first is graph._later  # the first graph is released, not kept beside the later one

    def broken():
        raise RuntimeError("no OpenVINO today")

    failing = HandoffGraph(Fake(1), broken)
    assert failing(feed)[0, 0] == 1 and failing(feed)[0, 0] == 1 and failing.wait(10) is False
    assert failing(feed)[0, 0] == 1 and "no OpenVINO today" in str(failing.error)
