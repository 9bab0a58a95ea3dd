# The one image of Backend Secrets: `backend-secrets serve` (the API) or `backend-secrets worker`.
# Build stage: only the project's own wheel; the runtime stage installs it with its dependencies.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY service ./service
COPY worker ./worker
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl && rm -rf /wheels
# A fixed, unprivileged user. Secret files mounted by compose keep their host owner and mode,
# so give them to this uid (README, "Docker").
RUN groupadd --system --gid 10001 backend-secrets \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin backend-secrets \
    && mkdir -p /data && chown backend-secrets:backend-secrets /data && chmod 0700 /data
USER 10001:10001
WORKDIR /data
ENV BACKEND_SECRETS_DB=/data/backend-secrets.db \
    BACKEND_SECRETS_HOST=0.0.0.0
VOLUME ["/data"]
EXPOSE 8080
CMD ["backend-secrets", "serve"]
