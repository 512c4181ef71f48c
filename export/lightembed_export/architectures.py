"""Architectures optimum's default export does not serve as a sentence-transformers Transformer needs.

- T5 family (sentence-t5, GTR): optimum exports T5 as encoder-decoder (`decoder_input_ids` among the inputs);
  sentence-transformers runs the encoder alone (T5EncoderModel), so the encoder is exported alone:
  input_ids, attention_mask -> last_hidden_state.
- Remote-code checkpoints (config.json `auto_map`, a model_type transformers does not know: nomic-bert, gte v1.5,
  jina v3): their modeling code runs only when the user opts in (trust_remote_code), and they are exported as a
  plain text encoder with the inputs their forward() takes.
- Configs that do not load back as they were saved: the exporter saves the torch model and optimum exports what
  it reloads, so the two must agree (keep_config_on_reload). Gemma3 with bidirectional attention (EmbeddingGemma)
  does not: transformers' Gemma3TextConfig turns `sliding_window` into `sliding_window // 2 + 1` every time it is
  built and saves the result, so each save and reload shrinks the window (EmbeddingGemma's 512 loads as 257, and
  its re-saved copy as 129); the exported graph then lets fewer tokens see each other than the torch model does
  (min cosine 0.90 on a tiny seeded model). The saved config.json is rewritten to load back as the torch model's.
- Refused: architectures whose export optimum can write but that would not reproduce the torch model (see
  REFUSED), with the reason.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightembed_export.errors import UnsupportedModelError
from lightembed_export.tasks import FEATURE_EXTRACTION

# model_type -> the transformers class that holds the encoder alone, for models optimum exports as seq2seq.
ENCODER_ONLY: dict[str, str] = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}
# config.json field names of T5-style configs, in optimum's normalized names.
_T5_NAMES = {"hidden_size": "d_model", "num_attention_heads": "num_heads", "num_layers": "num_layers"}
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

REFUSED: dict[str, str] = {}
"""model_type -> why lightembed-export refuses it (filled in where a family cannot be exported exactly)."""


@dataclass(frozen=True)
class ExportPlan:
    """How to export one checkpoint's Transformer: optimum's main_export as is (custom is False), or a model loaded
    here with `model_class` and exported with a text-encoder ONNX config taking `inputs`."""

    custom: bool
    why: str = ""
    model_class: str = "AutoModel"
    inputs: tuple[str, ...] = ("input_ids", "attention_mask")
    config_names: tuple[tuple[str, str], ...] = ()
    trust_remote_code: bool = False


def read_config(model_dir: Path) -> dict[str, Any]:
    """config.json of the Transformer folder, {} when missing or unreadable (source.read_layout reports that)."""
    try:
        data = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def remote_code_files(model_dir: Path, config: dict[str, Any]) -> list[str]:
    """The Python files config.json's auto_map points at ("module.Class" or "repo--module.Class"), which
    trust_remote_code would run; [] when there is no auto_map."""
    auto_map = config.get("auto_map")
    if not isinstance(auto_map, dict):
        return []
    names: set[str] = set()
    for ref in auto_map.values():
        for item in ref if isinstance(ref, list) else [ref]:
            if isinstance(item, str) and "." in item:
                module = item.split("--", 1)[-1].rsplit(".", 1)[0]
                names.add(module.replace(".", "/") + ".py")
    return sorted(names)


def needs_remote_code(config: dict[str, Any]) -> bool:
    """Whether transformers can build this model only from the code in its folder: an auto_map and a model_type
    transformers does not ship."""
    if not isinstance(config.get("auto_map"), dict):
        return False
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return str(config.get("model_type") or "") not in CONFIG_MAPPING_NAMES


def load_config(config_dir: Path) -> Any:
    """The transformers config of `config_dir` for optimum's optimizer and quantizer, which read only its plain
    fields: a remote-code model's comes back as a PretrainedConfig, so its code does not run (again)."""
    from transformers import AutoConfig, PretrainedConfig

    if needs_remote_code(read_config(config_dir)):
        return PretrainedConfig.from_pretrained(str(config_dir))
    return AutoConfig.from_pretrained(str(config_dir))


# config attributes that legitimately differ after a save and reload.
_RELOAD_IGNORED = frozenset({"_name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype"})


def _reload_diff(model_dir: Path, config: Any, trust_remote_code: bool) -> dict[str, tuple[Any, Any]]:
    from transformers import AutoConfig

    reloaded = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code).to_dict()
    before = config.to_dict()
    keys = (set(before) | set(reloaded)) - _RELOAD_IGNORED
    return {k: (before.get(k), reloaded.get(k)) for k in sorted(keys) if before.get(k) != reloaded.get(k)}


def keep_config_on_reload(model_dir: Path, config: Any, trust_remote_code: bool = False) -> dict[str, Any]:
    """Make `model_dir`/config.json (just saved from a model whose config is `config`) load back as `config`, which
    is what optimum exports; return what was rewritten ({} if nothing). UnsupportedModelError when the config
    changes on reload in a way not known here: the export would not be the model sentence-transformers runs."""
    diff = _reload_diff(model_dir, config, trust_remote_code)
    if not diff:
        return {}
    model_type = getattr(config, "model_type", None)
    architecture = (getattr(config, "architectures", None) or [model_type])[0]
    rewritten: dict[str, Any] = {}
    if (
        model_type in ("gemma3_text", "gemma3")
        and set(diff) == {"sliding_window"}
        and getattr(config, "use_bidirectional_attention", False)
    ):
        # Gemma3TextConfig builds sliding_window // 2 + 1 from the stored value; 2 * (w - 1) builds back w.
        path = model_dir / "config.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        data["sliding_window"] = 2 * (int(config.sliding_window) - 1)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        rewritten["sliding_window"] = {"stored": data["sliding_window"], "loads_as": int(config.sliding_window)}
        diff = _reload_diff(model_dir, config, trust_remote_code)
    if diff:
        import transformers

        changes = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in ((k, *v) for k, v in diff.items()))
        raise UnsupportedModelError(
            f"architecture {architecture} (model_type {model_type!r}): its config does not load back as saved with "
            f"transformers {transformers.__version__} ({changes}), so the exported graph would not be the model "
            "sentence-transformers runs; lightembed-export does not know how to correct it",
            architecture=str(architecture),
            model_type=model_type,
        )
    return rewritten


def check_supported(
    model_dir: Path, architecture: str, model_type: str | None, task: str, trust_remote_code: bool
) -> None:
    """UnsupportedModelError for a refused architecture, or one that needs remote code it may not run."""
    if model_type in REFUSED:
        raise UnsupportedModelError(
            f"lightembed-export refuses architecture {architecture} (model_type {model_type!r}): {REFUSED[model_type]}",
            architecture=architecture,
            model_type=model_type,
        )
    config = read_config(model_dir)
    if needs_remote_code(config) and not trust_remote_code:
        files = ", ".join(remote_code_files(model_dir, config)) or "the code named in config.json's auto_map"
        raise UnsupportedModelError(
            f"architecture {architecture} (model_type {model_type!r}) is defined by Python code shipped with the "
            f"checkpoint ({files}); read that code, then re-run with --trust-remote-code (trust_remote_code=True) "
            "to let the exporter run it. The lightembed runtime never runs it: the ONNX file is all it loads.",
            architecture=architecture,
            model_type=model_type,
        )
    if needs_remote_code(config) and task != FEATURE_EXTRACTION:
        raise UnsupportedModelError(
            f"remote-code architecture {architecture} (model_type {model_type!r}) can be exported as an embedding "
            f"model (feature-extraction) only, not for {task}",
            architecture=architecture,
            model_type=model_type,
        )


def plan_export(model_dir: Path, task: str, trust_remote_code: bool = False) -> ExportPlan:
    """How to export the checkpoint in `model_dir` (a transformers folder) for `task`."""
    config = read_config(model_dir)
    model_type = str(config.get("model_type") or "")
    if task == FEATURE_EXTRACTION and model_type in ENCODER_ONLY:
        return ExportPlan(
            True,
            f"{model_type}: the encoder alone ({ENCODER_ONLY[model_type]}), as sentence-transformers runs it",
            ENCODER_ONLY[model_type],
            config_names=tuple(_T5_NAMES.items()),
        )
    if trust_remote_code and needs_remote_code(config):
        return ExportPlan(
            True,
            f"{model_type}: remote code, exported as a text encoder",
            "AutoModel",
            inputs=(),  # read from the model's forward()
            trust_remote_code=True,
        )
    return ExportPlan(False, trust_remote_code=trust_remote_code)


def load_for_export(model_dir: Path, plan: ExportPlan) -> Any:
    """The torch module to export, float32 on CPU in eval mode."""
    import torch
    import transformers

    cls = getattr(transformers, plan.model_class)
    model = cls.from_pretrained(str(model_dir), trust_remote_code=plan.trust_remote_code, dtype=torch.float32)
    return model.eval()


def forward_inputs(model: Any) -> tuple[str, ...]:
    """The text inputs (of TEXT_INPUTS) the model's forward() takes, in TEXT_INPUTS order."""
    params = inspect.signature(model.forward).parameters
    taken = tuple(name for name in TEXT_INPUTS if name in params)
    if "input_ids" not in taken:
        raise UnsupportedModelError(
            f"{type(model).__name__}.forward() takes no input_ids; it is not a text encoder",
            architecture=type(model).__name__,
        )
    return taken


def onnx_config(model: Any, plan: ExportPlan, task: str) -> Any:
    """An optimum text-encoder ONNX config: the plan's inputs (or forward()'s) -> last_hidden_state."""
    from optimum.exporters.onnx.config import TextEncoderOnnxConfig
    from optimum.utils import NormalizedTextConfig

    names = dict(plan.config_names)
    inputs = plan.inputs or forward_inputs(model)

    class EncoderOnnxConfig(TextEncoderOnnxConfig):
        NORMALIZED_CONFIG_CLASS = NormalizedTextConfig.with_args(**names, allow_new=True)
        DEFAULT_ONNX_OPSET = 14

        @property
        def inputs(self) -> dict[str, dict[int, str]]:
            return {name: {0: "batch_size", 1: "sequence_length"} for name in inputs}

    return EncoderOnnxConfig(model.config, task=task)
