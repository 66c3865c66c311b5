#!/usr/bin/env bash
# Runs the attesta enclave on a Nitro-enabled parent instance and the proxy beside it.
#
#   deploy/nitro/run.sh attesta.eif [GATEWAY_HOST:PORT]
#
# Needs: nitro-cli with the allocator configured (allocator.yaml: the enclave's memory and
# CPUs must be reserved first), the attesta binary on the parent (same release), and a
# trustless IPFS gateway reachable from the parent (default 127.0.0.1:8080, e.g. kubo).
# Environment: ENCLAVE_CPUS (2), ENCLAVE_MEMORY_MIB (6144), ENCLAVE_CID (16),
# API_LISTEN (0.0.0.0:8443), DEBUG=1 for --debug-mode (PCRs read as zero: never publish).
set -euo pipefail
eif=${1:?usage: run.sh FILE.eif [GATEWAY_HOST:PORT]}
gateway=${2:-127.0.0.1:8080}
cpus=${ENCLAVE_CPUS:-2}
memory=${ENCLAVE_MEMORY_MIB:-6144}
cid=${ENCLAVE_CID:-16}
listen=${API_LISTEN:-0.0.0.0:8443}

echo "expected measurements of $eif:"
attesta measure eif "$eif"

debug=()
if [ "${DEBUG:-0}" = 1 ]; then
  debug=(--debug-mode)
  echo "WARNING: debug mode: the enclave's PCRs read as zero and its console is visible" >&2
fi
nitro-cli run-enclave --eif-path "$eif" --cpu-count "$cpus" --memory "$memory" \
  --enclave-cid "$cid" "${debug[@]}"

# The proxy is stateless: restarting it (or this script's last line) leaves the enclave,
# its keys and its loaded models alone.
exec attesta proxy \
  --inbound "$listen=vsock:$cid:8000" \
  --outbound "vsock:8081=$gateway" \
  --max-connections 1024 --connect-timeout 5s --idle-timeout 120s
