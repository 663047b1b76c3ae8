# ociregistry: one container, SQLite and the local filesystem under /data.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OCIREGISTRY_HOST=0.0.0.0 \
    OCIREGISTRY_PORT=5000 \
    OCIREGISTRY_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir ".[postgres]"

VOLUME ["/data"]
EXPOSE 5000
ENTRYPOINT ["ociregistry"]
CMD ["serve"]
