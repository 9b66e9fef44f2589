// SubscribeToShard through the AWS SDK for JavaScript v3 against a real sluice server:
// records arrive live over an HTTP/2 event stream, and a second subscription resumes
// after the ContinuationSequenceNumber with exactly the records that came later.
//
// Usage: node subscribe.mjs http://127.0.0.1:PORT   (prints one JSON line with results)

import {
  KinesisClient, CreateStreamCommand, DescribeStreamSummaryCommand, RegisterStreamConsumerCommand,
  PutRecordCommand, SubscribeToShardCommand,
} from "@aws-sdk/client-kinesis";
import { NodeHttp2Handler } from "@smithy/node-http-handler";

const endpoint = process.argv[2];
const common = { endpoint, region: "us-east-1", credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" }, maxAttempts: 1 };
const plain = new KinesisClient(common);
const h2 = new KinesisClient({ ...common, requestHandler: new NodeHttp2Handler({ requestTimeout: 20000 }) });
// A bound reached only if something hangs; generous, so a loaded machine never reaches it.
const deadline = setTimeout(() => { console.error("timed out"); process.exit(2); }, 240000);

const stream = `js-${process.pid}`;
await plain.send(new CreateStreamCommand({ StreamName: stream, ShardCount: 1 }));
let arn;
// Poll until ACTIVE, bounded by the overall deadline above (not by a count of tries).
while (arn === undefined) {
  const s = (await plain.send(new DescribeStreamSummaryCommand({ StreamName: stream }))).StreamDescriptionSummary;
  if (s.StreamStatus === "ACTIVE") { arn = s.StreamARN; break; }
  await new Promise((r) => setTimeout(r, 50));
}
const { Consumer } = await plain.send(new RegisterStreamConsumerCommand({ StreamARN: arn, ConsumerName: "js-app" }));
const put = (text) => plain.send(new PutRecordCommand({ StreamName: stream, PartitionKey: "k", Data: new TextEncoder().encode(text) }));

// SubscribeToShard, retried as a client must: Kinesis refuses a consumer's second
// subscription to a shard within 5 seconds of its first with ResourceInUseException (the
// first one, which the loop below broke out of, may still be open on the server), and
// lets a later one take over.
async function subscribe(position) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await h2.send(new SubscribeToShardCommand({ ConsumerARN: Consumer.ConsumerARN, ShardId: "shardId-000000000000", StartingPosition: position }));
    } catch (e) {
      if (e.name !== "ResourceInUseException" || attempt >= 30) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

// Collects records from a subscription until `want` arrived; returns them and the last
// continuation number.
async function collect(position, want, afterStart) {
  const out = await subscribe(position);
  // The response has arrived, so the starting position is fixed: write now.
  await afterStart();
  const got = [];
  let continuation;
  for await (const event of out.EventStream) {
    if (!event.SubscribeToShardEvent) continue;
    const e = event.SubscribeToShardEvent;
    continuation = e.ContinuationSequenceNumber;
    for (const r of e.Records) got.push(new TextDecoder().decode(r.Data));
    if (got.length >= want) break;
  }
  return { got, continuation };
}

// First subscription: LATEST, then three records are put while it is open.
const first = await collect({ Type: "LATEST" }, 3, async () => { for (const t of ["live1", "live2", "live3"]) await put(t); });
// Two more while nobody listens; resuming after the continuation number gets exactly them.
await put("later1");
await put("later2");
const second = await collect({ Type: "AFTER_SEQUENCE_NUMBER", SequenceNumber: first.continuation }, 2, async () => {});
clearTimeout(deadline);
console.log(JSON.stringify({ first: first.got, second: second.got, continuation: first.continuation }));
h2.destroy();
plain.destroy();
// Open HTTP/2 sessions would keep the process alive; the result is printed.
process.exit(0);
