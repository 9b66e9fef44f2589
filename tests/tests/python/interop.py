"""A Python gRPC client (grpcio) against a running Sluice server.

Proves the proto works outside Rust: stubs generated from proto/sluice/v1/sluice.proto by
grpcio-tools (done by python_grpc.rs into a temp dir) create a stream, put records
(PutRecord and PutRecords), read them back (GetShardIterator, GetRecords), follow the
shard live (server-streaming Subscribe) and check the error mapping (NOT_FOUND with the
Kinesis reason in the `x-sluice-error` metadata).

Usage: interop.py ENDPOINT GENERATED_DIR. Prints one JSON line; exits non-zero on any
failed check. Every call has a deadline.
"""

import json
import sys
import time

DEADLINE_S = 10
STREAM = "py"


def main(endpoint, generated_dir):
    sys.path.insert(0, generated_dir)
    import grpc
    from sluice.v1 import sluice_pb2 as pb
    from sluice.v1 import sluice_pb2_grpc as rpc

    channel = grpc.insecure_channel(
        endpoint, options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    grpc.channel_ready_future(channel).result(timeout=DEADLINE_S)
    stub = rpc.SluiceStub(channel)

    stub.CreateStream(
        pb.CreateStreamRequest(stream_name=STREAM, shard_count=1), timeout=DEADLINE_S
    )
    wait_active(stub, pb)

    sequence_numbers = []
    for i in range(3):
        reply = stub.PutRecord(
            pb.PutRecordRequest(stream_name=STREAM, partition_key="pk", data=b"py%d" % i),
            timeout=DEADLINE_S,
        )
        assert reply.shard_id == "shardId-000000000000", reply
        sequence_numbers.append(reply.sequence_number)
    batch = stub.PutRecords(
        pb.PutRecordsRequest(
            stream_name=STREAM,
            records=[pb.PutRecordsRequestEntry(partition_key="pk", data=b"\xff\x00binary")],
        ),
        timeout=DEADLINE_S,
    )
    assert batch.failed_record_count == 0, batch
    sequence_numbers.append(batch.records[0].sequence_number)

    trim_horizon = pb.StartingPosition(type=pb.SHARD_ITERATOR_TYPE_TRIM_HORIZON)
    iterator = stub.GetShardIterator(
        pb.GetShardIteratorRequest(
            stream_name=STREAM,
            shard_id="shardId-000000000000",
            starting_position=trim_horizon,
        ),
        timeout=DEADLINE_S,
    ).shard_iterator
    got = stub.GetRecords(pb.GetRecordsRequest(shard_iterator=iterator), timeout=DEADLINE_S)
    expected = [b"py0", b"py1", b"py2", b"\xff\x00binary"]
    assert [r.data for r in got.records] == expected, got
    assert [r.sequence_number for r in got.records] == sequence_numbers, got
    assert all(r.partition_key == "pk" for r in got.records), got
    assert got.HasField("next_shard_iterator"), got

    subscribed = subscribe(stub, pb, trim_horizon, expected)
    check_not_found(stub, pb, grpc)
    channel.close()
    print(json.dumps({"ok": True, "sequence_numbers": sequence_numbers, "subscribed": subscribed}))


def wait_active(stub, pb):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        description = stub.DescribeStream(
            pb.DescribeStreamRequest(stream_name=STREAM), timeout=DEADLINE_S
        ).stream_description
        if description.stream_status == pb.STREAM_STATUS_ACTIVE:
            return
        time.sleep(0.05)
    raise AssertionError("stream did not become ACTIVE within 30 s")


def subscribe(stub, pb, start, expected):
    """Subscribes from the start, then puts one more record and sees it pushed live."""
    call = stub.Subscribe(
        pb.SubscribeRequest(
            stream_name=STREAM, shard_id="shardId-000000000000", starting_position=start
        ),
        timeout=30,
    )
    received = []
    live_sent = False
    for event in call:
        assert not event.child_shards, event
        assert event.continuation_sequence_number, event
        received.extend(r.data for r in event.records)
        if len(received) >= len(expected) and not live_sent:
            stub.PutRecord(
                pb.PutRecordRequest(stream_name=STREAM, partition_key="pk", data=b"live"),
                timeout=DEADLINE_S,
            )
            live_sent = True
        if len(received) >= len(expected) + 1:
            break
    call.cancel()
    assert received == expected + [b"live"], received
    return [r.decode("utf-8", "replace") for r in received]


def check_not_found(stub, pb, grpc):
    try:
        stub.DescribeStream(pb.DescribeStreamRequest(stream_name="nope"), timeout=DEADLINE_S)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND, error
        metadata = dict(error.trailing_metadata() or ()) | dict(error.initial_metadata() or ())
        assert metadata.get("x-sluice-error") == "ResourceNotFoundException", metadata
        assert error.details().startswith("[ResourceNotFoundException] "), error.details()
        return
    raise AssertionError("DescribeStream of an unknown stream succeeded")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
