# The wabridge image: one package, one CLI. docker-compose.yml runs it as provision, webhook,
# bridge and worker (`wabridge <command>`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 wabridge \
    && useradd --system --uid 10001 --gid wabridge --home-dir /var/lib/wabridge --shell /usr/sbin/nologin wabridge

WORKDIR /src
COPY pyproject.toml README.md ./
COPY wabridge ./wabridge
RUN pip install . \
    && rm -rf /src \
    && mkdir -p /var/lib/wabridge \
    && chown wabridge:wabridge /var/lib/wabridge

# Worker state (Faust datadir) lives under WABRIDGE_STATE_DIR; the working directory has no
# .wabridge/dev.env, so only the environment configures the processes.
ENV WABRIDGE_STATE_DIR=/var/lib/wabridge
WORKDIR /var/lib/wabridge
USER wabridge

# webhook, worker (Faust web), bridge (/healthz and /metrics)
EXPOSE 3009 3005 3011
ENTRYPOINT ["wabridge"]
CMD ["--help"]
