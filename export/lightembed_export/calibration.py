"""Calibration text for static int8 quantization: a built-in mixed set or the user's, fed to onnxruntime as batches.

Static quantization fixes every activation's scale from the ranges the fp32 graph shows on calibration text, so
the text should look like what the model will embed: the default set mixes questions, news-like and review-like
sentences, code, numbers, several languages and long passages (sentences joined past max_seq_length). Pass your
own (`--calibration-file`, one text per line) for a domain the default does not cover.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lightembed_export.manifest import probes_digest

SENTENCES: tuple[str, ...] = (
    "How do I change the battery in a smoke detector?",
    "What is the difference between a virus and a bacterium?",
    "Best way to store fresh herbs in the fridge",
    "Why is the sky blue during the day and red at sunset?",
    "Can I take ibuprofen and paracetamol together?",
    "cheap flights from Lisbon to Berlin in March",
    "The central bank left interest rates unchanged on Thursday, citing slowing inflation and a cooling labour market.",
    "Heavy rain caused flooding across the region overnight, and several roads remain closed to traffic.",
    "The city council approved a plan to add protected bike lanes to the main avenues by next summer.",
    "Shares of the chipmaker rose 8% after it reported record quarterly revenue from data-centre sales.",
    "Researchers found that the new vaccine reduced hospital admissions by more than half in older adults.",
    "The striker scored twice in the second half as the home side came back to win 3-2.",
    "A beautifully shot film with a script that never quite lives up to its ambitions.",
    "I bought this blender a month ago and it already makes a grinding noise. Very disappointed.",
    "Great little cafe: friendly staff, excellent coffee, and the croissants are baked fresh every morning.",
    "The second season drags in the middle, but the final three episodes are some of the best television this year.",
    "Battery life is fine, the screen is sharp, but the speakers are tinny and the keyboard flexes.",
    "An overlong, self-indulgent mess that wastes a talented cast.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The mitochondrion is the organelle where most of the cell's ATP is produced.",
    "In 1969, Apollo 11 landed the first humans on the Moon.",
    "Water boils at 100 degrees Celsius at sea level, but at a lower temperature at high altitude.",
    "The treaty was signed in 1648 and ended thirty years of war in central Europe.",
    "def add(a: int, b: int) -> int:\n    return a + b",
    "SELECT name, COUNT(*) FROM orders WHERE created_at >= '2024-01-01' GROUP BY name;",
    "Error: connection refused (errno 111) while connecting to 127.0.0.1:5432",
    "Order #48213: 3 x USB-C cable (2 m), 1 x charger 65 W; total $54.97, ships in 2-3 days.",
    "Temperatures between -5 °C and 12 °C, wind 25 km/h from the north-west, 70% chance of rain.",
    "Please find attached the invoice for March. Payment is due within 30 days.",
    "Hi! Are we still on for lunch tomorrow at 12:30?",
    "OK",
    "thanks!!! 🙏🙏",
    "LOL that's hilarious 😂",
    "Die Bahn hat wegen eines Streiks heute fast alle Fernzüge gestrichen.",
    "Le musée sera fermé pour travaux jusqu'à la fin de l'année.",
    "El gobierno anunció nuevas ayudas para las familias con hijos pequeños.",
    "Il treno per Milano parte dal binario sette alle nove e un quarto.",
    "De gemeente wil meer woningen bouwen aan de rand van de stad.",
    "Москва и Санкт-Петербург связаны скоростной железной дорогой.",
    "東京は日本の首都であり、世界で最も人口の多い都市圏の一つです。",
    "人工智能正在改变医疗、教育和交通等许多行业。",
    "서울의 지하철은 깨끗하고 빠르며 이용하기 편리합니다.",
    "القاهرة هي أكبر مدينة في العالم العربي.",
    "नई दिल्ली भारत की राजधानी है।",
    "Η Αθήνα είναι μία από τις αρχαιότερες πόλεις του κόσμου.",
    "İstanbul, Avrupa ile Asya'yı birbirine bağlayan bir şehirdir.",
    "",
    "   ",
)
"""Short texts of many kinds; LONG_TEXTS joins them into passages past any max_seq_length."""


def _long_texts(sentences: Sequence[str], count: int = 8, length: int = 24) -> tuple[str, ...]:
    """`count` passages, each `length` sentences of `sentences` in a fixed shuffled order."""
    rng = np.random.default_rng(0)
    pool = [s for s in sentences if s.strip()]
    return tuple(" ".join(pool[i] for i in rng.permutation(len(pool))[:length]) for _ in range(count))


LONG_TEXTS: tuple[str, ...] = _long_texts(SENTENCES)
DEFAULT_TEXTS: tuple[str, ...] = SENTENCES + LONG_TEXTS
"""The built-in calibration set: the sentences plus long passages."""


@dataclass(frozen=True)
class CalibrationSet:
    """Texts to calibrate on and where they came from (for lightembed.json)."""

    texts: tuple[str, ...]
    source: str
    """"built-in", "calibration_texts" (the API argument) or the calibration file's name."""

    def describe(self) -> dict[str, Any]:
        """{"source", "texts", "sha256"} for lightembed.json."""
        return {"source": self.source, "texts": len(self.texts), "sha256": probes_digest(self.texts)}


def default_set() -> CalibrationSet:
    """The built-in calibration set."""
    return CalibrationSet(DEFAULT_TEXTS, "built-in")


def from_texts(texts: Sequence[str], source: str = "calibration_texts") -> CalibrationSet:
    """A calibration set of `texts`; ValueError if there are none, TypeError if one is not a string."""
    if isinstance(texts, str):
        raise TypeError("calibration texts must be a list of strings, not one string")
    items = tuple(texts)
    if not items:
        raise ValueError("calibration texts are empty")
    bad = next((i for i, t in enumerate(items) if not isinstance(t, str)), None)
    if bad is not None:
        raise ValueError(f"calibration text {bad} is {type(items[bad]).__name__}, not a string")
    return CalibrationSet(items, source)


def from_file(path: str | Path) -> CalibrationSet:
    """The non-blank lines of a UTF-8 text file as a calibration set."""
    file = Path(path).expanduser()
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read calibration file {file}: {exc}") from None
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise ValueError(f"calibration file {file} has no non-blank lines")
    return CalibrationSet(tuple(texts), file.name)


def feeds(
    calibration: CalibrationSet,
    tokenizer_dir: Path,
    input_names: Sequence[str],
    max_length: int | None,
    pairs: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """One graph feed per text (batch of 1, so no padding enters the ranges), tokenized as the model does.

    `pairs`: cross-encoders get (text i, text i + 1) pairs. Only the graph's `input_names` are fed.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    texts = list(calibration.texts)
    limit = max_length or getattr(tokenizer, "model_max_length", None) or 512
    limit = min(int(limit), 100_000)
    for i, text in enumerate(texts):
        second = texts[(i + 1) % len(texts)] if pairs else None
        encoded = tokenizer(text, second, truncation=True, max_length=limit, return_tensors="np")
        feed = {name: np.asarray(encoded[name], dtype=np.int64) for name in input_names if name in encoded}
        if "token_type_ids" in input_names and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        yield feed
