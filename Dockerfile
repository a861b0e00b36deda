# streamrec image: workers use the CPU build of torch; the scorer service builds
# it with TORCH_INDEX pointing at a CUDA wheel index (see docker-compose.yml).
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /app
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY streamrec ./streamrec
COPY topics ./topics
# torch first, from the chosen index, so nothing later pulls another build. The core's
# compiled kernels are compiled into the image, so no container compiles them at start.
RUN pip install --no-cache-dir torch==2.13.0 --index-url "$TORCH_INDEX" \
 && pip install --no-cache-dir . \
 && python -c 'from streamrec.core.kernels import warm; warm()'
ENTRYPOINT ["streamrec"]
CMD ["worker"]
