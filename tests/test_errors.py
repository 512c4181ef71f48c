"""Bad input gets a clear exception that names the problem."""

from __future__ import annotations

import shutil

import pytest

from lightembed import SentenceTransformer
from tests.tiny import make_model


@pytest.fixture
def model(tiny_model):
    return SentenceTransformer(tiny_model, device="cpu")


@pytest.mark.parametrize(
    "bad, match",
    [
        (None, "None"),
        (b"bytes", "bytes"),
        (["ok", None], r"inputs\[1\] must be a string, got None"),
        (["ok", "fine", 3], r"inputs\[2\] must be a string, got int"),
        ([["nested"]], "nested lists"),
        ({"a": 1}, "dict"),
        (42, "int"),
    ],
)
def test_bad_inputs_raise_type_error(model, bad, match):
    with pytest.raises(TypeError, match=match):
        model.encode(bad)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -3}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"precision": "int4"}, "int4"),
        ({"prompt_name": "missing"}, "missing"),
        ({"output_value": "logits"}, "output_value"),
        ({"truncate_dim": 0}, "truncate_dim"),
        ({"unknown_option": 1}, "unknown_option"),
        ({"device": "cuda"}, "cuda"),
    ],
)
def test_bad_options_raise_value_error(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        model.encode(["hello"], **kwargs)


def test_empty_and_overlong_strings_are_valid(model):
    out = model.encode(["", "the " * 10_000])
    assert out.shape == (2, 8)


def test_missing_onnx_file(tmp_path):
    folder = make_model(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="model_O3.onnx"):
        SentenceTransformer(folder, file_name="model_O3.onnx")
    (folder / "onnx" / "model.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="not a model folder|no ONNX"):
        SentenceTransformer(folder)


def test_torch_weights_only_names_the_exporter(tmp_path):
    folder = make_model(tmp_path / "m")
    shutil.rmtree(folder / "onnx")
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(FileNotFoundError, match="lightembed-export"):
        SentenceTransformer(folder)


def test_other_onnx_files_are_listed(tmp_path):
    folder = make_model(tmp_path / "m", onnx_path="onnx/model_O2.onnx")
    with pytest.raises(FileNotFoundError, match="model_O2.onnx"):
        SentenceTransformer(folder)
    assert SentenceTransformer(folder, file_name="model_O2.onnx").onnx_path.name == "model_O2.onnx"
    assert SentenceTransformer(folder, model_kwargs={"file_name": "onnx/model_O2.onnx"}).encode("cat").shape == (8,)


def test_corrupt_onnx_file(tmp_path):
    folder = make_model(tmp_path / "m")
    (folder / "onnx" / "model.onnx").write_bytes(b"this is not a protobuf")
    with pytest.raises(ValueError, match="Could not load ONNX model"):
        SentenceTransformer(folder)


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        SentenceTransformer(tmp_path / "empty")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        SentenceTransformer(tmp_path / "file.txt")
    with pytest.raises(FileNotFoundError, match="not a valid"):
        SentenceTransformer(str(tmp_path / "no such" / "place!"))


def test_broken_configs(tmp_path):
    folder = make_model(tmp_path / "m")
    (folder / "modules.json").write_text("{not json")
    with pytest.raises(ValueError, match="modules.json"):
        SentenceTransformer(folder)
    folder = make_model(tmp_path / "p", pooling={"pooling_mode": "median"})
    with pytest.raises(ValueError, match="median"):
        SentenceTransformer(folder)
    folder = make_model(tmp_path / "n")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        SentenceTransformer(folder)


def test_unsupported_module_type(tmp_path):
    import json

    folder = make_model(tmp_path / "m")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 9, "name": "x", "path": "x", "type": "sentence_transformers.models.LSTM"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="LSTM"):
        SentenceTransformer(folder)


def test_bad_constructor_options(tiny_model):
    with pytest.raises(ValueError, match="backend"):
        SentenceTransformer(tiny_model, backend="tensorflow")
    # sentence-transformers' own default, passed explicitly by frameworks (Haystack): lightembed's default runtime
    model = SentenceTransformer(tiny_model, backend="torch")
    assert model.get_backend() == "onnx" and "backend='torch'" in model.backend_reason
    with pytest.raises(ValueError, match="threads"):
        SentenceTransformer(tiny_model, threads=0)
    with pytest.raises(ValueError, match="device"):
        SentenceTransformer(tiny_model, device="tpu")
    with pytest.raises(ValueError, match="similarity_fn_name"):
        SentenceTransformer(tiny_model, similarity_fn_name="jaccard")
    with pytest.raises(TypeError, match="model_name_or_path"):
        SentenceTransformer(None)
