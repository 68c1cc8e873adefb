"""GPU smoke check: a job with `accelerator: gpu` through `modelpress serve` on a CUDA
machine (run by scripts/gpu-smoke.sh on a lent GPU host; prints a JSON summary).

It checks the routing (gpu queue), the CUDA path of the engine (bf16 autocast) and that
the student loads and runs on the GPU. The model is a random BERT built here (the GPU
host reaches no model hub), so the accuracy says nothing about quality.
"""

from __future__ import annotations

import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.tiny import make_tiny_bert, make_tiny_dataset

API = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"


def main() -> None:
    work = Path(tempfile.mkdtemp())
    teacher = make_tiny_bert(work / "teacher", num_labels=None, num_layers=6, hidden=256)
    archive = work / "teacher.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for p in teacher.iterdir():
            tf.add(p, arcname=p.name)
    data = make_tiny_dataset(work / "data.jsonl", n=4000)

    import subprocess

    key = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "create", "--tenant", "gpu"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    http = httpx.Client(base_url=API, timeout=60, headers={"Authorization": f"Bearer {key}"})
    deadline = time.monotonic() + 120
    while True:
        try:
            if http.get("/readyz").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("service did not become ready")
        time.sleep(1)

    with open(archive, "rb") as f:
        model = http.post("/v1/models", files={"file": ("t.tar.gz", f)}).json()
    with open(data, "rb") as f:
        ds = http.post("/v1/datasets", files={"file": ("d.jsonl", f)}).json()
    t0 = time.monotonic()
    r = http.post(
        "/v1/jobs",
        json={
            "task": "sequence-classification",
            "teacher": {"model_id": model["id"]},
            "dataset": {"dataset_id": ds["id"]},
            "target": {"params_ratio": 0.5},
            "accelerator": "gpu",
            "training": {
                "epochs": 2,
                "teacher_epochs": 2,
                "batch_size": 64,
                "max_seq_length": 64,
                "learning_rate": 1e-4,
            },
        },
    )
    r.raise_for_status()
    job = r.json()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(2)
        job = http.get(f"/v1/jobs/{job['id']}").json()
    wall = time.monotonic() - t0

    summary: dict = {
        "job_status": job["status"],
        "queue": job["queue"],
        "wall_s": round(wall, 1),
        "error": job["error"],
        "metrics": job["metrics"],
    }
    if job["status"] == "succeeded":
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        content = http.get(f"/v1/jobs/{job['id']}/artifacts/model").content
        out = work / "student"
        with tarfile.open(fileobj=__import__("io").BytesIO(content), mode="r:gz") as tf:
            tf.extractall(out, filter="data")
        student = AutoModelForSequenceClassification.from_pretrained(out).cuda().eval()
        tok = AutoTokenizer.from_pretrained(out)
        batch = tok(["a good movie .", "an awful plot ."], return_tensors="pt").to("cuda")
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            logits = student(**batch).logits
        summary["student_on_cuda_bf16"] = {
            "logits_shape": list(logits.shape),
            "dtype": str(logits.dtype),
            "device": torch.cuda.get_device_name(0),
        }
    print(json.dumps(summary, indent=2))
    ok = (
        job["status"] == "succeeded"
        and job["queue"] == "gpu"
        and job["metrics"]["device"] == "cuda"
    )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
