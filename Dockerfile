# ociregistry: a hardened image of the registry, built with no network inside the build.
#
# Build it with scripts/build-image, which first runs `pip wheel` outside (into
# build/image/wheels/, the only part of the context this file reads) and then `docker build`:
#
#   scripts/build-image -t ociregistry                                  # on python:3.11-slim
#   scripts/build-image -t ociregistry --build-arg BASE=my-mirror/python:3.11-slim
#
# BASE must have python3 (the Python the wheels were built for) and useradd; the offline tests
# use a Debian bookworm made with debootstrap. Run it with a read-only root:
#
#   docker run --read-only --tmpfs /tmp -v regdata:/data -p 5000:5000 ociregistry
#
# Both stages start from BASE so the virtual environment's python3 link resolves in the final
# stage. Nothing is compiled: the wheels are binary, pip runs from its own wheel, and neither pip
# nor the wheels reach the final stage.

ARG BASE=python:3.11-slim

FROM ${BASE} AS install
# The Python the wheels were built for (scripts/build-image passes it): a clear failure here,
# instead of pip's "no matching distribution", when BASE carries another Python.
ARG PYTHON_VERSION=3.11
RUN python3 -c "import sys; v = '%d.%d' % sys.version_info[:2]; \
    sys.exit(0 if v == '${PYTHON_VERSION}' else \
    f'the base image has Python {v}; the wheels were built for ${PYTHON_VERSION}')"
# Dependencies first, in a layer of their own: it stays cached while only the registry changes.
# pip runs from its wheel (python3 pip-X.whl/pip), so no pip is installed anywhere.
COPY build/image/wheels/pip/ /wheels/pip/
COPY build/image/wheels/deps/ /wheels/deps/
RUN python3 -m venv --without-pip /opt/ociregistry \
    && /opt/ociregistry/bin/python3 "$(echo /wheels/pip/pip-*.whl)/pip" install \
        --no-index --no-deps --no-cache-dir --disable-pip-version-check --quiet /wheels/deps/*.whl
COPY build/image/wheels/app/ /wheels/app/
RUN /opt/ociregistry/bin/python3 "$(echo /wheels/pip/pip-*.whl)/pip" install \
        --no-index --no-deps --no-cache-dir --disable-pip-version-check --quiet /wheels/app/*.whl \
    && /opt/ociregistry/bin/python3 "$(echo /wheels/pip/pip-*.whl)/pip" check \
        --disable-pip-version-check

FROM ${BASE}
# A fixed uid/gid, so volumes and Kubernetes' runAsUser/fsGroup can name it. The data folder
# also belongs to group 0, so `docker run --user ANY_UID:0` (OpenShift's arbitrary uids) works.
ARG UID=10001
RUN groupadd --system --gid "${UID}" ociregistry \
    && useradd --system --uid "${UID}" --gid "${UID}" --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin ociregistry \
    && mkdir -p /data \
    && chown "${UID}:0" /data \
    && chmod 0770 /data

# The root file system may be read-only: no bytecode is written at run time (pip compiled it at
# install), temporary files go to /tmp (a tmpfs), everything else to the /data volume.
ENV PATH=/opt/ociregistry/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    HOME=/data \
    OCIREGISTRY_HOST=0.0.0.0 \
    OCIREGISTRY_PORT=5000 \
    OCIREGISTRY_DATA_DIR=/data

USER ${UID}:${UID}
WORKDIR /data
VOLUME ["/data"]
EXPOSE 5000

# Liveness with the image's own Python: no curl or wget in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('OCIREGISTRY_PORT', '5000'), timeout=4)"]

# The supervisor (ops/supervisor.py) stops the workers gracefully on SIGTERM and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ociregistry"]
CMD ["serve"]

# Last, so that a change of the registry rebuilds one step of this stage: every step above is
# a layer the cache keeps (each costs a full copy of the tree on the vfs storage driver).
COPY --from=install /opt/ociregistry /opt/ociregistry
