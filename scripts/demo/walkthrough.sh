#!/usr/bin/env bash
# Runs the README's curl walkthrough exactly as written: the ```bash block and then the
# ```python block under "## Walkthrough with curl", so the two cannot drift apart.
# Start the service first (scripts/serve.sh); run this from the repository root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
extract() { # language
    python3 - "$1" <<'PY'
import re, sys
text = open("README.md", encoding="utf-8").read()
section = text.split("## Walkthrough with curl", 1)[1].split("\n## ", 1)[0]
print(re.search(r"```%s\n(.*?)```" % sys.argv[1], section, re.S).group(1))
PY
}
bash -euo pipefail -c "$(extract bash)"
. .venv/bin/activate
python3 -c "$(extract python)"
