# The image for web, relay, workers, beat and Flower (see docker-compose.yml).
# .dockerignore keeps .git, .venv, var/ (local databases, flower-auth) and caches out of it.
FROM python:3.11.14-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=selfos.settings.production
# A fixed uid and gid, the same in every build, so volumes and host files can be owned to match.
# Its home is var/, the one directory it may write.
RUN groupadd --system --gid 10001 selfos \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app/var --no-create-home \
       --shell /usr/sbin/nologin selfos
WORKDIR /app
COPY requirements/ requirements/
# A hashed lock: the same files as in development, or nothing. torch is its CPU build
# (2.13.0+cpu), which PyTorch's own index serves; PyPI's 2.13.0 is a multi-GB CUDA build.
RUN pip install --no-cache-dir --require-hashes \
    --extra-index-url https://download.pytorch.org/whl/cpu -r requirements/production.txt
# The code and static files stay root's and read-only to the app: a compromised process cannot
# rewrite what it runs.
COPY . .
# Static files, and the ONNX export of the embedding model into var/models (MEMORY_MODEL_CACHE)
# so no worker exports it at start. Then var/ goes to the app user: the model cache and
# beat's schedule (var/celerybeat-schedule) live there.
RUN mkdir -p var \
    && DJANGO_SECRET_KEY=build DATABASE_URL=postgres://x/x REDIS_URL=redis://x sh -c \
       "python manage.py collectstatic --noinput && python manage.py memory prepare" \
    && chown -R 10001:10001 var
USER 10001:10001
EXPOSE 8000
CMD ["gunicorn", "selfos.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2"]
