#!/usr/bin/env bash
# Generates the Python stubs from the same proto the server is built from:
# asterism/v1/asterism_pb2.py (messages) and asterism_pb2_grpc.py (the client stub).
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
"$python" -m grpc_tools.protoc -I ../../proto \
  --python_out=. --grpc_python_out=. --pyi_out=. \
  asterism/v1/asterism.proto
echo "generated $(ls asterism/v1/*.py* | tr '\n' ' ')"
