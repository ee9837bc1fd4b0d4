# ctxroute REST API. Build: docker build -t ctxroute .   Run: see docker-compose.yml
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
    CTXROUTE_HOME=/data CTXROUTE_HOST=0.0.0.0 CTXROUTE_PORT=8000
WORKDIR /app
# CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY ctxroute ./ctxroute
RUN pip install . && useradd --create-home --uid 10001 ctxroute && mkdir -p /data && chown ctxroute /data
USER ctxroute
# prepare the query encoder's int8-MatMul copy now (~2 s) rather than on the first request
ENV CTXROUTE_CACHE_DIR=/home/ctxroute/.cache/ctxroute
RUN python -c "from ctxroute.retrievers.onnx_embedder import OnnxMiniLMEmbedder as E; print('query model:', E().load().variant)"
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)" || exit 1
# Binding 0.0.0.0 needs API keys (CTXROUTE_ADMIN_KEY and/or CTXROUTE_API_KEYS): the server refuses otherwise.
CMD ["ctxroute", "serve"]
