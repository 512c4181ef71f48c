"""SentenceTransformer: sentence-transformers' encode() API on an ONNX graph, in NumPy."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Literal, Sequence, cast, overload

import numpy as np

from lightembed import chunking
from lightembed.base import SIMILARITY_NAMES, EmbeddingModel, ModelSetup
from lightembed.clip import ImageTower
from lightembed.config import ModelConfig, load_config, read_json, read_modules
from lightembed.errors import LightembedTypeError, LightembedValueError
from lightembed.inputs import (
    OUTPUT_VALUES,
    PrecisionName,
    as_text_list,
    check_batch_size,
    check_precision,
    check_truncate_dim,
    pop_legacy,
    take_sentences,
)
from lightembed.modality import TextOnly, modality_of
from lightembed.modules import SENTENCE, TOKENS, l2_normalize, run_modules
from lightembed.pooling import POOLED_METADATA_KEY, POOLED_OUTPUT, exclude_prompt, first_real_tokens, pool
from lightembed.router import RouterConfig, read_router, split_routes
from lightembed.static import tokenizer_rules
from lightembed.tokenize import Batch

Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]


class SentenceTransformer(EmbeddingModel):
    """Embeds texts with a sentence-transformers model exported to ONNX, with sentence-transformers' API.

    `model_name_or_path` is a local folder or a Hugging Face Hub repo id holding an ONNX file
    (`onnx/model.onnx` or `model.onnx` unless `file_name` picks another, e.g. "onnx/model_O3.onnx").
    `device` is None (CUDA if onnxruntime offers it, else CPU), "cpu", "cuda" or "cuda:N"; `providers`
    overrides it with onnxruntime's own list. `threads` sets intra-op threads (default: the usable cores).
    `max_batch_tokens` caps the padded tokens of one batch (rows x longest) so batches of long documents
    take bounded memory; the default is 2048 on CPU and 32768 on CUDA, None removes the cap.
    `verify` checks the ONNX file against the sha256 and the verification result in the lightembed.json the
    exporter wrote (a file it does not list is not checked); the default is on unless LIGHTEMBED_VERIFY=0. A
    mismatch, or a file that failed the exporter's check, is a ValueError; `verify=False` skips both.
    """

    _preferred_outputs = ("last_hidden_state", "token_embeddings")
    SUPPORTED_SIMILARITY_FN_NAMES: ClassVar[tuple[str, ...]] = SIMILARITY_NAMES

    def __init__(
        self,
        model_name_or_path: str | Path,
        device: str | None = None,
        *,
        file_name: str | None = None,
        revision: str | None = None,
        cache_folder: str | None = None,
        local_files_only: bool = False,
        token: bool | str | None = None,
        providers: Sequence[Any] | None = None,
        threads: int | None = None,
        truncate_dim: int | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        similarity_fn_name: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        backend: str | None = None,
        trust_remote_code: bool = False,
        max_batch_tokens: int | Literal["auto"] | None = "auto",
        verify: bool | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        model_card_data: Any = None,
        preoptimized: bool | None = None,
        spinning: bool | None = None,
        **kwargs: Any,
    ) -> None:
        processor_kwargs = pop_legacy(kwargs, processor_kwargs, "tokenizer_kwargs")
        token = pop_legacy(kwargs, token, "use_auth_token")
        if kwargs:
            raise LightembedTypeError(f"SentenceTransformer() got unexpected keyword arguments: {sorted(kwargs)}.")
        del trust_remote_code, model_card_data  # an exported graph runs no Python code from the model folder
        self.truncate_dim = check_truncate_dim(truncate_dim)
        local = Path(model_name_or_path) if isinstance(model_name_or_path, (str, Path)) else None
        self.router: RouterConfig | None = read_router(local) if local is not None and local.is_dir() else None
        """A Router model's routes (lightembed.router); None for any other model."""
        self.routes: dict[str, SentenceTransformer] = {}
        """A Router model's other routes, each a model of its own; this model runs the default route."""
        if self.router is not None:
            shared: dict[str, Any] = dict(device=device, providers=providers, threads=threads, truncate_dim=truncate_dim,
                          backend=backend, max_batch_tokens=max_batch_tokens, verify=verify, preoptimized=preoptimized,
                          spinning=spinning)  # fmt: skip
            model_name_or_path, self.routes = split_routes(self.router, self,
                                                           lambda view: SentenceTransformer(view, **shared))
        super().__init__(
            model_name_or_path,
            device,
            file_name=file_name,
            revision=revision,
            cache_folder=cache_folder,
            local_files_only=local_files_only,
            token=token,
            providers=providers,
            threads=threads,
            model_kwargs=model_kwargs,
            backend=backend,
            prompts=prompts,
            default_prompt_name=default_prompt_name,
            similarity_fn_name=similarity_fn_name,
            max_batch_tokens=max_batch_tokens,
            verify=verify,
            preoptimized=preoptimized,
            spinning=spinning,
            processor_kwargs=processor_kwargs,
            config_kwargs=config_kwargs,
        )
        if self.config.static is not None:
            self.tokenizer_wrapper.set_rules(**tokenizer_rules(self.config.static, self.tokenizer))
        hidden = read_json(self.config.transformer_dir / "config.json")
        self._hidden_size = self._graph.output_width or hidden.get("hidden_size") or hidden.get("d_model")
        self.use_pooled_output = self.has_pooled_output
        """Take sentence embeddings from the graph's fused pooling output when it has one (set False to pool
        the token embeddings in NumPy instead)."""
        if self.truncate_dim is None:  # as sentence-transformers: the argument, else the saved config's
            saved = read_json(self.model_dir / "config_sentence_transformers.json").get("truncate_dim")
            self.truncate_dim = check_truncate_dim(saved)
        self.modality: TextOnly = modality_of(self)
        """What the model takes besides text (lightembed.modality): images for a CLIP model."""

    @property
    def image_tower(self) -> ImageTower | None:
        """A CLIP model's vision graph and image preprocessing (lightembed.clip); None for a text model."""
        return self.modality.image_tower

    @property
    def modalities(self) -> list[str]:
        """The input modalities this model takes: ["text"], or ["text", "image"] for a CLIP model."""
        return list(self.config.modalities)

    def save(self, path: str | Path, *args: Any, **kwargs: Any) -> None:
        """See TorchCompat.save; a CLIP model is refused (NotSupportedError): save() writes one ONNX file, a CLIP
        folder needs its two towers, so copy the exported folder instead."""
        self._refuse_clip_save("save()")
        super().save(path, *args, **kwargs)

    def push_to_hub(self, repo_id: str, *args: Any, **kwargs: Any) -> str:
        """See TorchCompat.push_to_hub; a CLIP model uploads only a folder given as `local_model_path` (its
        exported folder), since save() cannot write one."""
        if not kwargs.get("local_model_path") and len(args) < 5:
            self._refuse_clip_save("push_to_hub() without local_model_path")
        return super().push_to_hub(repo_id, *args, **kwargs)

    def _refuse_clip_save(self, what: str) -> None:
        self.modality.refuse_save(what, self.model_dir)

    save_pretrained = save

    def _reopened(self, before: Any) -> None:
        self.modality.reopened(self)
        # The fused output is used when the new file has it, unless the user switched it off (remembered across
        # files without one, where it is off by necessity).
        if POOLED_OUTPUT in before.output_names:
            self._numpy_pooling_chosen = not self.use_pooled_output
        self.use_pooled_output = self.has_pooled_output and not getattr(self, "_numpy_pooling_chosen", False)

    def _setup(self) -> ModelSetup:
        self.config: ModelConfig = load_config(self.model_dir)
        return ModelSetup(
            self.config.transformer_dir,
            self.config.settings,
            self.config.prompts,
            self.config.default_prompt_name,
            self.config.similarity_fn_name,
        )

    @property
    def has_pooled_output(self) -> bool:
        """Whether the ONNX file has a fused `sentence_embedding` output made with this model's pooling modes."""
        recorded = self._graph.metadata.get(POOLED_METADATA_KEY)
        fused = POOLED_OUTPUT in self._graph.output_names and recorded == ",".join(self.config.pooling.modes)
        return fused and not self.config.pre  # modules before Pooling change what it pools

    def get_embedding_dimension(self) -> int | None:
        """Dimension of the vectors encode() returns (after truncate_dim); sentence-transformers' newer name."""
        return self.get_sentence_embedding_dimension()

    @contextmanager
    def truncate_embeddings(self, truncate_dim: int | None) -> Iterator[None]:
        """Within this context encode() truncates embeddings to `truncate_dim` (None: no truncation); the previous
        value comes back on exit, also when the block raises."""
        previous = self.truncate_dim
        self.truncate_dim = check_truncate_dim(truncate_dim)
        try:
            yield
        finally:
            self.truncate_dim = previous

    truncate_sentence_embeddings = truncate_embeddings

    def set_pooling_include_prompt(self, include_prompt: bool) -> None:
        """Whether pooling includes the prompt's tokens (False: they are left out, as instructor-style models
        need); save() writes it to the Pooling module's config."""
        if not isinstance(include_prompt, bool):
            raise LightembedTypeError(f"include_prompt must be True or False, got {include_prompt!r}.")
        self.config.pooling = replace(self.config.pooling, include_prompt=include_prompt)

    def _model_config(self) -> dict[str, Any]:
        return {**super()._model_config(), "truncate_dim": self.truncate_dim}

    def _save_extra(self, folder: Path) -> None:
        for kind, path, _ in read_modules(self.model_dir) or []:
            if kind == "Pooling":
                config_path = folder / path.relative_to(self.model_dir) / "config.json"
                config = read_json(config_path)
                config["include_prompt"] = self.config.pooling.include_prompt
                config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    def get_sentence_embedding_dimension(self) -> int | None:
        """Dimension of the vectors encode() returns (after truncate_dim)."""
        dim = self.config.output_dimension(self._hidden_size)
        if dim is not None and self.truncate_dim is not None:
            return min(dim, self.truncate_dim)
        return dim

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Token arrays for `texts`, padded to the longest: input_ids, attention_mask, token_type_ids."""
        texts, _ = as_text_list(texts, "texts")
        return self.pad(self.tokenize_inputs(texts)).as_dict()

    # ----- encoding ---------------------------------------------------------------------------------
    def forward(self, batch: Batch, prompt_length: int | None = None) -> np.ndarray:
        """Sentence embeddings (rows, dim) of one padded batch: the fused pooling output when the file has it and
        no prompt must be excluded, else the token embeddings pooled in NumPy; then Dense/Normalize modules. A CLIP
        text tower gives its projected embeddings (text_embeds) directly."""
        own = self.modality.text_embeddings(self, batch)
        if own is not None:
            return own
        if self.use_pooled_output and prompt_length is None:
            return self._after_pooling(self._graph(batch.as_dict(), POOLED_OUTPUT))
        return self._sentence_embeddings(self._graph(batch.as_dict()), batch.attention_mask, prompt_length)

    def forward_tokens(self, batch: Batch) -> np.ndarray:
        """The token embeddings (rows, tokens, hidden) of one padded batch, before pooling (stage 4's first half)."""
        if self.config.is_clip:
            raise LightembedValueError("A CLIP model's graphs give sentence embeddings only, not token embeddings.")
        return self._graph(batch.as_dict())

    def embed_pooled(self, pooled: np.ndarray) -> np.ndarray:
        """The modules after Pooling (Dense, Normalize ...) applied to pooled vectors (stage 4's second half)."""
        return self._after_pooling(pooled)

    encode_chunks = chunking.encode_chunks

    def prompt_length(self, prompt: str | None) -> int | None:
        """Tokens to leave out of pooling for `prompt` (None when the model's Pooling includes the prompt)."""
        if not prompt or self.config.pooling.include_prompt:
            return None
        return self.tokenizer_wrapper.prompt_length(prompt)

    # ----- encoding ---------------------------------------------------------------------------------
    def _sentence_embeddings(
        self, token_embeddings: np.ndarray, attention_mask: np.ndarray, prompt_length: int | None
    ) -> np.ndarray:
        return self._features(token_embeddings, attention_mask, prompt_length)[SENTENCE]

    def _features(
        self, token_embeddings: np.ndarray, attention_mask: np.ndarray, prompt_length: int | None
    ) -> dict[str, np.ndarray]:
        """The features after every module, as sentence-transformers 6 passes them: the modules before Pooling on
        the token embeddings, Pooling, then the modules after it."""
        features = run_modules(self.config.pre, {TOKENS: token_embeddings})
        offsets = first_real_tokens(attention_mask) if self.config.pooling.weights_from_first_token else None
        if prompt_length is not None:
            attention_mask = exclude_prompt(attention_mask, prompt_length)
        features[SENTENCE] = pool(features[TOKENS], attention_mask, self.config.pooling.modes, offsets)
        return run_modules(self.config.post, features)

    def _after_pooling(self, emb: np.ndarray) -> np.ndarray:
        """The modules after Pooling (Dense, Normalize ...) applied to pooled vectors (modules on token embeddings
        have nothing to act on here and are skipped)."""
        return run_modules(self.config.post, {SENTENCE: emb})[SENTENCE]

    @overload
    def encode(
        self,
        inputs: str,
        prompt_name: str | None = ...,
        prompt: str | None = ...,
        batch_size: int = ...,
        show_progress_bar: bool | None = ...,
        output_value: Literal["sentence_embedding"] = ...,
        precision: Precision = ...,
        convert_to_numpy: bool = ...,
        convert_to_tensor: bool = ...,
        device: str | None = ...,
        normalize_embeddings: bool = ...,
        truncate_dim: int | None = ...,
        **kwargs: Any,
    ) -> np.ndarray: ...

    @overload
    def encode(
        self,
        inputs: Sequence[str] | np.ndarray,
        prompt_name: str | None = ...,
        prompt: str | None = ...,
        batch_size: int = ...,
        show_progress_bar: bool | None = ...,
        output_value: Literal["sentence_embedding"] = ...,
        precision: Precision = ...,
        convert_to_numpy: Literal[True] = ...,
        convert_to_tensor: bool = ...,
        device: str | None = ...,
        normalize_embeddings: bool = ...,
        truncate_dim: int | None = ...,
        **kwargs: Any,
    ) -> np.ndarray: ...

    @overload
    def encode(
        self,
        inputs: Sequence[str] | np.ndarray,
        prompt_name: str | None = ...,
        prompt: str | None = ...,
        batch_size: int = ...,
        show_progress_bar: bool | None = ...,
        output_value: Literal["sentence_embedding", "token_embeddings"] | None = ...,
        precision: Precision = ...,
        convert_to_numpy: bool = ...,
        convert_to_tensor: bool = ...,
        device: str | None = ...,
        normalize_embeddings: bool = ...,
        truncate_dim: int | None = ...,
        **kwargs: Any,
    ) -> list[Any]: ...

    def encode(
        self,
        inputs: str | Sequence[str] | np.ndarray | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: Literal["sentence_embedding", "token_embeddings"] | None = "sentence_embedding",
        precision: Precision = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | None = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Embed one text (1-D result) or a list of texts ((n, dim) result, input order kept).

        Same semantics as sentence-transformers' encode(). There is no torch here, so
        `convert_to_tensor=True` returns a NumPy array too; `convert_to_numpy=False` returns a list of
        1-D arrays.

        `precision="int8"`/`"uint8"` take each dimension's range from the texts of this call, so a single text has
        no range and is a ValueError (as in sentence-transformers 6; 5.x returned all -128/0), and a handful gives a
        poor one. For few texts, encode in float32 and call `util.quantize_embeddings(emb, "int8", ranges=...)`
        with ranges (shape (2, dim): per-dimension min and max) or `calibration_embeddings=` taken from a corpus.

        A CLIP model (`modalities` ["text", "image"]) also embeds images, alone or mixed with texts in one list
        (input order kept): a PIL image, a `pathlib.Path`, or, as in sentence-transformers, a string ending in an
        image extension (.jpg, .png, ...) that names an existing file, or a data:image/ URI; any other string is
        text. sentence-transformers 5.7 refuses a batch that mixes texts and images; here each kind is batched
        separately, so a mixed list gives what encoding each kind on its own gives. Images need Pillow
        (`pip install 'lightembed[images]'`); prompts apply to texts only.
        """
        inputs = take_sentences(inputs, kwargs)
        route = self._other_route(kwargs)
        if route is not None:
            return route.encode(
                inputs, prompt_name=prompt_name, prompt=prompt, batch_size=batch_size,
                show_progress_bar=show_progress_bar, output_value=output_value, precision=precision,
                convert_to_numpy=convert_to_numpy, convert_to_tensor=convert_to_tensor, device=device,
                normalize_embeddings=normalize_embeddings, truncate_dim=truncate_dim, **kwargs,
            )  # fmt: skip
        pool, chunk_size = kwargs.pop("pool", None), kwargs.pop("chunk_size", None)
        if self._uses_pool(pool, device):
            from lightembed.pool import encode_embeddings

            return encode_embeddings(
                self, inputs, pool, device, chunk_size, kwargs, show_progress_bar=show_progress_bar,
                precision=precision, convert_to_numpy=convert_to_numpy, convert_to_tensor=convert_to_tensor,
                truncate_dim=truncate_dim, prompt_name=prompt_name, prompt=prompt, batch_size=batch_size,
                output_value=output_value, normalize_embeddings=normalize_embeddings,
            )  # fmt: skip
        self._check_call("encode()", device, kwargs)
        parts = self.modality.split(inputs, self.modalities)
        texts, single = parts.texts, parts.single
        batch_size = check_batch_size(batch_size)
        check_precision(precision)
        if output_value not in OUTPUT_VALUES:
            raise LightembedValueError(f"output_value must be one of {OUTPUT_VALUES}, got {output_value!r}.")
        truncate_dim = check_truncate_dim(truncate_dim) or self.truncate_dim
        self.modality.check_output_value(output_value)
        resolved_prompt = self._prompt(prompt, prompt_name)
        if resolved_prompt:
            texts = [resolved_prompt + text for text in texts]
        prompt_length = self.prompt_length(resolved_prompt)

        embeddings: np.ndarray | None = None  # (n, dim), filled batch by batch in input order
        tokens: list[Any] = [None] * len(texts)
        records: list[Any] = [None] * len(texts)

        def store(positions: np.ndarray, emb: np.ndarray) -> None:
            nonlocal embeddings
            if truncate_dim is not None:
                emb = emb[:, :truncate_dim]
            if normalize_embeddings:
                emb = l2_normalize(emb)
            if embeddings is None:
                embeddings = np.empty((parts.count, emb.shape[1]), dtype=np.float32)
            embeddings[positions] = emb

        for idx, batch in self._batches(texts, batch_size, show_progress_bar):
            if output_value == "sentence_embedding":
                emb = self.forward(batch, prompt_length)
            else:
                features = self._features(self._graph(batch.as_dict()), batch.attention_mask, prompt_length)
                hidden = features[TOKENS]  # after the modules that act on token embeddings, as in 6.x
                for row, i in enumerate(idx):
                    last = int(np.flatnonzero(batch.attention_mask[row]).max(initial=0))
                    tokens[i] = hidden[row, : last + 1]
                if output_value == "token_embeddings":
                    continue
                emb = features[SENTENCE]
            store(parts.text_positions[idx], emb)
            if output_value is None:
                for row, i in enumerate(idx):
                    records[i] = {
                        "sentence_embedding": embeddings[i],  # type: ignore[index]  # store() just filled it
                        "token_embeddings": tokens[i],
                        "input_ids": batch.input_ids[row, : batch.lengths[row]],
                        "attention_mask": batch.attention_mask[row],
                    }
        for positions, emb in self.modality.image_batches(parts, batch_size, single):
            store(positions, self._after_pooling(emb))

        if output_value == "token_embeddings":
            return tokens[0] if single else tokens
        if output_value is None:
            return records[0] if single else records
        return self._finish(embeddings, single, precision, convert_to_numpy or convert_to_tensor, truncate_dim)

    def _finish(
        self, out: np.ndarray | None, single: bool, precision: str, as_array: bool, truncate_dim: int | None
    ) -> Any:
        if out is None:
            dim = self.config.output_dimension(self._hidden_size) or 0
            out = np.zeros((0, min(dim, truncate_dim) if truncate_dim else dim), dtype=np.float32)
        if precision != "float32":
            from lightembed.util import quantize_embeddings

            precision = cast(PrecisionName, precision)  # checked at the top of encode()

            if len(out):
                out = quantize_embeddings(out, precision=precision)
            else:
                width = out.shape[1] // 8 if precision in ("binary", "ubinary") else out.shape[1]
                dtype = np.int8 if precision in ("int8", "binary") else np.uint8
                out = np.zeros((0, width), dtype=dtype)
        if single:
            return out[0]
        return out if as_array else list(out)

    # ----- similarity -------------------------------------------------------------------------------
    def _similarity_fns(self) -> tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]:
        from lightembed import util

        return {
            "cosine": (util.cos_sim, util.pairwise_cos_sim),
            "dot": (util.dot_score, util.pairwise_dot_score),
            "euclidean": (util.euclidean_sim, util.pairwise_euclidean_sim),
            "manhattan": (util.manhattan_sim, util.pairwise_manhattan_sim),
        }[self.similarity_fn_name]

    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """(n, m) scores between two sets of embeddings with the model's similarity function."""
        return self._similarity_fns()[0](embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """(n,) scores between row i of each set with the model's similarity function."""
        return self._similarity_fns()[1](embeddings1, embeddings2)

    def _repr_fields(self) -> dict[str, Any]:
        return self.modality.repr_fields(self)
