# zoo-replicate runtime image: the harness, its pinned dependencies and `replicate` as entrypoint.
#
#   # CUDA (GPU nodes; also runs on CPU):
#   docker build -t zoo-replicate:0.1.0 --build-arg GIT_COMMIT=$(git rev-parse HEAD) .
#   # CPU-only, ~5 GB smaller:
#   docker build -t zoo-replicate:0.1.0-cpu --build-arg TORCH_VARIANT=cpu \
#     --build-arg GIT_COMMIT=$(git rev-parse HEAD) .
#
# GIT_COMMIT: .git is not in the image (.dockerignore), so the commit each result was produced
# by is recorded from ZOO_GIT_COMMIT (replicate/runner/environment.py); without it, none is.
# CUDA: the PyPI torch/torchvision wheels bundle the CUDA runtime and cuDNN (nvidia-* wheels);
# the node supplies only the driver (NVIDIA device plugin / GKE GPU driver installer), so a slim
# Python base is CUDA-capable. EXTRAS defaults to tensorflow because the smoke and nightly suites
# run yolov3's TensorFlow build too (and TPU profiles run only TensorFlow); --build-arg EXTRAS=
# builds a torch-only image, whose TensorFlow jobs then fail as environment errors.
# Nothing secret is baked in: the store URL and the W&B key arrive as env from Kubernetes Secrets.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
# cuda: torch from PyPI (CUDA build); cpu: torch from PyTorch's CPU wheel index.
ARG TORCH_VARIANT=cuda
ARG EXTRAS="tensorflow"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv && /opt/venv/bin/pip install "setuptools>=68"
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (their layer is reused while only the code changes). The pins are read from
# pyproject.toml so the image cannot drift from the project; ray[default] adds the dashboard and
# job-submission server a KubeRay RayJob needs (beside ray[train]), at the same pinned Ray version.
COPY pyproject.toml ./
RUN python - <<'PY' > /tmp/requirements.txt
import os, re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = list(project["dependencies"])
for extra in filter(None, os.environ.get("EXTRAS", "").split(",")):
    deps += project["optional-dependencies"][extra]
deps = [re.sub(r"^ray\[train\]==", "ray[default,train]==", d.split("#")[0].strip()) for d in deps]
print("\n".join(deps))
PY
RUN set -eux; \
    if [ "$TORCH_VARIANT" = "cpu" ]; then \
      pip install --index-url https://download.pytorch.org/whl/cpu \
        $(grep -E '^(torch|torchvision)==' /tmp/requirements.txt); \
    fi; \
    pip install -r /tmp/requirements.txt

FROM ${PYTHON_IMAGE} AS runtime
# bash: KubeRay wraps `ray start` in a bash command; wget: KubeRay's readiness/liveness probes.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends bash wget ca-certificates libgl1 libglib2.0-0; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --gid 1000 zoo; \
    useradd --uid 1000 --gid 1000 --create-home --home-dir /home/zoo --shell /bin/bash zoo
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root . /app
# Editable: the package finds conf/ and charts/ beside itself (replicate/config/compose.py); the
# lab's zoo (models/) is installed beside it, found through its entry point (replicate/zoo/installed.py).
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation -e /app -e /app/models \
 && /opt/venv/bin/replicate --help > /dev/null
# A login shell (KubeRay < 1.4, or ENABLE_LOGIN_SHELL=true, starts Ray with `bash -lc`) rebuilds
# PATH in /etc/profile without /opt/venv/bin: put it back there for `ray` and `replicate`.
RUN printf 'export PATH=/opt/venv/bin:$PATH\n' > /etc/profile.d/zoo-replicate.sh
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/home/zoo \
    ZOO_CONF_DIR=/app/conf \
    ZOO_CHART_DIR=/app/charts/zoo-replicate \
    ZOO_DATA_ROOT=/data \
    ZOO_DARKNET_CFG_DIR=/data/darknet
# Declared last: a new commit invalidates no layer before this one.
ARG GIT_COMMIT=""
ENV ZOO_GIT_COMMIT=$GIT_COMMIT
# The chart runs every container with UID 1000 and a read-only root (/tmp, HOME are volumes).
USER 1000:1000
ENTRYPOINT ["replicate"]
CMD ["--help"]
