"""Nothing a user sent is loaded with pickle or runs code: a guard over the source."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("app", "workers") for p in (ROOT / d).rglob("*.py")]


def _call_text(text: str, start: int) -> str:
    """From a match to its closing parenthesis, nested ones included."""
    depth = 0
    for i in range(text.index("(", start), len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start : i + 1]
    return text[start:]


def _calls(pattern: str) -> list[str]:
    hits = []
    for path in SOURCES:
        text = path.read_text()
        for m in re.finditer(pattern, text):
            line = text[: m.start()].count("\n") + 1
            before = text[text.rfind("\n", 0, m.start()) + 1 : m.start()]
            if before.count("'") % 2 or before.count('"') % 2:
                continue  # inside a string (e.g. the usage example in the model card)
            call = _call_text(text, m.start()) if m.group(0).endswith("(") else m.group(0)
            hits.append(f"{path.relative_to(ROOT)}:{line}: {call}")
    return hits


def test_sources_were_found():
    assert len(SOURCES) > 20


def test_never_trust_remote_code():
    assert _calls(r"trust_remote_code\s*=\s*(?!False)\w+") == []


def test_no_pickle_loading():
    assert _calls(r"\bpickle\.loads?\(|\bjoblib\.load\(|\bdill\.loads?\(") == []


# The one pickle read: a data-parallel rank reads the training loop (modules, the step's
# loss) that rank 0 of the same job wrote a moment before into a folder only its user can
# open (workers/engine/data_parallel.py); nothing a user sent is in it but token ids.
OWN_PAYLOAD = "workers/engine/data_parallel_helper.py"


def test_torch_load_only_with_weights_only():
    calls = _calls(r"torch\.load\(")
    unsafe = [c for c in calls if "weights_only=True" not in c]
    assert [c for c in unsafe if not c.startswith(f"{OWN_PAYLOAD}:")] == []
    assert len(unsafe) == 1, "the data-parallel payload is read in one place only"


def test_pretrained_loads_are_safetensors_only():
    # every model load names use_safetensors=True; tokenizers have no weights
    # Any receiver: the engine loads through the task's Auto class (task.auto_class).
    calls = _calls(r"\b[\w.]+\.from_pretrained\(")
    loads = [
        c
        for c in calls
        if not any(
            k in c.split(": ", 1)[1].split("(")[0] for k in ("Tokenizer", "tokenizer", "Config")
        )
    ]
    assert any("AutoModel" in c or "auto_class" in c for c in loads), "expected model loads"
    assert [c for c in loads if "use_safetensors=True" not in c] == []
