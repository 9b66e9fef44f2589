"""Every Kinesis operation Sluice serves, through boto3 against the real server: shapes,
pagination, resharding lineage, iterator expiry and validation errors with their __type."""

import time

import pytest
from botocore.exceptions import ClientError

from conftest import STATE_TIMEOUT_S, Server, wait_active

MAX_HASH = 2**128 - 1


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def put(client, name, data, key="pk", **kw):
    return client.put_record(StreamName=name, Data=data, PartitionKey=key, **kw)


def read_shard(client, name, shard_id, kind="TRIM_HORIZON", **kw):
    it = client.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType=kind, **kw)["ShardIterator"]
    out = client.get_records(ShardIterator=it)
    return out


def test_create_describe_and_list_streams_with_pagination(kinesis, stream_name):
    for i in range(3):
        kinesis.create_stream(StreamName=f"{stream_name}-{i}", ShardCount=i + 1)
    d = wait_active(kinesis, f"{stream_name}-2")
    assert d["OpenShardCount"] == 3
    assert d["StreamARN"] == f"arn:aws:kinesis:us-east-1:000000000000:stream/{stream_name}-2"
    assert d["RetentionPeriodHours"] == 24
    desc = kinesis.describe_stream(StreamName=f"{stream_name}-2")["StreamDescription"]
    ranges = [(int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])) for s in desc["Shards"]]
    assert ranges[0][0] == 0 and ranges[-1][1] == MAX_HASH
    assert ranges[0][1] == 113427455640312821154458202477256070484, "Kinesis's own 3-shard layout"
    assert all(s["ShardId"].startswith("shardId-0000000000") for s in desc["Shards"])
    # Pagination: Limit 1 pages through every stream, in name order.
    names, token = [], None
    for _ in range(100):
        page = kinesis.list_streams(Limit=1, **({"NextToken": token} if token else {}))
        names += page["StreamNames"]
        if not page["HasMoreStreams"]:
            break
        token = page["NextToken"]
    mine = [n for n in names if n.startswith(stream_name)]
    assert mine == sorted(mine) and len(mine) == 3
    # DescribeStream pagination of shards by ExclusiveStartShardId.
    first = kinesis.describe_stream(StreamName=f"{stream_name}-2", Limit=2)["StreamDescription"]
    assert first["HasMoreShards"] and len(first["Shards"]) == 2
    rest = kinesis.describe_stream(StreamName=f"{stream_name}-2", ExclusiveStartShardId=first["Shards"][-1]["ShardId"])["StreamDescription"]
    assert [s["ShardId"] for s in rest["Shards"]] == ["shardId-000000000002"]
    kinesis.delete_stream(StreamName=f"{stream_name}-0")
    kinesis.get_waiter("stream_not_exists").wait(StreamName=f"{stream_name}-0", WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    deadline = time.monotonic() + STATE_TIMEOUT_S
    with pytest.raises(ClientError) as e:
        while time.monotonic() < deadline:
            kinesis.describe_stream(StreamName=f"{stream_name}-0")
            time.sleep(0.05)
    assert error_code(e) == "ResourceNotFoundException"


def test_put_and_read_with_every_iterator_type(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    wait_active(kinesis, stream_name)
    seqs = []
    for i in range(1, 7):
        seqs.append(put(kinesis, stream_name, f"test{i}".encode())["SequenceNumber"])
        time.sleep(0.02)
    shard = "shardId-000000000000"
    all_ = read_shard(kinesis, stream_name, shard)["Records"]
    assert [r["Data"] for r in all_] == [f"test{i}".encode() for i in range(1, 7)]
    assert [r["SequenceNumber"] for r in all_] == seqs
    assert all(len(s) == 56 for s in seqs) and [int(s) for s in seqs] == sorted(int(s) for s in seqs)
    assert read_shard(kinesis, stream_name, shard, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[5])["Records"][0]["Data"] == b"test6"
    after = read_shard(kinesis, stream_name, shard, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[4])["Records"]
    assert [r["Data"] for r in after] == [b"test6"]
    latest = read_shard(kinesis, stream_name, shard, "LATEST")
    assert latest["Records"] == [] and latest["MillisBehindLatest"] == 0
    put(kinesis, stream_name, b"test7")
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=latest["NextShardIterator"])["Records"]] == [b"test7"]
    t3 = all_[2]["ApproximateArrivalTimestamp"]
    t4 = all_[3]["ApproximateArrivalTimestamp"]
    assert t4 > t3
    between = read_shard(kinesis, stream_name, shard, "AT_TIMESTAMP", Timestamp=t3.timestamp() + 0.001)["Records"]
    assert between[0]["SequenceNumber"] == seqs[3]
    # PutRecords: per-record results in request order, explicit hash keys route.
    out = kinesis.put_records(StreamName=stream_name, Records=[
        {"Data": b"a", "PartitionKey": "k1"},
        {"Data": b"", "PartitionKey": "k2", "ExplicitHashKey": str(MAX_HASH)},
    ])
    assert out["FailedRecordCount"] == 0
    assert [r["ShardId"] for r in out["Records"]] == [shard, shard]
    assert int(out["Records"][0]["SequenceNumber"]) < int(out["Records"][1]["SequenceNumber"])
    # SequenceNumberForOrdering is accepted and ordering holds.
    r = put(kinesis, stream_name, b"ordered", SequenceNumberForOrdering=out["Records"][1]["SequenceNumber"])
    assert int(r["SequenceNumber"]) > int(out["Records"][1]["SequenceNumber"])


def test_list_shards_pagination_filters_and_resharding_lineage(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=2)
    wait_active(kinesis, stream_name)
    put(kinesis, stream_name, b"in-parent", ExplicitHashKey="1")
    kinesis.split_shard(StreamName=stream_name, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**125))
    wait_active(kinesis, stream_name)
    shards = kinesis.list_shards(StreamName=stream_name)["Shards"]
    by_id = {s["ShardId"]: s for s in shards}
    assert "EndingSequenceNumber" in by_id["shardId-000000000000"]["SequenceNumberRange"]
    assert by_id["shardId-000000000002"]["ParentShardId"] == "shardId-000000000000"
    assert by_id["shardId-000000000003"]["ParentShardId"] == "shardId-000000000000"
    assert by_id["shardId-000000000002"]["HashKeyRange"]["EndingHashKey"] == str(2**125 - 1)
    kinesis.merge_shards(StreamName=stream_name, ShardToMerge="shardId-000000000003", AdjacentShardToMerge="shardId-000000000001")
    wait_active(kinesis, stream_name)
    merged = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=stream_name)["Shards"]}["shardId-000000000004"]
    assert merged["ParentShardId"] == "shardId-000000000003"
    assert merged["AdjacentParentShardId"] == "shardId-000000000001"
    # Reading a closed shard to its end: no next iterator, and the children.
    end = read_shard(kinesis, stream_name, "shardId-000000000000")
    assert [r["Data"] for r in end["Records"]] == [b"in-parent"]
    assert "NextShardIterator" not in end or end["NextShardIterator"] is None
    assert sorted(c["ShardId"] for c in end["ChildShards"]) == ["shardId-000000000002", "shardId-000000000003"]
    assert end["ChildShards"][0]["ParentShards"] == ["shardId-000000000000"]
    # Pagination with MaxResults and NextToken (NextToken excludes StreamName).
    page = kinesis.list_shards(StreamName=stream_name, MaxResults=2)
    assert len(page["Shards"]) == 2 and "NextToken" in page
    rest = kinesis.list_shards(NextToken=page["NextToken"])
    assert [s["ShardId"] for s in page["Shards"] + rest["Shards"]] == [f"shardId-00000000000{i}" for i in range(5)]
    with pytest.raises(ClientError) as e:
        kinesis.list_shards(StreamName=stream_name, NextToken=page["NextToken"])
    assert error_code(e) == "InvalidArgumentException"
    latest = kinesis.list_shards(StreamName=stream_name, ShardFilter={"Type": "AT_LATEST"})["Shards"]
    assert [s["ShardId"] for s in latest] == ["shardId-000000000002", "shardId-000000000004"]
    after = kinesis.list_shards(StreamName=stream_name, ShardFilter={"Type": "AFTER_SHARD_ID", "ShardId": "shardId-000000000002"})["Shards"]
    assert [s["ShardId"] for s in after] == ["shardId-000000000003", "shardId-000000000004"]
    out = kinesis.update_shard_count(StreamName=stream_name, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    assert (out["CurrentShardCount"], out["TargetShardCount"]) == (2, 4)
    # The resize runs in the background, as on Kinesis: boto3's own waiter sees it through.
    kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    assert kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    open_ = kinesis.list_shards(StreamName=stream_name, ShardFilter={"Type": "AT_LATEST"})["Shards"]
    assert len(open_) == 4
    starts = sorted(int(s["HashKeyRange"]["StartingHashKey"]) for s in open_)
    assert starts == [0, 2**126, 2**127, 3 * 2**126]


def test_retention_tags_limits_and_summary(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1, Tags={"team": "iot"})
    wait_active(kinesis, stream_name)
    kinesis.increase_stream_retention_period(StreamName=stream_name, RetentionPeriodHours=48)
    assert kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["RetentionPeriodHours"] == 48
    with pytest.raises(ClientError) as e:
        kinesis.increase_stream_retention_period(StreamName=stream_name, RetentionPeriodHours=30)
    assert error_code(e) == "InvalidArgumentException"
    kinesis.decrease_stream_retention_period(StreamName=stream_name, RetentionPeriodHours=24)
    with pytest.raises(ClientError) as e:
        kinesis.decrease_stream_retention_period(StreamName=stream_name, RetentionPeriodHours=10)
    assert error_code(e) == "InvalidArgumentException"
    kinesis.add_tags_to_stream(StreamName=stream_name, Tags={"env": "test", "zone": "a"})
    tags = kinesis.list_tags_for_stream(StreamName=stream_name)
    assert tags["Tags"] == [{"Key": "env", "Value": "test"}, {"Key": "team", "Value": "iot"}, {"Key": "zone", "Value": "a"}]
    assert tags["HasMoreTags"] is False
    kinesis.remove_tags_from_stream(StreamName=stream_name, TagKeys=["env", "nope"])
    assert [t["Key"] for t in kinesis.list_tags_for_stream(StreamName=stream_name)["Tags"]] == ["team", "zone"]
    limits = kinesis.describe_limits()
    assert limits["OpenShardCount"] >= 1 and limits["ShardLimit"] >= limits["OpenShardCount"]


def test_enhanced_fan_out_consumers(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    arn = wait_active(kinesis, stream_name)["StreamARN"]
    c = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="app")["Consumer"]
    assert c["ConsumerARN"].startswith(f"{arn}/consumer/app:")
    d = kinesis.describe_stream_consumer(ConsumerARN=c["ConsumerARN"])["ConsumerDescription"]
    assert d["ConsumerStatus"] == "ACTIVE" and d["StreamARN"] == arn
    assert kinesis.describe_stream_consumer(StreamARN=arn, ConsumerName="app")["ConsumerDescription"]["ConsumerARN"] == c["ConsumerARN"]
    assert [x["ConsumerName"] for x in kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]] == ["app"]
    with pytest.raises(ClientError) as e:
        kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="app")
    assert error_code(e) == "ResourceInUseException"
    kinesis.deregister_stream_consumer(ConsumerARN=c["ConsumerARN"])
    assert kinesis.list_stream_consumers(StreamARN=arn)["Consumers"] == []
    with pytest.raises(ClientError) as e:
        kinesis.describe_stream_consumer(ConsumerARN=c["ConsumerARN"])
    assert error_code(e) == "ResourceNotFoundException"


@pytest.mark.parametrize("call, code", [
    (lambda k, s: k.create_stream(StreamName="bad name!", ShardCount=1), "ValidationException"),
    (lambda k, s: k.create_stream(StreamName=s, ShardCount=1), "ResourceInUseException"),
    (lambda k, s: k.describe_stream(StreamName="no-such-stream"), "ResourceNotFoundException"),
    (lambda k, s: k.put_record(StreamName="no-such-stream", Data=b"x", PartitionKey="k"), "ResourceNotFoundException"),
    (lambda k, s: k.put_record(StreamName=s, Data=b"x", PartitionKey="k" * 257), "ValidationException"),
    (lambda k, s: k.put_record(StreamName=s, Data=b"x" * (1024 * 1024), PartitionKey="k"), "ValidationException"),
    (lambda k, s: k.put_record(StreamName=s, Data=b"x", PartitionKey="k", ExplicitHashKey=str(2**128)), "InvalidArgumentException"),
    (lambda k, s: k.put_records(StreamName=s, Records=[{"Data": b"x", "PartitionKey": "k"}] * 501), "ValidationException"),
    (lambda k, s: k.put_records(StreamName=s, Records=[{"Data": b"x" * 1_000_000, "PartitionKey": "k"}] * 6), "InvalidArgumentException"),
    (lambda k, s: k.get_shard_iterator(StreamName=s, ShardId="shardId-000000000009", ShardIteratorType="LATEST"), "ResourceNotFoundException"),
    (lambda k, s: k.get_shard_iterator(StreamName=s, ShardId="shardId-000000000000", ShardIteratorType="AT_SEQUENCE_NUMBER"), "InvalidArgumentException"),
    (lambda k, s: k.get_shard_iterator(StreamName=s, ShardId="shardId-000000000000", ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber="123"), "InvalidArgumentException"),
    (lambda k, s: k.get_shard_iterator(StreamName=s, ShardId="shardId-000000000000", ShardIteratorType="SOMETIME"), "ValidationException"),
    (lambda k, s: k.get_records(ShardIterator="AAAA" * 20), "InvalidArgumentException"),
    (lambda k, s: k.split_shard(StreamName=s, ShardToSplit="shardId-000000000000", NewStartingHashKey="1"), "InvalidArgumentException"),
    (lambda k, s: k.merge_shards(StreamName=s, ShardToMerge="shardId-000000000000", AdjacentShardToMerge="shardId-000000000000"), "InvalidArgumentException"),
    (lambda k, s: k.start_stream_encryption(StreamName=s, EncryptionType="KMS", KeyId="k"), "UnsupportedOperationException"),
])
def test_validation_errors_have_the_right_type(raw, stream_name, call, code):
    raw.create_stream(StreamName=stream_name, ShardCount=1)
    wait_active(raw, stream_name)
    with pytest.raises(ClientError) as e:
        call(raw, stream_name)
    assert error_code(e) == code, e.value.response["Error"]
    assert e.value.response["Error"]["Message"]
    # The server is still healthy and the stream untouched.
    assert raw.put_record(StreamName=stream_name, Data=b"ok", PartitionKey="k")["ShardId"] == "shardId-000000000000"


def test_a_sequence_number_from_another_shard_is_refused(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=2)
    wait_active(kinesis, stream_name)
    r = put(kinesis, stream_name, b"x", ExplicitHashKey=str(MAX_HASH))
    assert r["ShardId"] == "shardId-000000000001"
    with pytest.raises(ClientError) as e:
        kinesis.get_shard_iterator(StreamName=stream_name, ShardId="shardId-000000000000",
                                   ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=r["SequenceNumber"])
    assert error_code(e) == "InvalidArgumentException"
    assert "shardId-000000000001" in e.value.response["Error"]["Message"]


def fresh_iterator(k, ttl_s, tries=10):
    """An iterator that a first GetRecords accepted. On a machine so slow that the iterator
    lifetime passes between two calls it may expire first; that is retried only when the
    client saw at least the lifetime pass, so a server that refuses young iterators fails."""
    for _ in range(tries):
        started = time.monotonic()
        it = k.get_shard_iterator(StreamName="expiry", ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        try:
            assert k.get_records(ShardIterator=it)["Records"] == []
            return it
        except ClientError as e:
            if error_code_of(e) != "ExpiredIteratorException" or time.monotonic() - started < ttl_s:
                raise
    raise AssertionError(f"every one of {tries} iterators expired before its first use")


def error_code_of(error):
    return error.response["Error"]["Code"]


def test_iterators_expire():
    s = Server(env={"SLUICE_BROKER_ITERATOR_TTL": "1s"})
    try:
        k = s.client()
        k.create_stream(StreamName="expiry", ShardCount=1)
        wait_active(k, "expiry")
        it = fresh_iterator(k, 1.0)
        # More than the lifetime passes; a slower machine only makes the iterator older.
        time.sleep(1.5)
        with pytest.raises(ClientError) as e:
            k.get_records(ShardIterator=it)
        assert error_code(e) == "ExpiredIteratorException"
    finally:
        s.stop()
