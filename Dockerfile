# One image for the API and the Celery workers (docker-compose.yml runs it as api,
# migrate, worker-cpu and, built with a CUDA torch, worker-gpu).
#
#   docker build -t modelpress:cpu .
#   docker build -t modelpress:cuda --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# Works with the classic builder and BuildKit alike (no heredocs, no cache mounts).
FROM python:3.11-slim

# torch comes first, from its own index: from PyPI, a bare torch requirement on Linux
# is the multi-GB CUDA build. The CPU index keeps the api/cpu-worker image small; point
# TORCH_INDEX_URL at a CUDA index (cu126, cu128, ...) for the gpu worker.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Extras of pyproject.toml to install besides the API's own dependencies.
ARG EXTRAS=worker

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    MODELPRESS_HOME=/var/lib/modelpress \
    HF_HOME=/var/lib/modelpress/hf

RUN groupadd --system --gid 10001 modelpress \
 && useradd --system --uid 10001 --gid modelpress --home-dir /var/lib/modelpress \
        --create-home --shell /usr/sbin/nologin modelpress

RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

WORKDIR /opt/modelpress

# The dependencies, from pyproject.toml alone, so that a code change does not reinstall
# them. (torch is already there and satisfies the worker extra's range.)
COPY pyproject.toml ./
RUN python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; reqs = list(p['dependencies']); [reqs.extend(r for r in p['optional-dependencies'][e] if not r.startswith(p['name'] + '[')) for e in sys.argv[1].split(',') if e]; print('\n'.join(reqs))" "${EXTRAS}" > /tmp/requirements.txt \
 && pip install --only-binary=numpy -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The code. Installed editable on purpose: `modelpress migrate` reads alembic.ini and
# migrations/ from beside the app package (app/migrate.py), which a regular install
# into site-packages would leave behind.
COPY alembic.ini README.m[d] ./
COPY migrations ./migrations
COPY workers ./workers
COPY app ./app
# The Python client, for `modelpress models|datasets|jobs|artifacts` against a service.
COPY clients/python ./clients/python
RUN pip install --no-deps -e . ./clients/python \
 && python -c "import app.cli, workers.celery_app, modelpress_client"

USER modelpress
EXPOSE 8000

# Liveness only: /readyz (database, broker, storage) is what compose's api check uses.
# python, not curl: the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('MODELPRESS_API_PORT', '8000'), timeout=4)" || exit 1

CMD ["modelpress", "api", "--host", "0.0.0.0"]
