# The image for web, relay, workers, beat and Flower (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_SETTINGS_MODULE=selfos.settings.production
WORKDIR /app
COPY requirements/ requirements/
RUN pip install --no-cache-dir -r requirements/production.txt
COPY . .
RUN DJANGO_SECRET_KEY=build DATABASE_URL=postgres://x/x REDIS_URL=redis://x sh -c \
    "python manage.py collectstatic --noinput && python manage.py memory prepare"
EXPOSE 8000
CMD ["gunicorn", "selfos.wsgi", "--bind", "0.0.0.0:8000", "--workers", "2"]
