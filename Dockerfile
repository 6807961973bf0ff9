# ticketflow: one image runs every Kubeflow Pipelines component and the KServe predictor.
#   docker build -t ticketflow:dev --build-arg GIT_COMMIT="$(git rev-parse HEAD)" .
# The default command serves the model; KFP replaces command and args for each component.
#
# BASE_IMAGE      any Debian-like image with Python 3.11 and its venv module (air-gapped mirrors welcome).
# PIP_CERT        path, inside the build, of a CA bundle for pip (TLS-intercepting proxies); mount it at build time.
# TORCH_INDEX_URL where torch==2.13.0 comes from: PyTorch's CPU wheel index by default (a few hundred MB, where
#                 the default index's Linux build pulls GBs of CUDA); empty means the configured package index.
# GIT_COMMIT      recorded as TICKETFLOW_GIT_COMMIT (MLflow runs log it).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG PIP_CERT=
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# No apt: the base image brings Python; everything else comes from pinned wheels. A venv works the same on
# python:3.11-slim and on a plain Debian base (whose system Python refuses pip installs, PEP 668).
RUN python3 -m venv "$VIRTUAL_ENV"

# Dependencies before code, so a code change reuses this (large) layer: the lock (`make lock`), as `make install`
# installs it. torch's CPU build first, from its own index; then requirements.txt, every package pinned (torch==2.13.0
# among them, which the CPU build satisfies; none of the CUDA packages of torch's PyPI build). pip reads PIP_CERT from
# the environment (build arguments are environment variables of RUN steps; empty means pip's default trust store).
# torch alone from its index (--no-deps): its dependencies are pinned in the lock and come from the package index,
# so a local or mirrored torch index needs only the torch wheel (pip check verifies the set).
COPY requirements.txt /tmp/requirements/
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --no-cache-dir --no-deps --index-url "$TORCH_INDEX_URL" torch==2.13.0; \
    else \
        pip install --no-cache-dir torch==2.13.0; \
    fi \
    && pip install --no-cache-dir -r /tmp/requirements/requirements.txt \
    && pip check \
    && rm -rf /tmp/requirements

# A numeric non-root user (Kubernetes can verify runAsNonRoot only for numeric users); the InferenceService
# runs as the same uid/gid. /var/lib/ticketflow holds the state (prediction log; the PVC mounts there).
RUN groupadd --system --gid 10001 ticketflow \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --create-home --home-dir /home/ticketflow \
        --shell /usr/sbin/nologin ticketflow \
    && mkdir -p /var/lib/ticketflow \
    && chown 10001:10001 /var/lib/ticketflow

# The project itself, installed (no PYTHONPATH): its dependencies are already in from the lock, and so is its build
# backend (setuptools, locked), so the build needs nothing more from the index (--no-build-isolation).
WORKDIR /app
COPY pyproject.toml README.md /app/
COPY components/ /app/components/
COPY pipelines/ /app/pipelines/
COPY serving/ /app/serving/
COPY monitoring/ /app/monitoring/
COPY data/ /app/data/
RUN pip install --no-cache-dir --no-deps --no-build-isolation /app \
    && pip check \
    && rm -rf /app/build /app/*.egg-info

# The cluster profile of components/config.py (state in /var/lib/ticketflow, the services of manifests/base):
# Kubeflow runs pipeline pods in its own namespace, out of reach of ConfigMaps and Secrets in the ticketflow namespace, so the image
# selects it (pipeline parameters and pod env override single values). The addresses live in config.py only.
ARG GIT_COMMIT=unknown
# GIT_PYTHON_REFRESH: the image has no git; MLflow's GitPython would print a "Bad git executable" banner on every run.
ENV TICKETFLOW_PROFILE=cluster \
    TICKETFLOW_GIT_COMMIT=${GIT_COMMIT} \
    GIT_PYTHON_REFRESH=quiet

USER 10001:10001
EXPOSE 8080
CMD ["ticketflow", "serve", "--host", "0.0.0.0", "--port", "8080"]
