"""Messages per second through an SQS event source mapping with a no-op function.

Run by hand (never in the test suite):

    python -m bench.esm_throughput [--quick] [--messages 5000] [--batch-size 10]
        [--concurrency 5] [--sandbox namespace]

It starts its own ``ember serve`` (loopback, temporary data dir, dummy credentials),
fills a queue, and times how long a mapping takes to drain it (from CreateEventSourceMapping
to an empty queue, the function already warm). Floors measured in the same run:

- API drain: one boto3 client receiving 10 at a time and deleting them in batches, no
  function (what the queue service alone sustains for a single consumer over HTTP);
- serial invokes: warm no-op invokes through boto3, times the batch size (what one
  poller could reach if invoking were all it did).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench.common import NOOP, ROLE, Server, ember_server, function_zip


def fill(sqs: Any, url: str, count: int) -> float:
    """Send ``count`` messages in batches of 10; returns messages per second."""
    started = time.perf_counter()
    for start in range(0, count, 10):
        entries = [{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    return count / (time.perf_counter() - started)


def api_drain(sqs: Any, url: str, count: int) -> float:
    """One client receiving and batch-deleting until ``count`` messages are gone."""
    started, done = time.perf_counter(), 0
    while done < count:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if messages:
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ]
            sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            done += len(messages)
    return count / (time.perf_counter() - started)


def serial_invokes(lam: Any, repeat: int) -> float:
    for _ in range(20):
        response = lam.invoke(FunctionName="noop", Payload=b"{}")
        assert "FunctionError" not in response, response["Payload"].read()
    started = time.perf_counter()
    for _ in range(repeat):
        lam.invoke(FunctionName="noop", Payload=b"{}")
    return repeat / (time.perf_counter() - started)


def mapping_drain(sqs: Any, lam: Any, url: str, arn: str, args: argparse.Namespace) -> float:
    settings: dict[str, Any] = {"BatchSize": args.batch_size}
    if args.batch_size > 10:
        settings["MaximumBatchingWindowInSeconds"] = 1
    if args.concurrency >= 2:
        settings["ScalingConfig"] = {"MaximumConcurrency": args.concurrency}
    started = time.perf_counter()
    mapping = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="noop", **settings)
    while True:
        assert time.perf_counter() - started < 600, "the mapping did not drain the queue"
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if (
            counts["ApproximateNumberOfMessages"]
            == counts["ApproximateNumberOfMessagesNotVisible"]
            == "0"
        ):
            break
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    result = lam.get_event_source_mapping(UUID=mapping["UUID"])["LastProcessingResult"]
    assert result == "OK", result
    lam.delete_event_source_mapping(UUID=mapping["UUID"])
    return float(args.messages / elapsed)


def run(server: Server, args: argparse.Namespace) -> dict[str, float]:
    sqs, lam = server.boto3("sqs"), server.boto3("lambda")
    lam.create_function(
        FunctionName="noop",
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": function_zip(NOOP)},
    )
    lam.get_waiter("function_active_v2").wait(FunctionName="noop")
    queue = sqs.create_queue(QueueName="bench", Attributes={"VisibilityTimeout": "300"})
    url_q = queue["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url_q, AttributeNames=["QueueArn"])["Attributes"]
    results = {"send (batches of 10), msgs/s": fill(sqs, url_q, args.messages)}
    progress(results)
    results["floor: API drain, one client, msgs/s"] = api_drain(sqs, url_q, args.messages)
    progress(results)
    invokes = serial_invokes(lam, 500)
    results["floor: serial warm invokes/s"] = invokes
    results[f"floor: serial invokes x batch {args.batch_size}, msgs/s"] = invokes * args.batch_size
    progress(results)
    fill(sqs, url_q, args.messages)
    results["event source mapping, msgs/s"] = mapping_drain(sqs, lam, url_q, arn["QueueArn"], args)
    return results


def progress(results: dict[str, float]) -> None:
    name, value = list(results.items())[-1]
    print(f"{name}: {value:,.0f}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 messages: a smoke run")
    parser.add_argument("--messages", type=int, help="messages in the queue (5000)")
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--sandbox", default="namespace")
    args = parser.parse_args(argv)
    args.messages = args.messages or (1000 if args.quick else 5000)
    with ember_server(sandbox=args.sandbox) as server:
        results = run(server, args)
    print(json.dumps({"args": vars(args), "results": results}, indent=2))
    for name, value in results.items():
        print(f"| {name} | {value:,.0f} |")


if __name__ == "__main__":
    main()
