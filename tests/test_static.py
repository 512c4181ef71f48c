"""Static embeddings read directly (no export): sentence-transformers StaticEmbedding folders and model2vec
folders give their own library's vectors through SentenceTransformer, from the memory-mapped table."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.static_models import TEXTS, model2vec_static, sentence_transformers_static

pytest.importorskip("sentence_transformers")
pytest.importorskip("model2vec")


def _st(path: Path, **kwargs):
    import sentence_transformers

    return sentence_transformers.SentenceTransformer(str(path), device="cpu", **kwargs)


def _ours(path: Path, **kwargs):
    import lightembed

    return lightembed.SentenceTransformer(str(path), device="cpu", **kwargs)


@pytest.mark.parametrize("normalize", [True, False], ids=["normalize", "raw-mean"])
def test_static_embedding_matches_sentence_transformers(tmp_path: Path, normalize: bool) -> None:
    folder = sentence_transformers_static(tmp_path, normalize=normalize)
    ours = _ours(folder)
    ref = _st(folder).encode(TEXTS, batch_size=4)
    got = ours.encode(TEXTS, batch_size=4)
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=1e-5)
    assert not np.any(got[1]) and not np.any(got[5])  # no tokens: EmbeddingBag's zeros
    assert ours.runtime_info.onnx_file == "model.safetensors" and ours.get_sentence_embedding_dimension() == 16
    assert ours.backend_reason == "a static-embedding table runs in NumPy"
    # a prompt is prepended to the text and tokenized with it, as sentence-transformers does
    np.testing.assert_allclose(
        ours.encode(TEXTS, prompt="query: "), _st(folder).encode(TEXTS, prompt="query: "), atol=1e-6, rtol=1e-5
    )


def test_static_embedding_truncations(tmp_path: Path) -> None:
    """Matryoshka truncate_dim (saved and passed) and a truncation fixed in tokenizer.json, as sentence-transformers."""
    folder = sentence_transformers_static(tmp_path, truncation=5, truncate_dim=8)
    ref = _st(folder).encode(TEXTS)
    got = _ours(folder).encode(TEXTS)
    assert got.shape == (len(TEXTS), 8)
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(
        _ours(folder, truncate_dim=4).encode(TEXTS), _st(folder, truncate_dim=4).encode(TEXTS), atol=1e-6, rtol=1e-5
    )


def test_static_token_embeddings_are_table_rows(tmp_path: Path) -> None:
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    folder = sentence_transformers_static(tmp_path)
    table = load_file(str(folder / "model.safetensors"))["embedding.weight"]
    ids = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(TEXTS[0], add_special_tokens=False).ids
    rows = _ours(folder).encode(TEXTS[:1], output_value="token_embeddings")[0]
    np.testing.assert_array_equal(rows, table[ids])


@pytest.mark.parametrize(
    "options",
    [{}, {"normalize": False}, {"quantized": True}, {"max_length": None}],
    ids=["normalize-max8", "raw", "weights-mapping", "no-max-length"],
)
def test_model2vec_matches_model2vec(tmp_path: Path, options: dict) -> None:
    """model2vec's rules: character cut then max_length tokens, unknown token dropped, weights and mapping, its
    normalize flag."""
    from model2vec import StaticModel

    folder = model2vec_static(tmp_path, **options)
    ref = StaticModel.from_pretrained(str(folder)).encode(TEXTS)
    got = _ours(folder).encode(TEXTS, batch_size=4)
    np.testing.assert_allclose(got, ref, atol=1e-6, rtol=1e-5)


def test_model2vec_folder_without_modules_json(tmp_path: Path) -> None:
    """model2vec's own layout (config.json + model.safetensors + tokenizer.json) needs no modules.json."""
    from model2vec import StaticModel

    folder = model2vec_static(tmp_path)
    (folder / "modules.json").unlink()
    model = _ours(folder)
    assert model.config.static is not None and model.config.static.kind == "model2vec"
    np.testing.assert_allclose(model.encode(TEXTS), StaticModel.from_pretrained(str(folder)).encode(TEXTS), atol=1e-6)


def test_table_is_memory_mapped(tmp_path: Path) -> None:
    from lightembed.safetensors_io import map_safetensors

    folder = sentence_transformers_static(tmp_path)
    tensors = map_safetensors(folder / "model.safetensors")
    assert isinstance(tensors["embedding.weight"], np.memmap) and not tensors["embedding.weight"].flags.writeable
    assert isinstance(_ours(folder)._graph.table, np.memmap)


def test_static_refusals(tmp_path: Path) -> None:
    from lightembed.errors import ModelFileError

    folder = sentence_transformers_static(tmp_path)
    with pytest.raises(ValueError, match="static-embedding model runs in NumPy"):
        _ours(folder, backend="openvino")
    # a tokenizer with more tokens than the table: an error naming the mismatch, not an IndexError
    small = tmp_path / "small"
    shutil.copytree(folder, small)
    from safetensors.numpy import load_file, save_file

    table = load_file(str(small / "model.safetensors"))["embedding.weight"]
    save_file({"embedding.weight": table[:10]}, str(small / "model.safetensors"))
    with pytest.raises(ModelFileError, match="does not belong to its model.safetensors"):
        _ours(small).encode(["the cat sat"])
    # a StaticEmbedding whose table is missing
    (small / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="static-embedding model"):
        _ours(small)


def test_exporter_points_static_folders_to_the_runtime(tmp_path: Path) -> None:
    """The exporter has nothing to export for a StaticEmbedding and says the runtime reads the folder as it is."""
    from lightembed_export import UnsupportedModelError, export_model

    folder = sentence_transformers_static(tmp_path)
    with pytest.raises(UnsupportedModelError, match=r"lightembed.SentenceTransformer\(folder\)") as refused:
        export_model(folder, tmp_path / "out", verbose=False)
    assert refused.value.architecture == "StaticEmbedding" and not (tmp_path / "out").exists()


def test_static_repo_from_the_hub_fetches_its_table(tmp_path: Path) -> None:
    """A Hub repo holding a StaticEmbedding at its root: configs first, then the table, which is its model file."""
    from tests.hub_server import FakeHub, Repo
    from tests.test_hub_loopback import _load

    folder = sentence_transformers_static(tmp_path)
    repo = Repo()
    repo.add_commit("e" * 40, folder, branch="main")
    with FakeHub() as server:
        server.repos["org/static"] = repo
        out = _load(server, tmp_path / "cache",
                    f"m = S('org/static', cache_folder=cache)\nprint(json.dumps(m.encode({TEXTS!r}).tolist()))")  # fmt: skip
        assert "error" not in out, out.get("error")
        assert "model.safetensors" in server.downloads()
    np.testing.assert_allclose(out, _ours(folder).encode(TEXTS), atol=1e-6)


def test_router_static_queries_transformer_documents(tmp_path: Path) -> None:
    """A Router exported route by route: encode_query runs the static route, encode_document and encode() the
    transformer route (the default), each as sentence-transformers runs them."""
    from lightembed_export import export_model

    from tests.static_models import router_model

    src = router_model(tmp_path)
    report = export_model(src, tmp_path / "out", verbose=False)
    assert report["model"]["architecture"] == "Router" and set(report["routes"]) == {"document"}
    assert all(entry["passed"] for entry in report["files"]) and report["files"]
    ref = _st(src)
    ours = _ours(tmp_path / "out")
    assert set(ours.routes) == {"query"} and ours.router.default_route == "document"
    np.testing.assert_allclose(ours.encode_query(TEXTS), ref.encode_query(TEXTS), atol=1e-5)
    np.testing.assert_allclose(ours.encode_document(TEXTS), ref.encode_document(TEXTS), atol=1e-5)
    np.testing.assert_allclose(ours.encode(TEXTS), ref.encode(TEXTS), atol=1e-5)
    np.testing.assert_allclose(ours.encode(TEXTS, task="query"), ref.encode(TEXTS, task="query"), atol=1e-5)
    assert np.abs(ours.encode_query(TEXTS[:1]) - ours.encode_document(TEXTS[:1])).max() > 0.01  # two routes
    assert ours.routes["query"].runtime_info.providers == ["NumPy (static table)"]
    assert ours.runtime_info.onnx_file == "onnx/model.onnx" and ours.runtime_info.verified
    with pytest.raises(ValueError, match="No route for task 'passage'"):
        ours.encode(TEXTS, task="passage")


def test_static_router_loads_without_export(tmp_path: Path) -> None:
    """A Router of static routes needs no export: each route runs from a view of links, removed with the model."""
    import gc

    from tests.static_models import static_router

    src = static_router(tmp_path)
    ref, ours = _st(src), _ours(src)
    np.testing.assert_allclose(ours.encode_query(TEXTS), ref.encode_query(TEXTS), atol=1e-6)
    np.testing.assert_allclose(ours.encode_document(TEXTS), ref.encode_document(TEXTS), atol=1e-6)
    from lightembed import NotSupportedError

    with pytest.raises(NotSupportedError, match="start the pool on the route"):
        ours.start_multi_process_pool(["cpu"])
    view = Path(ours.routes["query"].model_dir)
    assert view.is_dir() and (view / "modules.json").is_file()
    del ours
    gc.collect()
    assert not view.exists()
