"""Tiny seeded checkpoints of each model family, built at test time in sentence-transformers layout.

Each builder writes a transformers checkpoint with random seeded weights (2 layers, hidden 32), a small tokenizer
in tokenizer.json form, and the sentence-transformers modules the family ships with (pooling mode, Dense,
Normalize, prompts). They need torch, transformers and sentence-transformers (the exporter's stack).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HIDDEN = 32
INIT_RANGE = 0.2
"""Weight scale (transformers' default 0.02 makes a tiny random model embed every text almost alike)."""
WORDS = (
    "the cat sat on mat a dog ran in park hello world how do i reset my password quick brown fox jumps over lazy "
    "sentence embeddings map texts to vectors so that similar meanings end up close together numbers code date "
    "upper lower mixed case food man is eating long whole text one of query passage instruct given retrieve "
    "relevant answer question web search"
).split()
TEXTS = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "",
    "Grüße 🎉 北京 Hello, World!",
    "how do i reset my password? " * 3,
    "quick brown fox " * 40,  # longer than max_seq_length: truncated
]
"""Few, varied texts: short, empty, non-ASCII, punctuation, past max_seq_length."""


def _wordpiece_vocab() -> list[str]:
    chars = [chr(c) for c in range(33, 127)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars if c.isalnum()]
    return vocab + [w for w in dict.fromkeys(WORDS) if w not in vocab]


def wordpiece_tokenizer() -> Any:
    """A lower-casing WordPiece `tokenizers.Tokenizer` over the vocabulary above (BERT's normalizer, pre-tokenizer
    and [CLS]/[SEP] template), built with `tokenizers` alone (transformers 5's BertTokenizerFast no longer reads a
    vocab file)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate(_wordpiece_vocab())}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )  # fmt: skip
    return tok


def write_wordpiece_tokenizer(folder: Path, cls: Any = None, **kwargs: Any) -> int:
    """A small WordPiece tokenizer saved with transformers' `cls` (default BertTokenizerFast); returns its size.
    The tokenizer itself is `wordpiece_tokenizer()`'s: transformers 5's BertTokenizerFast ignores `vocab_file`
    (every token became [UNK]), so it is handed the built tokenizer on both stacks."""
    from transformers import BertTokenizerFast

    vocab = _wordpiece_vocab()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    specials = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                "mask_token": "[MASK]"}  # fmt: skip
    tokenizer = (cls or BertTokenizerFast)(
        tokenizer_object=wordpiece_tokenizer(), vocab_file=str(folder / "vocab.txt"), do_lower_case=True,
        **specials, **kwargs,
    )  # fmt: skip
    tokenizer.save_pretrained(str(folder))
    return len(vocab)


def write_wordlevel_tokenizer(
    folder: Path,
    specials: list[str],
    template: str,
    pad: str,
    unk: str,
    padding_side: str = "right",
    *,
    words: tuple[str, ...] = (),
    added: tuple[str, ...] = (),
    chat_template: str | None = None,
    **special_kwargs: str,
) -> int:
    """A WordLevel tokenizer over WORDS (and `words`) and ASCII characters (case-sensitive, split on whitespace and
    punctuation) with a post-processor `template` (e.g. "$A <eos>"); saved as transformers' PreTrainedTokenizerFast.
    `added`: special tokens matched whole inside any text (a chat template's <|im_start|>), `chat_template` saved
    with it."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = [chr(c) for c in range(33, 127)]
    tokens = specials + [t for t in dict.fromkeys(chars + WORDS + list(words)) if t not in specials]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    used = [s for s in specials if s in template]
    tok.post_processor = processors.TemplateProcessing(
        single=template, pair=f"{template} $B:1", special_tokens=[(s, vocab[s]) for s in used]
    )
    if added:
        tok.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in added])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=pad,
        unk_token=unk,
        padding_side=padding_side,
        model_input_names=["input_ids", "attention_mask"],
        **special_kwargs,
    )
    if chat_template is not None:
        wrapped.chat_template = chat_template
    folder.mkdir(parents=True, exist_ok=True)
    wrapped.save_pretrained(str(folder))
    return len(vocab)


def _save_transformer(model: Any, folder: Path, seed: int) -> None:
    model.eval().save_pretrained(str(folder), safe_serialization=True)


def _st_modules() -> Any:
    try:  # sentence-transformers >= 5.x moved the modules; the old path warns
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:  # pragma: no cover - older 5.x
        from sentence_transformers import models
    return models


def save_st(
    hf: Path,
    folder: Path,
    pooling: str,
    *,
    dense: int | None = None,
    normalize: bool = True,
    max_seq_length: int = 24,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    seed: int = 0,
    trust_remote_code: bool = False,
) -> Path:
    """Wrap the transformers checkpoint `hf` as a SentenceTransformer (Transformer, Pooling, [Dense,] [Normalize])
    saved in `folder`; `hf` is removed."""
    import torch
    from sentence_transformers import SentenceTransformer

    models = _st_modules()
    remote = {"trust_remote_code": True} if trust_remote_code else {}
    transformer = models.Transformer(
        str(hf), max_seq_length=max_seq_length, model_kwargs=remote, config_kwargs=remote, processor_kwargs=remote
    )
    width = transformer.auto_model.get_input_embeddings().embedding_dim
    modules = [transformer, models.Pooling(width, pooling)]
    if dense:
        torch.manual_seed(seed + 1)
        modules.append(models.Dense(width, dense, activation_function=torch.nn.Tanh()))
    if normalize:
        modules.append(models.Normalize())
    model = SentenceTransformer(
        modules=modules, device="cpu", prompts=prompts, default_prompt_name=default_prompt_name
    )
    model.save(str(folder), create_model_card=False)
    shutil.rmtree(hf)
    return folder


# ----- one builder per family: (folder, seed) -> transformers checkpoint folder -----------------------------------


def bert(folder: Path, seed: int = 0, head: str = "BertModel") -> Path:
    """A tiny BERT; `head` BertForMaskedLM gives a SPLADE document encoder's transformer."""
    import transformers

    vocab = write_wordpiece_tokenizer(folder)
    config = transformers.BertConfig(
        initializer_range=INIT_RANGE,
        vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128,
    )  # fmt: skip
    import torch

    torch.manual_seed(seed)
    _save_transformer(getattr(transformers, head)(config), folder, seed)
    return folder


def distilbert(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    vocab = write_wordpiece_tokenizer(folder, DistilBertTokenizerFast)
    config = DistilBertConfig(
        initializer_range=INIT_RANGE,
        vocab_size=vocab, dim=HIDDEN, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128
    )
    torch.manual_seed(seed)
    _save_transformer(DistilBertModel(config), folder, seed)
    return folder


def mpnet(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import MPNetConfig, MPNetModel

    vocab = write_wordlevel_tokenizer(
        folder, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<s> $A </s>", "<pad>", "<unk>",
        bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
    )  # fmt: skip
    config = MPNetConfig(
        initializer_range=INIT_RANGE,
        vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=130, pad_token_id=1, bos_token_id=0, eos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(seed)
    _save_transformer(MPNetModel(config), folder, seed)
    return folder


def xlm_roberta(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    vocab = write_wordlevel_tokenizer(
        folder, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<s> $A </s>", "<pad>", "<unk>",
        bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
    )  # fmt: skip
    config = XLMRobertaConfig(
        initializer_range=INIT_RANGE,
        vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=130, pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1,
    )  # fmt: skip
    torch.manual_seed(seed)
    _save_transformer(XLMRobertaModel(config), folder, seed)
    return folder


def qwen3(folder: Path, seed: int = 0) -> Path:
    """A Qwen3-Embedding-style decoder: left padding, <|endoftext|> appended to every input."""
    vocab = write_wordlevel_tokenizer(
        folder, ["<|endoftext|>", "<unk>"], "$A <|endoftext|>", "<|endoftext|>", "<unk>", padding_side="left",
        eos_token="<|endoftext|>",
    )  # fmt: skip
    return _save_qwen3(folder, seed, "Qwen3Model", vocab_size=vocab)


def _save_qwen3(folder: Path, seed: int, head: str, **config: Any) -> Path:
    """A seeded tiny Qwen3 (`head`: Qwen3Model or Qwen3ForCausalLM) saved in `folder`; `config` overrides."""
    import torch
    import transformers

    values: dict[str, Any] = dict(
        initializer_range=INIT_RANGE,
        hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        intermediate_size=64, max_position_embeddings=128, tie_word_embeddings=False, pad_token_id=0, eos_token_id=0,
        bos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(seed)
    _save_transformer(getattr(transformers, head)(transformers.Qwen3Config(**{**values, **config})), folder, seed)
    return folder


def qwen2(folder: Path, seed: int = 0) -> Path:
    """A gte-Qwen2-style decoder: left padding, <|endoftext|> appended."""
    import torch
    from transformers import Qwen2Config, Qwen2Model

    vocab = write_wordlevel_tokenizer(
        folder, ["<|endoftext|>", "<unk>"], "$A <|endoftext|>", "<|endoftext|>", "<unk>", padding_side="left",
        eos_token="<|endoftext|>",
    )  # fmt: skip
    config = Qwen2Config(
        initializer_range=INIT_RANGE,
        vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, max_position_embeddings=128, tie_word_embeddings=False,
        pad_token_id=0, eos_token_id=0, bos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(seed)
    _save_transformer(Qwen2Model(config), folder, seed)
    return folder


def mistral(folder: Path, seed: int = 0) -> Path:
    """An e5-mistral-style decoder: <s> prepended, </s> appended, left padding."""
    import torch
    from transformers import MistralConfig, MistralModel

    vocab = write_wordlevel_tokenizer(
        folder, ["<unk>", "<s>", "</s>"], "<s> $A </s>", "</s>", "<unk>", padding_side="left",
        bos_token="<s>", eos_token="</s>",
    )  # fmt: skip
    config = MistralConfig(
        initializer_range=INIT_RANGE,
        vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, max_position_embeddings=128, sliding_window=None, pad_token_id=2, bos_token_id=1,
        eos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(seed)
    _save_transformer(MistralModel(config), folder, seed)
    return folder


def t5(folder: Path, seed: int = 0) -> Path:
    """A sentence-t5 / GTR-style T5 encoder: </s> appended, right padding."""
    import torch
    from transformers import T5Config, T5EncoderModel

    vocab = write_wordlevel_tokenizer(
        folder, ["<pad>", "</s>", "<unk>"], "$A </s>", "<pad>", "<unk>", eos_token="</s>"
    )
    config = T5Config(
        initializer_factor=INIT_RANGE * 50,
        vocab_size=vocab, d_model=HIDDEN, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
        relative_attention_max_distance=20, feed_forward_proj="relu", pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0, is_encoder_decoder=False, use_cache=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    _save_transformer(T5EncoderModel(config), folder, seed)
    return folder


def gemma3(folder: Path, seed: int = 0) -> Path:
    """An EmbeddingGemma-style Gemma3 text model: bidirectional attention, sliding-window layers beside
    full-attention ones, <bos> ... <eos>, right padding. transformers saves the window halved (see
    lightembed_export.architectures); the matrix writes 16 into config.json as EmbeddingGemma's file has 512, so
    texts of more than 9 tokens span more than a window."""
    import torch
    from transformers import Gemma3TextConfig, Gemma3TextModel

    vocab = write_wordlevel_tokenizer(
        folder, ["<pad>", "<eos>", "<bos>", "<unk>"], "<bos> $A <eos>", "<pad>", "<unk>", bos_token="<bos>",
        eos_token="<eos>",
    )  # fmt: skip
    config = Gemma3TextConfig(
        initializer_range=INIT_RANGE,
        vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        head_dim=8, intermediate_size=64, max_position_embeddings=128, sliding_window=4, query_pre_attn_scalar=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"], use_bidirectional_attention=True,
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(seed)
    _save_transformer(Gemma3TextModel(config), folder, seed)
    return folder


REMOTE_MARKER_ENV = "LIGHTEMBED_TEST_REMOTE_MARKER"
"""The remote-code checkpoint's modeling file appends a line to the file this variable names when it is imported."""

_REMOTE_CONFIG = """from transformers import BertConfig


class TinyRemoteConfig(BertConfig):
    model_type = "tiny_remote_bert"
"""
_REMOTE_MODELING = """import os

import torch
from transformers import BertModel

from .configuration_tiny_remote import TinyRemoteConfig


def _mark(what):
    if os.environ.get("%s"):
        with open(os.environ["%s"], "a") as marker:
            marker.write(what + "\\n")


_mark("imported")


class TinyRemoteModel(BertModel):
    config_class = TinyRemoteConfig

    def __init__(self, config):
        _mark("built")  # also when an earlier test in the same process imported this module already
        super().__init__(config)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        out = super().forward(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kwargs
        )
        out.last_hidden_state = 3 * torch.tanh(out.last_hidden_state)  # what plain BERT does not do
        return out
""" % (REMOTE_MARKER_ENV, REMOTE_MARKER_ENV)


def remote_bert(folder: Path, seed: int = 0) -> Path:
    """A checkpoint whose modeling code lives in its folder (config.json auto_map, a model_type transformers does
    not know), as nomic-embed-text or gte v1.5 ship: a BERT whose output goes through 3 * tanh."""
    bert(folder, seed)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config.update(
        model_type="tiny_remote_bert",
        architectures=["TinyRemoteModel"],
        auto_map={
            "AutoConfig": "configuration_tiny_remote.TinyRemoteConfig",
            "AutoModel": "modeling_tiny_remote.TinyRemoteModel",
        },
    )
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "configuration_tiny_remote.py").write_text(_REMOTE_CONFIG, encoding="utf-8")
    (folder / "modeling_tiny_remote.py").write_text(_REMOTE_MODELING, encoding="utf-8")
    return folder


@dataclass(frozen=True)
class Family:
    """One row of the coverage matrix: a tiny checkpoint and how it is wrapped as a SentenceTransformer."""

    name: str
    build: Callable[[Path, int], Path]
    pooling: str
    examples: str
    """Real checkpoints of this family, for the README table."""
    dense: int | None = None
    normalize: bool = True
    prompts: dict[str, str] = field(default_factory=dict)
    optimize: str | None = "O3"
    """The optimization level exported and compared; None when the exporter refuses every level."""
    trust_remote_code: bool = False
    config_overrides: dict[str, Any] = field(default_factory=dict)
    """config.json values written after building, as the Hub's file has them (see gemma3)."""

    def make(self, folder: Path, seed: int = 0) -> Path:
        """Build the checkpoint into `folder` (sentence-transformers layout) and return it."""
        hf = self.build(folder.parent / f"{folder.name}-hf", seed)
        saved = save_st(
            hf, folder, self.pooling, dense=self.dense, normalize=self.normalize, prompts=self.prompts or None,
            seed=seed, trust_remote_code=self.trust_remote_code,
        )  # fmt: skip
        if self.config_overrides:
            config = json.loads((saved / "config.json").read_text(encoding="utf-8"))
            config.update(self.config_overrides)
            write_json(saved / "config.json", config)
        return saved


def modernbert(folder: Path, seed: int = 0, head: str = "ModernBertModel") -> Path:
    """ModernBERT (gte-modernbert-base, nomic-embed-text-v2-style encoders): alternating global and sliding-window
    attention (window 8 here, so the longer texts exercise it), rotary positions, no token types."""
    import torch
    import transformers

    vocab = write_wordpiece_tokenizer(folder, model_input_names=["input_ids", "attention_mask"])  # as ModernBERT's
    config = transformers.ModernBertConfig(
        initializer_range=INIT_RANGE,
        vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, global_attn_every_n_layers=2, local_attention=8, pad_token_id=0,
        cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3, num_labels=1, reference_compile=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    _save_transformer(getattr(transformers, head)(config), folder, seed)
    return folder


def deberta_v2(folder: Path, seed: int = 0, head: str = "DebertaV2Model") -> Path:
    """DeBERTa-v2/v3 (mxbai and DeBERTa rerankers): disentangled relative-position attention."""
    import torch
    import transformers

    vocab = write_wordpiece_tokenizer(folder)
    config = transformers.DebertaV2Config(
        initializer_range=INIT_RANGE,
        vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, relative_attention=True, position_buckets=16, max_relative_positions=-1,
        pos_att_type=["p2c", "c2p"], position_biased_input=False, type_vocab_size=0, pad_token_id=0, num_labels=1,
    )  # fmt: skip
    torch.manual_seed(seed)
    _save_transformer(getattr(transformers, head)(config), folder, seed)
    return folder


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


CLIP_SPECIALS = ["<|endoftext|>", "<|startoftext|>", "<unk>"]


def clip(folder: Path, seed: int = 0, max_seq_length: int = 24) -> Path:
    """A tiny seeded CLIP in the sentence-transformers layout clip-ViT-B-32 has (one CLIPModel module): text tower
    2 layers / hidden 32 over a WordLevel tokenizer (<|startoftext|> ... <|endoftext|>, padded with <|endoftext|>,
    truncated at `max_seq_length`), vision tower 2 layers / hidden 32 on 32x32 images in 8x8 patches, projections to
    16; CLIPImageProcessor's preprocessing (bicubic resize of the shortest side to 32, center crop 32, OpenAI mean
    and std). Needs torch, transformers and sentence-transformers."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    hf = folder.parent / f"{folder.name}-hf"
    vocab = write_wordlevel_tokenizer(
        hf, CLIP_SPECIALS, "<|startoftext|> $A <|endoftext|>", "<|endoftext|>", "<unk>",
        bos_token="<|startoftext|>", eos_token="<|endoftext|>",
    )  # fmt: skip
    tokenizer_config = json.loads((hf / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer_config["model_max_length"] = max_seq_length  # as clip-ViT-B-32's 77
    write_json(hf / "tokenizer_config.json", tokenizer_config)
    config = CLIPConfig(
        text_config={
            "vocab_size": vocab, "hidden_size": HIDDEN, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 32, "initializer_range": INIT_RANGE,
            "pad_token_id": 0, "eos_token_id": 0, "bos_token_id": 1,
        },
        vision_config={
            "hidden_size": HIDDEN, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "image_size": 32, "patch_size": 8, "initializer_range": INIT_RANGE,
        },
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(seed)
    CLIPModel(config).eval().save_pretrained(str(hf), safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(str(hf))
    module = _st_modules().CLIPModel(str(hf))  # deprecated in 5.4 for Transformer, but what clip-ViT-B-32 holds
    SentenceTransformer(modules=[module], device="cpu").save(str(folder), create_model_card=False)
    shutil.rmtree(hf)
    return folder


REFUSED: tuple[tuple[str, str, Callable[[Path], Path]], ...] = ()
"""Families the exporter refuses, (name, example checkpoints, layout builder): none now. Static embeddings, the last
one, are read by the runtime as they are (tests/test_static.py has the exporter's refusal that says so)."""

CLIP_FAMILY = "CLIP (text and image towers)"
CLIP_EXAMPLES = "clip-ViT-B-32, clip-ViT-B-16, clip-ViT-L-14"


QUERY_PROMPT = "Instruct: given a web search query, retrieve relevant passage\nQuery: "

FAMILIES: tuple[Family, ...] = (
    Family("BERT, mean", bert, "mean", "all-MiniLM-L6-v2, multi-qa-MiniLM-L6-cos-v1"),
    Family("BERT, CLS + Dense", bert, "cls", "bge-*-en-v1.5 (CLS), LaBSE (CLS + Dense)", dense=16),
    Family("DistilBERT, mean", distilbert, "mean", "msmarco-distilbert-base-v4, multi-qa-distilbert-cos-v1"),
    Family("MPNet, mean", mpnet, "mean", "all-mpnet-base-v2, multi-qa-mpnet-base-dot-v1", normalize=False),
    Family("XLM-R, mean", xlm_roberta, "mean", "paraphrase-multilingual-mpnet-base-v2, multilingual-e5-*"),
    Family(
        "Qwen3 decoder, last token", qwen3, "lasttoken", "Qwen3-Embedding-0.6B/4B/8B",
        prompts={"query": QUERY_PROMPT}, optimize=None,
    ),  # fmt: skip
    Family(
        "Qwen2 decoder, last token", qwen2, "lasttoken", "gte-Qwen2-1.5B/7B-instruct",
        prompts={"query": QUERY_PROMPT}, optimize=None,
    ),  # fmt: skip
    Family(
        "Mistral decoder, last token", mistral, "lasttoken", "e5-mistral-7b-instruct", prompts={"query": QUERY_PROMPT}
    ),
    Family("T5 encoder, mean + Dense", t5, "mean", "sentence-t5-base/large, gtr-t5-base/large", dense=16),
    Family(
        "Gemma3 bidirectional, mean + Dense", gemma3, "mean", "EmbeddingGemma-300m", dense=16,
        prompts={"query": "task: search result | query: "}, optimize=None, config_overrides={"sliding_window": 16},
    ),  # fmt: skip
    Family("ModernBERT, mean", modernbert, "mean", "gte-modernbert-base, nomic-embed-text-v2-style encoders"),
    Family("DeBERTa-v2, mean", deberta_v2, "mean", "DeBERTa-v3 encoders (mxbai, NLI models) with mean pooling"),
    Family(
        "Remote code (BERT-like), mean", remote_bert, "mean", "nomic-embed-text-v1/v1.5, gte-base-en-v1.5",
        optimize=None, trust_remote_code=True,
    ),  # fmt: skip
)
"""The families of the coverage matrix (tests/test_family_matrix.py)."""



BGE_M3_FAMILY = "BGE-M3: dense + sparse + multi-vector"
BGE_M3_EXAMPLES = "bge-m3"
BGE_M3_COLBERT_DIM = HIDDEN
"""colbert_linear is Linear(hidden, hidden) in BAAI/bge-m3 (FlagEmbedding's colbert_dim=-1)."""


def bge_m3(folder: Path, seed: int = 0) -> Path:
    """A BAAI/bge-m3-style folder: a tiny XLM-R wrapped as a SentenceTransformer (CLS pooling, Normalize,
    max_seq_length 24), with FlagEmbedding's two heads beside it as torch state dicts of nn.Linear:
    sparse_linear.pt (hidden -> 1) and colbert_linear.pt (hidden -> hidden), seeded."""
    import torch

    saved = Family(BGE_M3_FAMILY, xlm_roberta, "cls", BGE_M3_EXAMPLES).make(folder, seed)
    torch.manual_seed(seed + 7)
    sparse = torch.nn.Linear(HIDDEN, 1)
    colbert = torch.nn.Linear(HIDDEN, BGE_M3_COLBERT_DIM)
    with torch.no_grad():
        sparse.bias.fill_(0.05)  # so that some tokens weigh nothing (relu) and others do
    torch.save(sparse.state_dict(), saved / "sparse_linear.pt")
    torch.save(colbert.state_dict(), saved / "colbert_linear.pt")
    return saved


@dataclass(frozen=True)
class CrossFamily:
    """A cross-encoder family of the matrix: a sequence-classification head (1 label) saved by
    sentence-transformers' CrossEncoder."""

    name: str
    build: Callable[..., Path]
    head: str
    examples: str

    def make(self, folder: Path, seed: int = 0) -> Path:
        from sentence_transformers import CrossEncoder

        hf = self.build(folder.parent / f"{folder.name}-hf", seed, head=self.head)
        CrossEncoder(str(hf), num_labels=1, device="cpu").save_pretrained(str(folder))
        shutil.rmtree(hf)
        return folder


CROSS_ENCODERS: tuple[CrossFamily, ...] = (
    CrossFamily("ModernBERT cross-encoder", modernbert, "ModernBertForSequenceClassification",
                "gte-reranker-modernbert-base"),
    CrossFamily("DeBERTa-v2 cross-encoder", deberta_v2, "DebertaV2ForSequenceClassification",
                "mxbai-rerank-xsmall/base/large-v1, cross-encoder/nli-deberta-v3-*"),
)  # fmt: skip
"""Cross-encoder rows of the matrix (tests/test_family_matrix.py)."""
PAIRS = [(TEXTS[i], TEXTS[j]) for i in range(len(TEXTS)) for j in (0, 1, 4)]
"""Query-document pairs of TEXTS (empty, long and non-ASCII sides included)."""


# ----- causal-LM rerankers: sentence-transformers 6's CrossEncoder with LogitScore ------------------------------------

RERANKER_WORDS = tuple(
    "yes no Judge whether Document meets requirements Query Instruct answer only be or Given web search retrieve "
    "relevant passages that query passage B A does think user assistant system".split()
)
QWEN3_RERANKER_TEMPLATE = (
    '{%- set ns = namespace(instruction="Given a web search query, retrieve relevant passages that answer the '
    'query") -%}\n'
    '{%- for message in messages if message.role == "system" -%}{%- set ns.instruction = message.content -%}'
    "{%- endfor -%}\n"
    '<|im_start|>system\nJudge whether the Document meets the requirements of the Query; answer "yes" or "no".'
    "<|im_end|>\n<|im_start|>user\n<Instruct>: {{ ns.instruction }}\n"
    '<Query>: {{ (messages | selectattr("role", "eq", "query") | first).content }}\n'
    '<Document>: {{ (messages | selectattr("role", "eq", "document") | first).content }}<|im_end|>\n'
    "<|im_start|>assistant\n<think>\n\n</think>\n\n"
)
"""A Qwen3-Reranker-style chat template (flat messages): the query and document roles, a system message as the
instruction (a default one without), the assistant's empty thinking block the yes/no logits are read after."""
LLM_PAIRS = [
    *PAIRS,
    ("<|im_start|>user\n<Query>: {query}", "<|im_end|>\n<Document>: {{ document }} <eos> <bos>"),
    ("{% if x %}yes{% endif %} {{ messages }}", "no <unk> yes\n\n"),
]
"""PAIRS and pairs whose texts hold the chat template's special tokens and Jinja syntax."""


def qwen3_reranker(folder: Path, seed: int = 0) -> Path:
    """A Qwen3-Reranker-style causal LM: Qwen3ForCausalLM (tied embeddings), <|im_start|>/<|im_end|> special tokens,
    the chat template above, no special tokens added to a text, left padding."""
    specials = ["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>"]
    vocab = write_wordlevel_tokenizer(
        folder, specials, "$A", "<|endoftext|>", "<unk>", padding_side="left", words=RERANKER_WORDS,
        added=("<|im_start|>", "<|im_end|>"), chat_template=QWEN3_RERANKER_TEMPLATE, eos_token="<|im_end|>",
    )  # fmt: skip
    return _save_qwen3(
        folder, seed, "Qwen3ForCausalLM", vocab_size=vocab, max_position_embeddings=160, tie_word_embeddings=True,
        eos_token_id=3,
    )  # fmt: skip


def gemma3_reranker(folder: Path, seed: int = 0) -> Path:
    """A bge-reranker-v2-gemma-style causal LM: Gemma3ForCausalLM (causal sliding-window layers beside full ones,
    final logit soft-capping), <bos> in front, no chat template (pairs through the tokenizer's pair encoding)."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    vocab = write_wordlevel_tokenizer(
        folder, ["<pad>", "<eos>", "<bos>", "<unk>"], "<bos> $A", "<pad>", "<unk>", bos_token="<bos>",
        eos_token="<eos>", words=RERANKER_WORDS,
    )  # fmt: skip
    config = Gemma3TextConfig(
        initializer_range=INIT_RANGE,
        vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        head_dim=8, intermediate_size=64, max_position_embeddings=160, sliding_window=4, query_pre_attn_scalar=8,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"], final_logit_softcapping=30.0,
        pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(seed)
    _save_transformer(Gemma3ForCausalLM(config), folder, seed)
    return folder


@dataclass(frozen=True)
class LLMRerankerFamily:
    """A causal-LM reranker of the matrix: a causal LM saved as sentence-transformers 6 saves a CrossEncoder of a
    *ForCausalLM checkpoint (Transformer, text-generation, + LogitScore of "yes" minus "no")."""

    name: str
    build: Callable[..., Path]
    examples: str
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    max_length: int = 96

    def make(self, folder: Path, seed: int = 0) -> Path:
        from sentence_transformers import CrossEncoder

        hf = self.build(folder.parent / f"{folder.name}-hf", seed)
        model = CrossEncoder(
            str(hf), device="cpu", max_length=self.max_length, prompts=self.prompts or None,
            default_prompt_name=self.default_prompt_name,
        )  # fmt: skip
        model.save_pretrained(str(folder))
        shutil.rmtree(hf)
        return folder


LLM_RERANKERS: tuple[LLMRerankerFamily, ...] = (
    LLMRerankerFamily("Qwen3 causal-LM reranker, chat template", qwen3_reranker,
                      "Qwen3-Reranker-0.6B/4B/8B, mxbai-rerank-base/large-v2"),
    LLMRerankerFamily("Gemma3 causal-LM reranker, pair + prompt", gemma3_reranker,
                      "bge-reranker-v2-gemma (Gemma), Gemma3-based rerankers",
                      prompts={"rerank": "Given a query A and a passage B, does B answer A? "},
                      default_prompt_name="rerank"),
)  # fmt: skip
"""Causal-LM reranker rows of the matrix (tests/test_family_matrix.py; the 6.x stack only: transformers >= 5)."""

STATIC_FAMILIES = ("Static embeddings (sentence-transformers)", "Static embeddings (model2vec)")
"""Rows run by the runtime straight from the folder, no export (tests/test_family_matrix.py)."""
ROUTER_FAMILY = "Router: static queries, BERT documents"
SPARSE_ROUTER_FAMILY = "Router: inference-free SPLADE (sparse static queries, SPLADE documents)"

MATRIX_ROWS: tuple[str, ...] = (
    *(f.name for f in FAMILIES), BGE_M3_FAMILY, CLIP_FAMILY, *(f.name for f in CROSS_ENCODERS),
    *(f.name for f in LLM_RERANKERS), *STATIC_FAMILIES, ROUTER_FAMILY, SPARSE_ROUTER_FAMILY,
)
"""The coverage table's rows in order: the text families, BGE-M3, CLIP, the cross-encoders, the causal-LM rerankers,
the static models, the Routers."""
