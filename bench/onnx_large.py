"""ONNX and int8 for a model past ONNX's 2 GiB protobuf limit, through the engine's own
export path (workers/engine/onnx_export.py), on CPU.

No pretrained checkpoint that large is on this machine (nothing can be downloaded), so
the model is a BERT classifier built from a config with random weights: export,
quantization and parity do not depend on what the weights learnt, only on their size and
the graph. The default config has 617M parameters (2.47 GB in fp32), past the 2 GiB that
one .onnx protobuf can hold, and 20 layers of BERT-large's code at width 1536.

Each step's result is written as soon as it is known (a run cut off still has them):
export (fp32, weights in model.onnx.data), int8 (quant_pre_process + dynamic int8),
load in plain ``onnxruntime.InferenceSession``, parity against PyTorch on random rows
(the bounds a job applies: fp32 max |logit difference| <= 1e-3, int8 argmax agreement
on the rows), file sizes and the process's peak memory.

    python bench/onnx_large.py                  # ~3 min on 2 cores, 13 GB of memory
    python bench/onnx_large.py --layers 2       # the plumbing only (under 2 GiB)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

from bench.common import machine  # noqa: E402
from workers.engine import onnx_export as ox  # noqa: E402

TWO_GIB = 2**31


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=1536)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=16, help="random rows for parity")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--tag", default=None, help="file-name label (default: the date)")
    return parser.parse_args(argv)


def batches(rows: int, vocab: int) -> list[dict[str, torch.Tensor]]:
    """Rows of 8 to 48 tokens, right-padded, in batches of 4 (other shapes than the
    export's example, so the dynamic axes are exercised)."""
    generator = torch.Generator().manual_seed(1)
    out = []
    for start in range(0, rows, 4):
        n = min(4, rows - start)
        length = 8 + 8 * (start // 4 % 6)
        ids = torch.randint(1000, vocab, (n, length), generator=generator)
        lengths = torch.randint(length // 2, length + 1, (n,), generator=generator)
        mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
        out.append({"input_ids": ids * mask, "attention_mask": mask})
    return out


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def files_of(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir())}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tag = args.tag or dt.date.today().isoformat()
    out_json = args.out / f"onnx-large-{tag}.json"
    out_md = out_json.with_suffix(".md")
    work = Path(tempfile.mkdtemp(prefix="onnx-large-", dir=args.work))
    result: dict[str, Any] = {
        "what": "ONNX fp32 and int8 export past the 2 GiB protobuf limit (bench/onnx_large.py)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(args.threads),
        "inline_max_bytes": ox.INLINE_MAX_BYTES,
        "steps": {},
    }

    def record(step: str, **values: Any) -> None:
        result["steps"][step] = {**values, "peak_rss_gb": round(peak_rss_gb(), 2)}
        args.out.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        out_md.write_text(markdown(result), encoding="utf-8")
        print(f"[onnx-large] {step}: {result['steps'][step]}", file=sys.stderr, flush=True)

    try:
        config = BertConfig(
            hidden_size=args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=args.hidden // 96,
            intermediate_size=4 * args.hidden,
            num_labels=2,
        )
        torch.manual_seed(0)
        start = time.perf_counter()
        model = BertForSequenceClassification(config).eval()
        count = sum(p.numel() for p in model.parameters())
        record(
            "build",
            parameters=count,
            fp32_bytes=count * 4,
            past_2gib=count * 4 > TWO_GIB,
            wall_s=round(time.perf_counter() - start, 1),
            config={k: getattr(config, k) for k in ("hidden_size", "num_hidden_layers")},
        )
        rows = batches(args.rows, config.vocab_size)
        example = {k: v[:2, :16] for k, v in batches(4, config.vocab_size)[0].items()}

        fp32 = work / "onnx" / ox.ONNX_FILE
        start = time.perf_counter()
        ox.export_onnx(model, example, fp32)
        record(
            "export",
            wall_s=round(time.perf_counter() - start, 1),
            files=files_of(fp32.parent),
            total_bytes=ox.file_bytes(fp32),
        )

        int8 = work / "onnx-int8" / ox.ONNX_FILE
        start = time.perf_counter()
        ox.quantize_int8(fp32, int8)
        record(
            "int8",
            wall_s=round(time.perf_counter() - start, 1),
            files=files_of(int8.parent),
            total_bytes=ox.file_bytes(int8),
        )

        for name, path in (("fp32", fp32), ("int8", int8)):
            # Moved first, as a downloaded artifact is: the weights file is found by name.
            moved = work / f"moved-{name}"
            shutil.move(str(path.parent), moved)
            start = time.perf_counter()
            sess = ox.session(moved / ox.ONNX_FILE, threads=args.threads)
            loaded = time.perf_counter() - start
            found = ox.parity(model, sess, rows)
            record(
                f"parity-{name}",
                load_s=round(loaded, 1),
                **found.as_dict(),
                passed=(
                    found.max_abs_logit_diff <= 1e-3
                    if name == "fp32"
                    else found.argmax_agreement >= 0.9
                ),
            )
            del sess
    except Exception as exc:  # a failed step is the result: say which, and why
        record("failed", error=f"{type(exc).__name__}: {exc}"[:2000])
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"# ONNX past 2 GiB ({result['date']})",
        "",
        f"Machine: {m.get('cpu')}, {m.get('threads')} threads. "
        f"Weights go outside the .onnx file past {result['inline_max_bytes']:,} bytes.",
        "",
        "| Step | Result |",
        "|---|---|",
    ]
    for step, values in result["steps"].items():
        lines.append(f"| {step} | {json.dumps(values)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
