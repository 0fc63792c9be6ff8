#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Finds the objects most like a given one on an Asterism server, with their classes and
what sets each apart, then what the object is likely to be and what is unusual tonight.

    python find_similar.py --addr 127.0.0.1:50051 1013184 -k 5

Run ./generate.sh first (it writes the stubs under asterism/v1/).
"""

import argparse
import sys

import grpc

from asterism.v1 import asterism_pb2 as pb
from asterism.v1 import asterism_pb2_grpc as rpc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("object_id")
    parser.add_argument("--addr", default="127.0.0.1:50051")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline per call, s")
    args = parser.parse_args()

    with grpc.insecure_channel(args.addr) as channel:
        client = rpc.AsterismStub(channel)
        try:
            answer = client.FindSimilar(
                pb.FindSimilarRequest(object_id=args.object_id, k=args.k, explain=True),
                timeout=args.timeout,
            )
        except grpc.RpcError as e:
            print(f"FindSimilar failed: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
        print(f"objects like {args.object_id}:")
        for rank, n in enumerate(answer.neighbours, 1):
            apart = ", ".join(c.feature for c in n.explanation.apart[:2])
            klass = n.class_name if n.HasField("class_name") else "-"
            print(
                f"{rank:>3}  {n.object_id:<22} distance {n.distance:7.3f}  "
                f"{klass:<10} {n.detections:>4} detections  (differs most in {apart})"
            )

        c = client.Classify(pb.ClassifyRequest(object_id=args.object_id), timeout=args.timeout)
        if c.HasField("class_name"):
            print(f"{args.object_id} is likely {c.class_name} "
                  f"(p = {c.confidence:.2f}, by {c.method} of {len(c.voters)} neighbours)")
        else:
            print(f"{args.object_id}: no labelled neighbours to vote")

        top = client.TopAnomalies(pb.TopAnomaliesRequest(top=3), timeout=args.timeout)
        print("most unusual:", ", ".join(f"{a.object_id} ({a.score:.2f})" for a in top.anomalies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
