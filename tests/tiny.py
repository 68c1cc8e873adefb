"""Tiny models and data sets for tests: built locally, offline, in well under a second.

Shared by the engine, API and end-to-end tests; keep the signatures stable.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

POSITIVE_WORDS = ("good", "great", "fine", "excellent", "lovely", "nice")
NEGATIVE_WORDS = ("bad", "awful", "poor", "terrible", "boring", "dull")
FILLER_WORDS = (
    "the", "a", "movie", "film", "was", "is", "plot", "acting", "story", "really",
    "very", "it", "this", "and", "with", "of", "ending", "cast", "music", "quite",
)  # fmt: skip
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
VOCAB = SPECIAL_TOKENS + tuple(sorted({*POSITIVE_WORDS, *NEGATIVE_WORDS, *FILLER_WORDS, "."}))


def make_tiny_bert(
    out_dir: Path,
    *,
    num_labels: int | None = None,
    num_layers: int = 4,
    hidden: int = 32,
    seed: int = 0,
) -> Path:
    """A randomly initialised BERT plus a WordPiece tokenizer over the tiny vocabulary.

    ``num_labels=None`` saves a headless ``BertModel`` (like a base checkpoint such as
    MiniLM); an int saves a ``BertForSequenceClassification`` with that many labels.
    """
    # Imported here so that importing this module (e.g. from API tests) stays torch-free.
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_file = out_dir / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    # from_pretrained on the folder reads vocab.txt (the constructor's vocab_file
    # argument is ignored in transformers 5) and save_pretrained adds tokenizer.json.
    tokenizer = BertTokenizer.from_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    if num_labels is None:
        model = BertModel(config)
    else:
        config.num_labels = num_labels
        model = BertForSequenceClassification(config)
    model.save_pretrained(out_dir)
    return out_dir


def tiny_sentence(rng: random.Random, positive: bool) -> str:
    words = [rng.choice(FILLER_WORDS) for _ in range(rng.randint(3, 8))]
    cues = POSITIVE_WORDS if positive else NEGATIVE_WORDS
    for _ in range(rng.randint(1, 2)):
        words.insert(rng.randint(0, len(words)), rng.choice(cues))
    return " ".join(words) + " ."


def make_tiny_dataset(
    path: Path,
    *,
    n: int = 200,
    seed: int = 0,
    label_names: tuple[str, str] = ("negative", "positive"),
) -> Path:
    """JSONL rows ``{"text": ..., "label": <label name>}``; the second label's sentences
    carry positive cue words, the first's negative ones. Deterministic for ``seed``."""
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(n):
            positive = rng.random() < 0.5
            row = {"text": tiny_sentence(rng, positive), "label": label_names[int(positive)]}
            handle.write(json.dumps(row) + "\n")
    return path


def write_engine_jsonl(
    src: Path,
    train: Path,
    eval: Path,
    label_names: Sequence[str],
    *,
    eval_fraction: float = 0.25,
) -> tuple[int, int]:
    """Turn a string-labelled JSONL file into the engine's integer-labelled train/eval
    files (the last ``eval_fraction`` of rows is the eval split). Returns the counts."""
    index = {name: i for i, name in enumerate(label_names)}
    rows = [json.loads(line) for line in Path(src).read_text(encoding="utf-8").splitlines()]
    rows = [{"text": r["text"], "label": index[r["label"]]} for r in rows if r]
    n_eval = max(1, round(len(rows) * eval_fraction))
    splits = ((Path(train), rows[:-n_eval]), (Path(eval), rows[-n_eval:]))
    for path, part in splits:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    return len(rows) - n_eval, n_eval


# -- token classification (NER) ---------------------------------------------------------

# IOB2 tags; the engine's files index into this tuple.
NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
NER_FIRST_NAMES = ("alice", "bob", "carol", "johnson")
NER_LAST_NAMES = ("smith", "jones")
NER_PLACES = (("paris",), ("london",), ("berlin",), ("new", "york"))
NER_ORGS = ("acme", "globex", "initech")
NER_FILLER = ("met", "saw", "visited", "works", "for", "in", "at", "with", "today", "the")
# Word pieces: "johnson" -> john ##son, "berlin" -> ber ##lin, "initech" -> init ##ech, so
# labels must be aligned to first pieces.
NER_VOCAB = (
    *SPECIAL_TOKENS,
    "alice", "bob", "carol", "john", "##son", "smith", "jones", "paris", "london", "ber",
    "##lin", "new", "york", "acme", "globex", "init", "##ech", "corp", ".", "##s",
    *NER_FILLER,
)  # fmt: skip


def make_tiny_ner_bert(
    out_dir: Path,
    *,
    num_labels: int | None = None,
    num_layers: int = 4,
    hidden: int = 32,
    seed: int = 0,
) -> Path:
    """Like ``make_tiny_bert`` over the NER vocabulary (with multi-piece words);
    ``num_labels`` saves a ``BertForTokenClassification`` head, None a headless model."""
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertModel, BertTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.txt").write_text("\n".join(NER_VOCAB) + "\n", encoding="utf-8")
    BertTokenizer.from_pretrained(out_dir).save_pretrained(out_dir)
    config = BertConfig(
        vocab_size=len(NER_VOCAB),
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    if num_labels is None:
        model = BertModel(config)
    else:
        config.num_labels = num_labels
        model = BertForTokenClassification(config)
    model.save_pretrained(out_dir)
    return out_dir


def _ner_entity(rng: random.Random, kind: str) -> list[tuple[str, str]]:
    if kind == "PER":
        words = [rng.choice(NER_FIRST_NAMES)]
        if rng.random() < 0.5:
            words.append(rng.choice(NER_LAST_NAMES))
    elif kind == "LOC":
        words = list(rng.choice(NER_PLACES))
    else:
        words = [rng.choice(NER_ORGS)] + (["corp"] if rng.random() < 0.4 else [])
    return [(w, ("B-" if i == 0 else "I-") + kind) for i, w in enumerate(words)]


def tiny_ner_sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    """Words and IOB2 tag names: a person who met, visited or works for someone, some
    place or some organisation, with filler words around."""
    template = rng.choice(
        (
            ["PER", "visited", "LOC", "."],
            ["PER", "works", "for", "ORG", "in", "LOC", "."],
            ["PER", "met", "PER", "at", "ORG", "today", "."],
            ["the", "ORG", "saw", "PER", "in", "LOC", "."],
        )
    )
    pairs: list[tuple[str, str]] = []
    for part in template:
        pairs += _ner_entity(rng, part) if part in ("PER", "LOC", "ORG") else [(part, "O")]
    return [w for w, _ in pairs], [t for _, t in pairs]


def make_tiny_ner_dataset(path: Path, *, n: int = 200, seed: int = 0) -> Path:
    """The engine's token-classification JSONL: ``{"tokens": [...], "tags": [...]}`` with
    tags as indices into ``NER_LABELS``. Deterministic for ``seed``."""
    rng = random.Random(seed)
    index = {name: i for i, name in enumerate(NER_LABELS)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(n):
            words, tags = tiny_ner_sentence(rng)
            handle.write(json.dumps({"tokens": words, "tags": [index[t] for t in tags]}) + "\n")
    return path
