"""CLIP export (clip-ViT-B-32 and the like): the text tower and the vision tower as two ONNX graphs.

sentence-transformers' CLIP module embeds a text with `CLIPModel.get_text_features` (text model, pooled at the end
token, text projection) and an image with `get_image_features` (vision model, pooled class token, visual
projection). Each becomes a graph: `onnx/text_model.onnx` (input_ids, attention_mask -> text_embeds) and
`onnx/vision_model.onnx` (pixel_values -> image_embeds), with dynamic batch (and sequence) axes; each optimization
level gives a pair (`onnx/text_model_O2.onnx`, `onnx/vision_model_O2.onnx`). The image preprocessing stays out of
the graph: the runtime does it in Pillow and NumPy from preprocessor_config.json (lightembed.images).

Every file is then checked through the lightembed runtime against sentence-transformers on torch: text files on the
exporter's probe texts, vision files on probe images (synthetic, of several sizes and modes), with the same bars and
manifest records as other models. int8 is not offered for CLIP.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lightembed.clip import IMAGE_OUTPUT, TEXT_MODEL, TEXT_OUTPUT, VISION_MODEL, vision_file_name
from lightembed_export.errors import UnsupportedModelError, VerificationError
from lightembed_export.manifest import MANIFEST_NAME, manifest_head, probes_digest, write_manifest
from lightembed_export.tasks import FEATURE_EXTRACTION

ARCHITECTURE = "CLIPModel"
DEFAULT_OPSET = 17
IMAGE_PROBE_SPECS: tuple[tuple[int, int, str], ...] = (
    (64, 48, "RGB"),  # (width, height, mode): landscape
    (40, 64, "RGB"),  # portrait
    (32, 32, "RGB"),  # already the tiny model's crop size
    (90, 20, "RGB"),  # very wide
    (9, 12, "RGB"),  # smaller than any crop: upscaled
    (300, 200, "RGB"),  # downscaled
    (50, 50, "L"),  # grayscale
    (60, 45, "RGBA"),  # alpha dropped
    (48, 48, "P"),  # palette
    (33, 71, "RGB"),  # odd sizes: center crop rounding
)
"""The probe images (generated, seeded): sizes and modes that exercise resize, crop and RGB conversion."""
BATCH_SIZE = 8


def is_clip_layout(layout: Any) -> bool:
    """Whether source.read_layout found a CLIP folder."""
    return layout.architecture == ARCHITECTURE


def probe_images() -> list[Any]:
    """Deterministic PIL images (IMAGE_PROBE_SPECS): smooth random colour fields plus noise, each different."""
    from PIL import Image

    rng = np.random.default_rng(20240131)
    images = []
    for width, height, mode in IMAGE_PROBE_SPECS:
        coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize(
            (width, height), Image.BILINEAR
        )
        pixels = np.asarray(coarse).astype(np.int16) + rng.integers(-24, 25, (height, width, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        if mode == "RGBA":
            alpha = Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8))
            image = image.convert("RGBA")
            image.putalpha(alpha)
        elif mode == "P":
            image = image.convert("P", palette=Image.ADAPTIVE, colors=32)
        elif mode != "RGB":
            image = image.convert(mode)
        images.append(image)
    return images


def check_options(levels: list[str], targets: list[Any]) -> None:
    """UnsupportedModelError for what a CLIP export does not offer (int8), before anything is written."""
    if targets:
        names = ", ".join(t.name for t in targets)
        raise UnsupportedModelError(
            f"architecture {ARCHITECTURE}: int8 quantization ({names}) is not offered for CLIP models; export fp32 "
            "(and --optimize O1-O3) without --quantize",
            architecture=ARCHITECTURE,
            model_type="clip",
        )


def clip_module(model: Any) -> Any:
    """The torch transformers CLIPModel inside a sentence-transformers CLIP model; UnsupportedModelError for modules
    the runtime cannot reproduce (a CLIP module followed by Normalize at most)."""
    names = [type(m).__name__ for m in model]
    first = model[0]
    torch_model = getattr(first, "auto_model", None) or getattr(first, "model", None)
    if names[0] not in ("CLIPModel", "Transformer") or type(torch_model).__name__ != ARCHITECTURE:
        raise UnsupportedModelError(
            f"module 0 is {names[0]} ({type(torch_model).__name__}); a CLIP export needs a CLIPModel module",
            architecture=names[0],
        )
    extra = [n for n in names[1:] if n != "Normalize"]
    if extra:
        raise UnsupportedModelError(
            f"the CLIP model is followed by {', '.join(extra)}; lightembed runs a CLIPModel followed by Normalize "
            f"only (modules: {', '.join(names)})",
            architecture=extra[0],
        )
    return torch_model.eval()


def references(model: Any, texts: list[str], images: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """sentence-transformers' (torch) embeddings of the probe texts and the probe images."""
    kwargs = {"batch_size": BATCH_SIZE, "convert_to_numpy": True, "show_progress_bar": False}
    text = np.asarray(model.encode(texts, **kwargs), dtype=np.float32)
    image = np.asarray(model.encode(images, **kwargs), dtype=np.float32)
    return text, image


def _projected(features: Any) -> Any:
    """The projected embedding get_text_features / get_image_features return: the tensor itself (transformers 4),
    or the output's pooler_output (transformers 5 returns the tower's output with the projection there)."""
    return features if hasattr(features, "ndim") else features.pooler_output


PROCESSOR_CONFIG = "processor_config.json"


def write_preprocessor_config(output: Path) -> bool:
    """Write `output`/preprocessor_config.json (what the runtime and transformers 4 read) from the image processor
    section of processor_config.json, where transformers 5 saves it; returns whether it wrote one."""
    import json

    target = output / "preprocessor_config.json"
    try:
        processor = json.loads((output / PROCESSOR_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    image = processor.get("image_processor") if isinstance(processor, dict) else None
    if target.exists() or not isinstance(image, dict):
        return False
    target.write_text(json.dumps(image, indent=2) + "\n", encoding="utf-8")
    return True


def export_towers(clip: Any, onnx_dir: Path, opset: int | None = None) -> tuple[Path, Path]:
    """torch.onnx.export of the two towers into `onnx_dir`: text_model.onnx and vision_model.onnx."""
    import torch

    class TextTower(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return _projected(self.inner.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

    class VisionTower(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: Any) -> Any:
            return _projected(self.inner.get_image_features(pixel_values=pixel_values))

    onnx_dir.mkdir(parents=True, exist_ok=True)
    text_path = onnx_dir.parent / TEXT_MODEL
    vision_path = onnx_dir.parent / VISION_MODEL
    vocab = int(clip.config.text_config.vocab_size)
    ids = torch.arange(2 * 7, dtype=torch.int64).reshape(2, 7) % vocab
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    size = int(clip.config.vision_config.image_size)
    pixels = torch.randn(2, int(clip.config.vision_config.num_channels), size, size)
    common = {"opset_version": opset or DEFAULT_OPSET, "dynamo": False, "do_constant_folding": True}
    axes = {0: "batch_size", 1: "sequence_length"}
    with torch.no_grad():
        torch.onnx.export(
            TextTower(clip).eval(), (ids, mask), str(text_path), input_names=["input_ids", "attention_mask"],
            output_names=[TEXT_OUTPUT], dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                                      TEXT_OUTPUT: {0: "batch_size"}}, **common,
        )  # fmt: skip
        torch.onnx.export(
            VisionTower(clip).eval(), (pixels,), str(vision_path), input_names=["pixel_values"],
            output_names=[IMAGE_OUTPUT], dynamic_axes={"pixel_values": {0: "batch_size"},
                                                       IMAGE_OUTPUT: {0: "batch_size"}}, **common,
        )  # fmt: skip
    return text_path, vision_path


def optimize_tower(path: Path, level: str, config_dir: Path) -> tuple[Path, dict[str, Any]]:
    """ONNX Runtime's transformer graph optimization of one tower at optimum's `level`, written beside it as
    `<name>_<level>.onnx`; returns the path and the configuration reported in lightembed.json."""
    from lightembed_export.optimize import optimize_file

    done = optimize_file(path, level, config_dir, name=f"{path.stem}_{level}.onnx")
    return done.path, done.config


def verify_pair(
    output: Path, text_file: str, texts: list[str], images: list[Any], reference: tuple[np.ndarray, np.ndarray]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load `text_file` (and its vision partner) with lightembed and compare its text and image embeddings with the
    references; (text result, vision result), each with metrics, passed-or-not inputs and error."""
    from lightembed import SentenceTransformer
    from lightembed_export.verify import NEAREST_OWN_MIN, compare

    try:
        model = SentenceTransformer(str(output), device="cpu", file_name=text_file, backend="onnx")
        got = (
            np.asarray(model.encode(texts, batch_size=BATCH_SIZE), dtype=np.float32),
            np.asarray(model.encode(images, batch_size=BATCH_SIZE), dtype=np.float32),
        )
    except Exception as exc:  # the runtime rejecting a file is a verification failure, reported per file
        failed = {"metrics": None, "error": f"{type(exc).__name__}: {exc}"}
        return dict(failed), dict(failed)
    results = []
    for ref, cand in zip(reference, got, strict=True):
        metrics = compare(ref, cand)
        error = None
        own = metrics.get("nearest_own")
        if own is not None and np.isfinite(own) and own < NEAREST_OWN_MIN:
            error = f"only {own:.0%} of the probes' outputs are nearest their own reference"
        results.append({"metrics": metrics, "error": error})
    return results[0], results[1]


def export_clip(
    source: Any,
    layout: Any,
    output: Path,
    levels: list[str],
    targets: list[Any],
    opset: int | None,
    overwrite: bool,
    external_data: bool,
    say: Callable[[str], None],
    preoptimize: bool = True,
) -> dict[str, Any]:
    """export_model() for a CLIP folder: both towers at fp32 and each level in `levels`, verified; returns the
    manifest written to `output`/lightembed.json. VerificationError (after writing) if a file misses its bar."""
    from lightembed_export import api
    from lightembed_export._quiet import quiet
    from lightembed_export.layout import copy_layout, load_model, save_model
    from lightembed_export.verify import PROBES, Threshold, format_table

    check_options(levels, targets)
    clock = api._Clock()
    with quiet(), tempfile.TemporaryDirectory(prefix="lightembed-export-") as work:
        model = load_model(source.path, FEATURE_EXTRACTION)
        clip = clip_module(model)
        modules = ", ".join(type(m).__name__ for m in model)
        say(f"load: SentenceTransformer({modules}) with sentence-transformers on torch, cpu, float32{clock.lap()}")
        saved = Path(work) / "model"
        save_model(model, saved)
        texts, images = list(PROBES), probe_images()
        reference = references(model, texts, images)
        say(f"reference: {len(texts)} probe texts and {len(images)} probe images{clock.lap()}")
        created = api._prepare_output(output, overwrite)
        try:
            copied = copy_layout(saved, output, source.path)
            if write_preprocessor_config(output):
                copied.append("preprocessor_config.json")
            say(f"layout: {len(copied)} files (tokenizer, preprocessor_config.json), no torch weights{clock.lap()}")
            pairs = [(*export_towers(clip, output / "onnx", opset), "fp32", None)]
            say(f"export: {TEXT_MODEL}, {VISION_MODEL} (torch.onnx.export){clock.lap()}")
            for level in levels:
                text, config = optimize_tower(pairs[0][0], level, saved)
                vision, _ = optimize_tower(pairs[0][1], level, saved)
                pairs.append((text, vision, "optimized", config))
                say(f"optimize {level}: {api._rel(text, output)}, {api._rel(vision, output)}{clock.lap()}")
            files = _describe(pairs, output, external_data)
            for index in range(0, len(files), 2):
                text_info, vision_info = files[index], files[index + 1]
                results = verify_pair(output, text_info["path"], texts, images, reference)
                for info, result in zip((text_info, vision_info), results, strict=True):
                    bar = Threshold.from_dict(info["threshold"])
                    metrics = result["metrics"]
                    info.update(result)
                    info["passed"] = result["error"] is None and bar.passes(metrics[bar.metric] if metrics else None)
            say(f"verify: {len(files)} files on {len(texts)} texts and {len(images)} images, lightembed vs "
                f"sentence-transformers (torch){clock.lap()}")  # fmt: skip
        except BaseException:
            api._discard_output(output, created)
            raise
    manifest = _manifest(source, clip, model, files, texts, len(images))
    write_manifest(output, manifest)
    if preoptimize:
        manifest = api.write_preoptimized(output, say, clock)
    say(format_table(files))
    say("int8: not offered for CLIP models (fp32 and optimized files only)")
    say(f"wrote {output} ({MANIFEST_NAME}) in {clock.total():.1f} s")
    failed = [f for f in files if not f["passed"]]
    if failed:
        details = "; ".join(api._failure(f) for f in failed)
        raise VerificationError(
            f"verification failed for {len(failed)} file(s): {details}", [f["path"] for f in failed]
        )
    return manifest


def _describe(pairs: list[tuple[Path, Path, str, Any]], output: Path, external_data: bool) -> list[dict[str, Any]]:
    """Manifest entries (text tower, vision tower) per pair: clamped to a loadable IR version, hashed, with the
    threshold each will be held to."""
    import onnx

    from lightembed_export.onnx_files import make_model_loadable, onnx_file_info, save_model_file
    from lightembed_export.verify import threshold_for

    files = []
    for text, vision, kind, optimization in pairs:
        level = (optimization or {}).get("level")
        for path, tower in ((text, "text"), (vision, "image")):
            model = onnx.load(str(path), load_external_data=False)
            changes = make_model_loadable(model)
            if changes or external_data:
                save_model_file(model, path, external_data)
            info = onnx_file_info(path, output, model)
            info.update(
                tower=tower,
                pooled_output=None,
                kind=kind,
                optimization=optimization,
                quantization=None,
                threshold=threshold_for(kind, level).as_dict(),
            )
            if changes:
                info["rewritten_for_older_onnxruntime"] = changes
            if tower == "text":
                info["vision_file"] = vision_file_name(info["path"])
            files.append(info)
    return files


def _manifest(
    source: Any, clip: Any, model: Any, files: list[dict[str, Any]], texts: list[str], image_count: int
) -> dict[str, Any]:
    return {
        **manifest_head(source),
        "model": {
            "task": FEATURE_EXTRACTION,
            "task_reason": "a sentence-transformers CLIP model (text and image towers)",
            "class": "SentenceTransformer",
            "architecture": ARCHITECTURE,
            "model_type": "clip",
            "modules": [type(m).__name__ for m in model],
            "modalities": ["text", "image"],
            "embedding_dimension": int(clip.config.projection_dim),
            "max_seq_length": getattr(model, "max_seq_length", None),
            "hidden_size": int(clip.config.text_config.hidden_size),
            "image_size": int(clip.config.vision_config.image_size),
            "int8": "not offered for CLIP models",
        },
        "verification": {
            "reference": "sentence-transformers SentenceTransformer on torch (cpu, float32)",
            "candidate": "lightembed.SentenceTransformer(device='cpu', file_name=<text tower>)",
            "compared": "encode(probe texts) for text towers, encode(probe images) for vision towers",
            "probes": len(texts),
            "probes_sha256": probes_digest(texts),
            "probe_images": image_count,
            "batch_size": BATCH_SIZE,
            "passed": all(f["passed"] for f in files),
        },
        "files": files,
    }
