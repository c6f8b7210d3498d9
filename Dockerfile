# syntax=docker/dockerfile:1
# The gpu-aiops agent image: `aiops run --config /etc/aiops/config.yaml` by default (the Helm chart
# in helm/gpu-aiops mounts that file), any other aiops command with arguments, e.g. the chart's
# training CronJob runs `aiops train ...`.
#
#   docker build -t gpu-aiops:0.1.0 .
#
# Two stages: the builder installs the package and its exact pins into a virtual environment;
# the final image copies only that environment onto the same base, and runs as user 10001 with
# nothing to write but /var/lib/aiops and /tmp (the chart mounts a read-only root filesystem).
# Base images are pinned by tag; pin them by digest too (python:3.11-slim-bookworm@sha256:...)
# for byte-identical rebuilds.

FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The pins first, so a code change does not re-resolve them in the layer cache.
COPY constraints.txt pyproject.toml README.md ./
COPY aiops ./aiops
COPY forecasters ./forecasters
COPY policies ./policies
COPY simulations ./simulations
# constraints.txt pins torch to a version whose CPU wheel the PyTorch index serves as
# <version>+cpu, which pip prefers over PyPI's CUDA build: the agent's image stays gigabytes
# lighter. The training CronJob on a GPU node needs the CUDA build: build that image with
# --build-arg TORCH_INDEX=https://pypi.org/simple (PyPI's Linux torch wheel is the CUDA one) and
# set the chart's training.image to it.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --extra-index-url "$TORCH_INDEX" -c constraints.txt . \
 && pip check \
 && aiops --version

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="gpu-aiops" \
      org.opencontainers.image.description="Predictive GPU autoscaler and AIOps agent for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 aiops \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin aiops \
 && mkdir -p /var/lib/aiops/models /etc/aiops \
 && chown -R 10001:10001 /var/lib/aiops
COPY --from=builder /opt/venv /opt/venv
# HOME and MPLCONFIGDIR on /tmp: torch and matplotlib write caches there, not to the read-only root.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    AIOPS_MODEL_REGISTRY=/var/lib/aiops/models
WORKDIR /var/lib/aiops
USER 10001:10001
EXPOSE 8080
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz.
ENTRYPOINT ["aiops"]
CMD ["run", "--config", "/etc/aiops/config.yaml"]
