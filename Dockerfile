# The CRM service image: API, workers and scheduler (`crm up`), or one role per container
# (`crm worker`, `crm scheduler`) when CRM_REDIS_URL and a PostgreSQL CRM_DATABASE_URL are set.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY crm ./crm
COPY bot ./bot
COPY channels ./channels
COPY telegram_transport ./telegram_transport
COPY agents ./agents
COPY miniapp ./miniapp
COPY sandbox ./sandbox
COPY migrations ./migrations
COPY locales ./locales
RUN pip install . && useradd --create-home crm && mkdir -p /app/data && chown crm /app/data

USER crm
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["crm", "up", "--host", "0.0.0.0", "--port", "8000"]
