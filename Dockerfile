# The labs for students without Linux (Docker Desktop on macOS or Windows, GitHub Codespaces):
# Debian, what tcplab needs, and a venv with tcplab on PATH.  The labs run natively inside a
# privileged container, with the checkout mounted at /lab:
#   docker build -t tcplab .
#   docker run --rm --privileged --network none -v "$PWD:/lab" tcplab pytest labs/
# (--privileged: the labs build network namespaces.  Without it, tcplab says so in one line.
#  --network none: the labs need no network but the one they build.)
FROM debian:bookworm-slim

# Empty on a user's machine; a build behind a TLS-intercepting proxy passes its CA bundle here.
ARG PIP_CERT=

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv ca-certificates nftables libpcap0.8 tcpdump iproute2 socat netcat-openbsd curl \
      bubblewrap util-linux \
 && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md /opt/tcplab/
COPY tcplab /opt/tcplab/tcplab
COPY fixtures /opt/tcplab/fixtures
RUN python3 -m venv /opt/venv \
 && PIP_CERT="$PIP_CERT" /opt/venv/bin/pip install --no-cache-dir /opt/tcplab \
 && rm -rf /opt/tcplab

ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1
WORKDIR /lab
CMD ["pytest", "labs/"]
