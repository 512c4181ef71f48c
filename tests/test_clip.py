"""CLIP (issue 12): a tiny seeded CLIP exported with lightembed-export (text and vision towers), compared with
sentence-transformers on torch for texts, PIL images, image paths and mixed lists; the image preprocessing compared
with transformers' CLIPImageProcessor on real photographs (scikit-image's sample images, installed from PyPI by
scripts/setup.sh); bad inputs and damaged files refused with errors that name them."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests import families

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
Image = pytest.importorskip("PIL.Image")

pytestmark = pytest.mark.integration

FP32_MAX_ABS = 1e-5
MIN_COS = 0.99999
REAL_IMAGES = ("astronaut.png", "coffee.png", "chelsea.png", "camera.png", "rocket.jpg", "logo.png", "color.png")
"""scikit-image's sample images: RGB square and landscape photos, grayscale (camera), JPEG (rocket), RGBA (logo)."""


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.atleast_2d(a).astype(np.float64), np.atleast_2d(b).astype(np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def _close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= FP32_MAX_ABS, np.abs(ours - ref).max()
    assert _min_cos(ours, ref) >= MIN_COS


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(sentence-transformers folder, export folder, the exporter's report) of the tiny CLIP, fp32 and O2."""
    from lightembed_export import export_model

    root = tmp_path_factory.mktemp("clip")
    src = families.clip(root / "st")
    report = export_model(src, root / "out", optimize=["O2"], verbose=False)
    return src, root / "out", report


@pytest.fixture(scope="module")
def models(exported):
    import sentence_transformers

    import lightembed

    src, out, _ = exported
    return sentence_transformers.SentenceTransformer(str(src), device="cpu"), lightembed.SentenceTransformer(str(out))


@pytest.fixture(scope="module")
def pictures():
    from lightembed_export.clip import probe_images

    return probe_images()


def _real_image_dir() -> Path:
    spec = importlib.util.find_spec("skimage")  # located, not imported: installed --no-deps
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-image (its sample images) is not installed: bash scripts/setup.sh installs it")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def test_export_writes_both_towers_and_records_them(exported):
    _, out, report = exported
    files = {f["path"]: f for f in report["files"]}
    assert set(files) == {
        "onnx/text_model.onnx", "onnx/vision_model.onnx", "onnx/text_model_O2.onnx", "onnx/vision_model_O2.onnx"
    }  # fmt: skip
    assert all(f["passed"] for f in files.values()), files
    assert files["onnx/text_model.onnx"]["tower"] == "text" and files["onnx/vision_model.onnx"]["tower"] == "image"
    assert files["onnx/text_model.onnx"]["metrics"]["min_cosine"] >= MIN_COS
    assert files["onnx/vision_model.onnx"]["metrics"]["min_cosine"] >= MIN_COS
    assert report["model"]["architecture"] == "CLIPModel" and report["model"]["modalities"] == ["text", "image"]
    assert (out / "preprocessor_config.json").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "model.safetensors").exists()
    stored = json.loads((out / "lightembed.json").read_text(encoding="utf-8"))
    assert stored["verification"]["passed"] is True


def test_text_matches_sentence_transformers(models):
    st, ours = models
    assert ours.modalities == ["text", "image"] and ours.max_seq_length == st.max_seq_length
    _close(ours.encode(families.TEXTS, batch_size=4), st.encode(families.TEXTS, batch_size=4))
    _close(ours.encode("the cat sat"), st.encode("the cat sat"))


def test_pil_images_match_sentence_transformers(models, pictures):
    st, ours = models
    _close(ours.encode(pictures, batch_size=3), st.encode(pictures, batch_size=3))
    one = ours.encode(pictures[0])
    assert one.shape == (16,)
    _close(one, st.encode(pictures[0]))
    _close(
        ours.encode(pictures, normalize_embeddings=True), st.encode(pictures, normalize_embeddings=True)
    )  # fmt: skip


def test_mixed_list_keeps_input_order(models, pictures):
    st, ours = models
    mixed = ["the cat sat on the mat", pictures[0], pictures[3], "", pictures[6], "a dog ran in the park"]
    got = ours.encode(mixed, batch_size=2)
    # sentence-transformers 5.7 refuses a batch mixing both kinds: encode each input on its own
    ref = np.stack([st.encode(item) for item in mixed])
    _close(got, ref)


def test_image_paths_match_sentence_transformers(models, pictures, tmp_path):
    st, ours = models
    paths = []
    for i, picture in enumerate(pictures[:4]):
        path = tmp_path / f"p{i}.{'jpg' if i % 2 else 'png'}"
        picture.convert("RGB").save(path)
        paths.append(path)
    strings = [str(p) for p in paths]
    ref = st.encode(strings)  # sentence-transformers reads a string naming an image file as that image
    _close(ours.encode(strings), ref)
    _close(ours.encode(paths), ref)  # pathlib.Path: always an image
    _close(ours.encode(paths[1]), ref[1])
    # a string that names no file is text, in both
    _close(ours.encode("missing.png"), st.encode("missing.png"))
    # a data:image/ URI is an image, in both
    import base64

    uri = "data:image/png;base64," + base64.b64encode(paths[0].read_bytes()).decode("ascii")
    _close(ours.encode([uri, "text"]), np.stack([ref[0], st.encode("text")]))


def test_optimized_pair_matches(exported, pictures):
    import sentence_transformers

    import lightembed

    src, out, _ = exported
    st = sentence_transformers.SentenceTransformer(str(src), device="cpu")
    ours = lightembed.SentenceTransformer(str(out), file_name="onnx/text_model_O2.onnx")
    assert ours.image_tower.path.name == "vision_model_O2.onnx"
    assert _min_cos(ours.encode(families.TEXTS), st.encode(families.TEXTS)) >= 0.9999
    assert _min_cos(ours.encode(pictures), st.encode(pictures)) >= 0.9999


def test_real_images_preprocess_as_clip_image_processor(models):
    from transformers import CLIPImageProcessor

    from lightembed.images import ImageProcessor, open_image

    folder = _real_image_dir()
    paths = [folder / name for name in REAL_IMAGES]
    images = [open_image(p, f"inputs[{i}]") for i, p in enumerate(paths)]
    # clip-ViT-B-32's settings (224, the OpenAI mean and std) and the tiny model's (32)
    for ours, theirs in (
        (ImageProcessor(), CLIPImageProcessor()),
        (ImageProcessor(size=32, crop_size=(32, 32)), CLIPImageProcessor(size={"shortest_edge": 32},
                                                                         crop_size={"height": 32, "width": 32})),
    ):  # fmt: skip
        expected = theirs(images=[Image.open(p) for p in paths], return_tensors="np")["pixel_values"]
        got = ours(images)
        assert got.shape == expected.shape and got.dtype == np.float32
        assert np.abs(got - expected).max() <= 1e-6, np.abs(got - expected).max()


def test_real_images_match_sentence_transformers(models):
    st, ours = models
    paths = [str(_real_image_dir() / name) for name in REAL_IMAGES]
    ref = st.encode(paths, batch_size=4)
    _close(ours.encode(paths, batch_size=4), ref)
    _close(ours.encode([Path(p) for p in paths]), ref)
    _close(ours.encode([Image.open(p) for p in paths[:3]]), st.encode([Image.open(p) for p in paths[:3]]))


def test_bad_inputs_name_the_problem(models, pictures, tmp_path):
    _, ours = models
    with pytest.raises(TypeError, match=r"inputs\[1\] must be a string \(text\), a PIL image"):
        ours.encode(["text", 42])
    with pytest.raises(TypeError, match=r"inputs\[2\].*got object"):
        ours.encode(["text", pictures[0], object()])
    with pytest.raises(ValueError, match=r"inputs\[1\]: no image file at"):
        ours.encode(["text", tmp_path / "absent.png"])
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")
    with pytest.raises(ValueError, match=r"inputs\[2\]: cannot read the image file"):
        ours.encode(["text", pictures[0], str(corrupt)])
    truncated = tmp_path / "truncated.jpg"
    pictures[5].save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"inputs: cannot read the image file"):
        ours.encode(truncated)
    with pytest.raises(ValueError, match=r"inputs\[0\] is an image URL"):
        ours.encode(["https://example.com/cat.jpg"])
    with pytest.raises(ValueError, match="sentence embeddings only"):
        ours.encode([pictures[0]], output_value="token_embeddings")


def test_images_to_a_text_model_are_refused(tiny_model, pictures):
    import lightembed

    model = lightembed.SentenceTransformer(tiny_model)
    with pytest.raises(TypeError, match=r"inputs\[1\] is an image, but this model embeds text only"):
        model.encode(["the cat", pictures[0]])
    with pytest.raises(TypeError, match=r"inputs is an image"):
        model.encode(Path("cat.png"))


def test_without_pillow_the_error_names_the_extra(monkeypatch):
    import sys

    from lightembed import images

    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"pip install 'lightembed\[images\]'"):
        images.pil()


def test_failed_or_damaged_vision_file_is_not_loadable(exported, tmp_path, monkeypatch):
    import lightembed

    monkeypatch.setenv("LIGHTEMBED_PREOPTIMIZED", "0")  # the exported towers themselves, not their CPU copies
    _, out, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / "lightembed.json").read_text(encoding="utf-8"))
    for entry in manifest["files"]:
        if entry["path"] == "onnx/vision_model.onnx":
            entry["passed"] = False
    (copy / "lightembed.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ValueError, match="vision_model.onnx"):
        lightembed.SentenceTransformer(copy)
    shutil.copyfile(out / "lightembed.json", copy / "lightembed.json")
    data = bytearray((copy / "onnx" / "vision_model.onnx").read_bytes())
    data[-100] ^= 0xFF
    (copy / "onnx" / "vision_model.onnx").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="vision_model.onnx"):
        lightembed.SentenceTransformer(copy)
    (copy / "onnx" / "vision_model.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="no vision tower onnx/vision_model.onnx"):
        lightembed.SentenceTransformer(copy)


def test_save_is_refused_for_clip(models, tmp_path):
    from lightembed.unsupported import NotSupportedError

    _, ours = models
    with pytest.raises(NotSupportedError, match="copy the exported folder"):
        ours.save(tmp_path / "saved")
    with pytest.raises(NotSupportedError):
        ours.save_pretrained(tmp_path / "saved")


def test_exporter_refuses_int8_for_clip(exported, tmp_path):
    from lightembed_export import UnsupportedModelError, export_model

    src, _, _ = exported
    with pytest.raises(UnsupportedModelError, match="int8 quantization .* is not offered for CLIP"):
        export_model(src, tmp_path / "q", quantize=["avx2_qint8"], verbose=False)
    assert not (tmp_path / "q").exists()


def test_both_towers_run_their_preoptimized_copies_with_the_same_vectors(exported, pictures, monkeypatch):
    import lightembed

    _, out, report = exported
    records = {e["path"]: e["cpu_preoptimized"] for e in report["files"]}
    assert all(r["passed"] for r in records.values()) and len(records) == 4  # fp32 and O2, text and vision
    fast = lightembed.SentenceTransformer(str(out))
    assert fast.runtime_info.preoptimized_file == "onnx/text_model.onnx.cpu"
    assert fast.image_tower.preoptimized_file == out / "onnx" / "vision_model.onnx.cpu"
    monkeypatch.setenv("LIGHTEMBED_PREOPTIMIZED", "0")
    plain = lightembed.SentenceTransformer(str(out))
    assert plain.image_tower.preoptimized_file is None
    inputs = ["a photo of a cat", pictures[0], "two dogs", pictures[1]]
    np.testing.assert_allclose(fast.encode(inputs), plain.encode(inputs), atol=1e-6)


def test_a_damaged_vision_copy_is_refused(exported, tmp_path):
    import lightembed
    from lightembed.errors import IntegrityError

    _, out, _ = exported
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    data = copy / "onnx" / "vision_model.onnx.cpu.data"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="vision_model.onnx.cpu.data"):
        lightembed.SentenceTransformer(str(copy))
