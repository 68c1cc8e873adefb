"""The Intel Neural Compressor 3.7 rows of bench/sst2.py, run in bench/.venv-inc.

INC 3.7 pins numpy<2 and needs setuptools<81 and six, so it lives in its own
environment (bench/inc/setup.sh) and bench/sst2.py runs this script there by
subprocess. It trains and saves; scoring and timing happen back in bench/sst2.py with
every other row, from the saved folders.

Rows (same teacher, same training rows, same epochs, batch size, learning rate and seed
as every other method that trains), through INC's training-time API
(``neural_compressor.training.prepare_compression`` with a ``WeightPruningConfig`` and a
``DistillationConfig`` together, its callbacks in a plain PyTorch loop):

- ``snip_momentum`` with 4x1 blocks at each ``--sparsities`` target over the encoder's
  Linear weights (global scope), distilled from the teacher with INC's
  ``KnowledgeDistillationLoss`` (CE on labels + KL to the teacher, 0.5 / 0.5, T = 2);
- ``auto_slim``: ``parse_auto_slim_config(ffn2_sparsity=...)`` prunes whole FFN
  channels (``channelx1`` on each layer's second FFN Linear), with the same
  distillation, then ``model_slim`` removes the zeroed channels for good.

The pruning schedule follows INC's examples scaled to the budget: pruning starts after
the 10% warm-up, ends at 80% of the steps (the last 20% train with fixed masks), with
about 20 pruning events in between.

    bench/.venv-inc/bin/python bench/inc/run_inc.py --teacher DIR --train F --out DIR
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.peers.train import (  # noqa: E402
    MAX_GRAD_NORM,
    WARMUP_FRACTION,
    WEIGHT_DECAY,
    Budget,
    Setup,
    load_model,
    load_setup,
    save,
)
from workers.engine.data import iter_batches, model_inputs  # noqa: E402
from workers.engine.runtime import Runtime, resolve_device  # noqa: E402

TEMPERATURE = 2.0
LOSS_WEIGHTS = [0.5, 0.5]
# INC's op_names are regular expressions searched in module names: the transformer
# blocks' Linear layers, as in every other row (not the pooler or the classifier).
ENCODER_OPS = [r"encoder\.layer\."]
PRUNING_EVENTS = 20
PRUNING_END_FRACTION = 0.8


def schedule(total_steps: int) -> dict[str, int]:
    start = max(1, math.ceil(WARMUP_FRACTION * total_steps))
    end = max(start, int(PRUNING_END_FRACTION * total_steps))
    frequency = max(1, (end - start) // PRUNING_EVENTS)
    return {"start_step": start, "end_step": end, "pruning_frequency": frequency}


def train_with_inc(model, teacher, setup: Setup, pruning_configs: list[dict], **global_conf):
    """One run of INC's callbacks in a plain loop: its pruning hooks around the
    optimiser step, its distillation loss from the student's loss and logits."""
    from neural_compressor.config import (
        DistillationConfig,
        KnowledgeDistillationLossConfig,
        WeightPruningConfig,
    )
    from neural_compressor.training import prepare_compression

    budget = setup.budget
    total = setup.train.num_batches(budget.batch_size) * budget.epochs
    steps = schedule(total)
    pruning = WeightPruningConfig(pruning_configs, **steps, **global_conf)
    distillation = DistillationConfig(
        teacher_model=teacher,
        criterion=KnowledgeDistillationLossConfig(
            temperature=TEMPERATURE, loss_types=["CE", "KL"], loss_weights=LOSS_WEIGHTS
        ),
    )
    manager = prepare_compression(model, [distillation, pruning])
    callbacks = manager.callbacks
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=budget.learning_rate)
    warmup = max(1, math.ceil(WARMUP_FRACTION * total))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    device = setup.runtime.device
    model.to(device)
    teacher.to(device)
    generator = torch.Generator().manual_seed(budget.seed)
    teacher.eval()
    losses = []
    callbacks.on_train_begin()
    for epoch in range(budget.epochs):
        model.train()
        callbacks.on_epoch_begin(epoch)
        running, count = 0.0, 0
        batches = iter_batches(
            setup.train, budget.batch_size, pad_token_id=setup.pad_token_id, generator=generator
        )
        for index, batch in enumerate(batches):
            callbacks.on_step_begin(index)
            batch = {k: v.to(device) for k, v in batch.items()}
            inputs = model_inputs(batch)
            logits = model(**inputs).logits
            student_loss = F.cross_entropy(logits, batch["labels"])
            with torch.no_grad():
                teacher_logits = teacher(**inputs).logits
            loss = callbacks.on_after_compute_loss(inputs, logits, student_loss, teacher_logits)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
            callbacks.on_before_optimizer_step()
            optimizer.step()
            callbacks.on_after_optimizer_step()
            scheduler.step()
            callbacks.on_step_end()
            running += float(loss.detach())
            count += 1
        callbacks.on_epoch_end()
        losses.append(running / max(count, 1))
    callbacks.on_train_end()
    model.eval()
    return {"schedule": steps, "total_steps": total, "epoch_losses": losses}


def encoder_linear_sparsity(model) -> float:
    zeros = total = 0
    for module in model.base_model.encoder.modules():
        if isinstance(module, torch.nn.Linear):
            zeros += int((module.weight == 0).sum())
            total += module.weight.numel()
    return zeros / total


def snip_row(setup: Setup, sparsity: float, out: Path) -> dict[str, Any]:
    teacher, model = load_model(setup.teacher_dir), load_model(setup.teacher_dir)
    details = train_with_inc(
        model,
        teacher,
        setup,
        [{}],
        target_sparsity=sparsity,
        pruning_type="snip_momentum",
        pattern="4x1",
        op_names=ENCODER_OPS,
        pruning_scope="global",
    )
    details["encoder_linear_sparsity"] = encoder_linear_sparsity(model)
    save(model, setup.teacher_dir, out)
    return details


def slim_row(setup: Setup, ffn_sparsity: float, out: Path) -> dict[str, Any]:
    from neural_compressor.compression.pruner import model_slim, parse_auto_slim_config

    teacher, model = load_model(setup.teacher_dir), load_model(setup.teacher_dir)
    configs = parse_auto_slim_config(
        model, ffn2_sparsity=ffn_sparsity, mha_sparsity=0, pruning_scope="local"
    )
    details = train_with_inc(model, teacher, setup, configs, pruning_type="snip_momentum")
    details["encoder_linear_sparsity_before_slim"] = encoder_linear_sparsity(model)
    # model_slim traces the model with a dummy input it makes on the CPU.
    model = model_slim(model.to("cpu"))
    layers = model.base_model.encoder.layer
    widths = [int(layer.intermediate.dense.out_features) for layer in layers]
    details["intermediate_sizes_after_slim"] = widths
    # model_slim leaves config.json describing the dense FFN; the saved folder keeps it
    # as INC leaves it (bench/sst2.py reports whether plain transformers reloads it).
    save(model, setup.teacher_dir, out)
    return details


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for models + rows.json")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sparsities", default="0.5,0.8")
    parser.add_argument("--ffn-sparsity", type=float, default=0.75, help="0: no auto_slim row")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (train only)")
    args = parser.parse_args()

    import neural_compressor

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    budget = Budget(
        args.epochs, args.batch_size, args.learning_rate, args.seed, args.max_seq_length
    )
    runtime = Runtime(resolve_device(args.device))
    setup = load_setup(args.teacher, args.train, budget, runtime)
    version = f"Intel Neural Compressor {neural_compressor.__version__}"
    jobs = [
        (
            f"peer: INC snip_momentum 4x1 {s:.0%}",
            f"sparsity={s} (4x1 blocks, encoder Linear weights)",
            lambda out, s=s: snip_row(setup, s, out),
        )
        for s in (float(x) for x in args.sparsities.split(","))
    ]
    if args.ffn_sparsity > 0:  # 0: snip_momentum rows only
        jobs.append(
            (
                "peer: INC auto_slim FFN + model_slim",
                f"ffn2_sparsity={args.ffn_sparsity} (FFN channels, then removed)",
                lambda out: slim_row(setup, args.ffn_sparsity, out),
            )
        )
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for method, target, job in jobs:
        slug = method.split(": ", 1)[1].replace(" ", "_").replace("%", "pct").replace("+", "")
        out = args.out / slug
        row: dict[str, Any] = {"method": method, "target": target}
        start = time.perf_counter()
        try:
            details = job(out)
        except Exception as exc:  # a row that fails says why; the others go on
            traceback.print_exc()
            row["skipped"] = f"{version} failed: {type(exc).__name__}: {exc}"
        else:
            row["wall_s"] = round(time.perf_counter() - start, 1)
            row["model_dir"] = str(out)
            row["details"] = {"inc_version": version, **details}
        rows.append(row)
        (args.out / "rows.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        print(f"[inc] {method}: {row.get('skipped', 'done')}", file=sys.stderr)


if __name__ == "__main__":
    main()
