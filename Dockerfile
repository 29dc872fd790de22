# The libmooncake runtime image: the store's master (`mooncake_master`, the entrypoint) and
# the `mooncake` Python package (mooncake.engine, mooncake.store, the console scripts) in a
# venv at /opt/mooncake, on Debian 12 slim, run as an unprivileged user.
#
#   bash ci/build-wheel.sh                 # dist/*.whl: the package and its alias wheels
#   docker build -t libmooncake .          # the context is dist/*.whl only (.dockerignore)
#   docker run --rm --network host libmooncake --rpc_port=50051 --metrics_port=9003
#
# Two stages so that what only the install needs (python3-venv, pip, setuptools, the wheel
# files) stays out of the result. docs/CONTAINER.md has the details and the measured size.

# ---- install: a venv with the wheels, nothing from the network but Debian's packages ----
FROM debian:bookworm-slim AS install
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY dist/ /tmp/dist/
# --no-index: the package needs nothing but its alias wheels, which are in dist/ too. pip and
# setuptools leave the venv afterwards: the runtime installs nothing.
RUN python3 -m venv /opt/mooncake \
 && /opt/mooncake/bin/pip install --no-index --no-cache-dir --find-links /tmp/dist /tmp/dist/*.whl \
 && /opt/mooncake/bin/pip uninstall -y --no-cache-dir pip setuptools \
 && /opt/mooncake/bin/python -c "import mooncake.engine, mooncake.store" \
 && rm -rf /tmp/dist /root/.cache

# ---- runtime: python3 (the console scripts and ctypes need the standard library) + the venv ----
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
 && useradd --system --user-group --create-home --home-dir /home/mooncake --shell /usr/sbin/nologin mooncake
# The venv's interpreter is a link to /usr/bin/python3, which this stage has at the same path.
COPY --from=install /opt/mooncake /opt/mooncake
ENV PATH=/opt/mooncake/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1
USER mooncake
WORKDIR /home/mooncake
# The master's defaults: RPC (--rpc_port) and HTTP metrics (--metrics_port). The HTTP metadata
# server (--enable_http_metadata_server, --http_metadata_server_port, 8080) is off by default.
EXPOSE 50051 9003
ENTRYPOINT ["mooncake_master"]
