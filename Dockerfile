# syntax=docker/dockerfile:1
# The clockwork server in a container, built and started by the same make targets as on a
# developer's machine (`make install`, `make serve`). README.md, "Containers", says more.
#
#   CPU:   docker build -t clockwork .
#   CUDA:  docker build -t clockwork:cuda \
#            --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#   run:   docker run --init -p 8000:8000 -p 8001:8001 clockwork
#          (CUDA: add --gpus all; the host needs the NVIDIA driver and Container Toolkit)
#
# The CUDA variant differs only in where torch comes from: torch's CUDA wheels carry their CUDA
# libraries, and the host's driver comes in with --gpus, so one base image serves both.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# make runs the targets; bash and flock (scripts/run-once.sh) are in the base image already
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

# pyproject pins torch==2.13.0; from PyPI alone that is the multi-GB CUDA build, so the wheel
# index of the wanted build is added (its 2.13.0+cpu or +cuXXX satisfies the pin)
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_EXTRA_INDEX_URL=${TORCH_INDEX_URL} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# never root: the server, its worker and the install belong to an unprivileged user
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin clockwork \
    && mkdir /app && chown clockwork:clockwork /app
USER clockwork
WORKDIR /app

COPY --chown=clockwork:clockwork pyproject.toml setup.py mypyc_modules.txt Makefile README.md LICENSE ./
COPY --chown=clockwork:clockwork scripts/ scripts/
COPY --chown=clockwork:clockwork src/ src/
RUN make install

# the demo repository `make serve` uses without --repository, made by the code that serve runs,
# so that a container starts without building it (its models are profiled on the first start)
RUN .venv/bin/python -c "from clockwork.cli.serve_cmd import DEMO_REPOSITORY as R, \
ensure_demo_repository as make; make(R)"

# HTTP/REST (and /metrics), gRPC
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
    CMD [".venv/bin/python", "scripts/healthcheck.py"]
# The server's default address is loopback: inside a container that is unreachable through -p,
# so the image asks for every interface with an explicit flag. Give it a token (README).
# make forwards docker stop's SIGTERM to the server, which then stops cleanly.
ENTRYPOINT ["make", "serve"]
CMD ["SERVE_ARGS=--host 0.0.0.0"]
