# streamrec worker image (CPU). The scorer issue adds a CUDA variant.
FROM python:3.11-slim
WORKDIR /app
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY streamrec ./streamrec
COPY topics ./topics
# torch first, CPU build, so nothing later pulls CUDA wheels.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir .
ENTRYPOINT ["streamrec"]
CMD ["worker"]
