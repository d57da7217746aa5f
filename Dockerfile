# The wabridge image: one package, one CLI. docker-compose.yml runs it as provision, webhook,
# bridge and worker (`wabridge <command>`).
#
# Two stages: the first installs exactly requirements.lock (every version pinned, every file
# checked against its hash) and then the project into a virtualenv; the second copies that
# virtualenv onto a clean slim image, without pip's caches or the sources. Regenerate the lock
# with `make lock` after changing pyproject.toml's dependencies.

FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/wabridge
WORKDIR /src
COPY requirements.lock ./
RUN /opt/wabridge/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY wabridge ./wabridge
# The project alone: its dependencies are the locked ones above.
RUN /opt/wabridge/bin/pip install --no-deps .


FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/wabridge/bin:$PATH

RUN groupadd --system --gid 10001 wabridge \
    && useradd --system --uid 10001 --gid wabridge --home-dir /var/lib/wabridge --shell /usr/sbin/nologin wabridge \
    && mkdir -p /var/lib/wabridge \
    && chown wabridge:wabridge /var/lib/wabridge
COPY --from=build /opt/wabridge /opt/wabridge

# Worker state (Faust datadir) lives under WABRIDGE_STATE_DIR; the working directory has no
# .wabridge/dev.env, so only the environment configures the processes.
ENV WABRIDGE_STATE_DIR=/var/lib/wabridge
WORKDIR /var/lib/wabridge
USER wabridge

# webhook (3009; its /healthz, /readyz, /metrics on 3010), worker (Faust web), bridge (/healthz, /metrics)
EXPOSE 3009 3010 3005 3011
# Asks the running process's /healthz on its own port (webhook 3010, bridge 3011, worker 3005);
# a one-shot command (provision, tenants ...) is healthy while it runs.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 CMD ["wabridge", "healthcheck"]
ENTRYPOINT ["wabridge"]
CMD ["--help"]
