#!/bin/sh
# Entry point inside the Nitro enclave (part of the measured image: PCR2).
# The enclave has no network: the API is served on vsock port 8000 (the parent's
# `attesta proxy --inbound` forwards clients to it) and model fetches leave through vsock to
# the parent (CID 3) port 8081, where `attesta proxy --outbound` forwards them to a gateway.
set -eu
# The gateway tunnel listens on 127.0.0.1 inside the enclave; the loopback starts down.
ip link set lo up
mkdir -p "$ATTESTA_DATA_DIR"
exec /usr/local/bin/attesta node \
  --tee nitro \
  --listen vsock:8000 \
  --gateway vsock:3:8081 \
  --store "$ATTESTA_DATA_DIR/models" \
  --store-max-bytes 2GiB \
  --cache-bytes 2GiB
