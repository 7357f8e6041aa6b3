# The retriever service image: `retriever serve` on port 8000; also runs `indexer ingest` (see docker-compose.yml).
FROM python:3.11-slim

# CPU-only torch wheels: PyPI's default torch pulls gigabytes of CUDA libraries. For a GPU image, build with
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu124
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/cache/huggingface \
    TOKENIZERS_PARALLELISM=false \
    TRANSFORMERS_VERBOSITY=error

WORKDIR /app
COPY pyproject.toml README.md ./
COPY indexer ./indexer
COPY retriever ./retriever
COPY configs ./configs
RUN pip install --extra-index-url "${TORCH_INDEX_URL}" ".[service]"

# Unprivileged user; /cache holds downloaded models (a volume), /models local model folders (read-only mount).
RUN useradd --create-home --uid 1000 app && mkdir -p /cache /models /docs && chown app /cache
USER app

EXPOSE 8000
# Ready = model loaded and collection reachable (the readiness route needs no API key).
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["retriever", "serve", "--host", "0.0.0.0", "--port", "8000"]
