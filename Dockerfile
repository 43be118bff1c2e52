# kcg in a container: Debian bookworm, the kernel build's packages, kcg.
#   docker build -t kcg .
#   docker run --rm -v "$PWD/outputs:/kcg/outputs" -v kcg-cache:/root/.cache/kcg \
#       kcg run --config configs/bpf-core.yaml --to build
FROM debian:bookworm

ENV DEBIAN_FRONTEND=noninteractive
# The same packages as `make setup`, plus Python's pip and CA certificates for pip.
# The apt lists are kept: the source stage runs `apt-get download linux-source-6.1`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential flex bison bc libelf-dev libssl-dev dwarves graphviz chromium \
      python3 python3-venv python3-pip cpio kmod rsync ca-certificates \
 && apt-get clean

WORKDIR /kcg
COPY . /kcg
# Debian's Python is externally managed (PEP 668): kcg goes into its own virtualenv.
RUN python3 -m venv /opt/kcg \
 && /opt/kcg/bin/pip install --no-cache-dir /kcg
ENV PATH=/opt/kcg/bin:$PATH

ENTRYPOINT ["kcg"]
CMD ["--help"]
