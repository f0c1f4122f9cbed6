"""A bare grpcio pipeline on pyliftbridge's schema, as a compare.py contender.

No client around it: one PublishAsync stream fed from a generator, at most
``--window`` requests awaiting their ack (a semaphore released as acks come
back), or one Subscribe stream read to the end. It shows what grpcio itself
costs for the same work.
"""

from __future__ import annotations

import os
import threading
import time

import grpc
from _common import parse_args, report

from pyliftbridge._pb import api_pb2

_POLICIES = {"leader": 0, "all": 1, "none": 2}


def main() -> None:
    args = parse_args(("publish", "consume"))
    with grpc.insecure_channel(args.brokers) as channel:
        if args.mode == "consume":
            subscribe = channel.unary_stream(
                "/proto.API/Subscribe",
                request_serializer=api_pb2.SubscribeRequest.SerializeToString,
                response_deserializer=api_pb2.Message.FromString,
            )
            request = api_pb2.SubscribeRequest(
                stream=args.stream, startPosition=api_pb2.StartPosition.EARLIEST
            )
            cpu0, t0 = time.process_time(), time.perf_counter()
            responses = subscribe(request)
            next(responses)  # the empty "subscription created" message
            for count, _ in enumerate(responses, 1):
                if count == args.messages:
                    break
            responses.cancel()
            report(args, "bare grpcio", time.perf_counter() - t0, time.process_time() - cpu0)
            return
        create = channel.unary_unary(
            "/proto.API/CreateStream",
            request_serializer=api_pb2.CreateStreamRequest.SerializeToString,
            response_deserializer=api_pb2.CreateStreamResponse.FromString,
        )
        try:
            create(
                api_pb2.CreateStreamRequest(
                    subject=args.stream,
                    name=args.stream,
                    partitions=args.partitions,
                    replicationFactor=1,
                ),
                timeout=10,
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        publish = channel.stream_stream(
            "/proto.API/PublishAsync",
            request_serializer=api_pb2.PublishRequest.SerializeToString,
            response_deserializer=api_pb2.PublishResponse.FromString,
        )
        value = os.urandom(args.size)
        window = threading.Semaphore(args.window)
        policy = _POLICIES[args.ack_policy]

        def requests():
            for i in range(args.messages):
                window.acquire()
                yield api_pb2.PublishRequest(
                    stream=args.stream,
                    value=value,
                    correlationId=str(i),
                    ackPolicy=policy,
                    expectedOffset=-1,
                )

        errors = 0
        cpu0, t0 = time.process_time(), time.perf_counter()
        responses = publish(requests())
        for acked, response in enumerate(responses, 1):
            window.release()
            if response.HasField("asyncError"):
                errors += 1
            if acked == args.messages:
                break
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        responses.cancel()
        report(args, "bare grpcio", seconds, cpu, errors=errors)


if __name__ == "__main__":
    main()
