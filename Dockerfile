# The llmpulse worker image (CPU). Build: docker build -t llmpulse .
FROM python:3.11-slim
WORKDIR /app
RUN pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY ingest ingest
COPY processors processors
COPY detectors detectors
COPY storage storage
COPY alerting alerting
COPY llmpulse llmpulse
RUN pip install --no-cache-dir .
ENV LLMPULSE_HOME=/data LLMPULSE_SQL_BIND=0.0.0.0
VOLUME /data
ENTRYPOINT ["llmpulse"]
CMD ["worker"]
