#!/usr/bin/env bash
# The README's curl walkthrough, as one script (run it from the repository root while
# `scripts/serve.sh` runs). Keep the two in step.
set -euo pipefail
API=${API:-http://127.0.0.1:8000}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# 1. Upload the teacher (MiniLM-L6, from the `demo` extra) and the data.
python3 scripts/demo/pack_teacher.py minilm.tar.gz
MODEL=$(curl -sf -F file=@minilm.tar.gz -F name=minilm "$API/v1/models" | field '["id"]')
DATASET=$(curl -sf -F file=@scripts/demo/sst2-sample.jsonl -F name=sst2-sample \
  "$API/v1/datasets" | field '["id"]')
echo "model $MODEL, dataset $DATASET"

# 2. Submit a job: keep about half of the encoder.
JOB=$(curl -sf "$API/v1/jobs" -H 'Content-Type: application/json' \
  -H "Idempotency-Key: demo-$MODEL" -d @- <<JSON | field '["id"]'
{"task": "sequence-classification",
 "teacher": {"model_id": "$MODEL"},
 "dataset": {"dataset_id": "$DATASET"},
 "target": {"params_ratio": 0.5},
 "training": {"epochs": 3, "teacher_epochs": 3, "max_seq_length": 64}}
JSON
)
echo "job $JOB"

# 3. Poll it until it ends.
while :; do
  STATUS=$(curl -sf "$API/v1/jobs/$JOB" | tee job.json | field '["status"]')
  echo "$STATUS $(field '["phase"]' < job.json) $(field '["progress"]' < job.json)"
  case $STATUS in succeeded|failed|cancelled) break ;; esac
  sleep 5
done
curl -sf "$API/v1/jobs/$JOB" | python3 -m json.tool

# 4. Download the student and load it.
curl -sf -o student.tar.gz "$API/v1/jobs/$JOB/artifacts/model"
mkdir -p student && tar xzf student.tar.gz -C student
python3 - <<'PY'
from transformers import pipeline
classify = pipeline("text-classification", model="student")
print(classify("a gorgeous, witty, seductive movie."))
PY
