#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Lists the services an Asterism server offers, through gRPC server reflection (what
grpcurl, Postman and evans do), with the methods of Asterism's own service.

    python list_services.py --addr 127.0.0.1:50051

Needs no generated stubs: the descriptors come from the server.
"""

import argparse
import sys

import grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from google.protobuf.descriptor_pool import DescriptorPool


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:50051")
    args = parser.parse_args()
    with grpc.insecure_channel(args.addr) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(database.get_services())
        for name in services:
            print(name)
        if "asterism.v1.Asterism" not in services:
            print("asterism.v1.Asterism is not offered", file=sys.stderr)
            return 1
        pool = DescriptorPool(database)
        service = pool.FindServiceByName("asterism.v1.Asterism")
        print("asterism.v1.Asterism methods:", ", ".join(m.name for m in service.methods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
