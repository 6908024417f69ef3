"""Play Stripe against a running server: signed deliveries from many threads, duplicates
(some at the same moment), and Stripe's retry of every delivery not answered with a 2xx.

    STRIPE_WEBHOOK_SECRET=whsec_... python tests/support/loadgen.py URL --deliveries 5000 \
        --out r.json

``URL`` is the endpoint's full webhook URL. Of the deliveries, ``--duplicates`` (a fraction)
are second copies of an event: half sent at the same moment as the first copy, half after
it was acknowledged. ``--fail`` (a fraction) of the events carry ``metadata.fail_once``, so
the test handler raises on their first call. Retries are not counted as deliveries.
Writes a JSON report: counts, the event ids, the ids marked to fail once.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from flask_stripe_hooks.testing import build_event, sign_payload


class Sender:
    def __init__(self, url: str, secret: str, max_tries: int) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "", parts.port or 80, parts.path
        self.secret = secret
        self.max_tries = max_tries
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.retries = 0
        self.gave_up: list[str] = []

    def post_once(self, body: str) -> int:
        _, header = sign_payload(body, self.secret)  # signed at send time, as Stripe does
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(
                "POST",
                self.path,
                body=body.encode(),
                headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            response.read()
            return response.status
        except OSError:
            return 0  # connection refused or reset: Stripe retries those too
        finally:
            conn.close()

    def deliver(self, event_id: str, body: str) -> bool:
        """One delivery, retried until a 2xx (with a short, growing pause)."""
        for attempt in range(self.max_tries):
            status = self.post_once(body)
            with self.lock:
                self.statuses[status] += 1
                if attempt:
                    self.retries += 1
            if 200 <= status < 300:
                return True
            time.sleep(min(1.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))
        with self.lock:
            self.gave_up.append(event_id)
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--duplicates", type=float, default=0.3)
    parser.add_argument("--fail", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tries", type=int, default=12)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    random.seed(args.seed)
    secret = os.environ["STRIPE_WEBHOOK_SECRET"]

    duplicates = round(args.deliveries * args.duplicates)
    unique = args.deliveries - duplicates
    concurrent = duplicates // 2
    later = duplicates - concurrent
    failing = round(unique * args.fail)
    types = ("customer.created", "invoice.paid", "charge.succeeded", "payment_intent.succeeded")
    bodies: dict[str, str] = {}
    marked: list[str] = []
    for i in range(unique):
        meta = {"fail_once": "1"} if i < failing else {}
        event = build_event(types[i % len(types)], {"metadata": meta})
        bodies[event["id"]] = json.dumps(event)
        if meta:
            marked.append(event["id"])
    ids = list(bodies)
    random.shuffle(ids)
    paired = set(random.sample(ids, concurrent))
    redelivered = set(random.sample([i for i in ids if i not in paired], later))

    sender = Sender(args.url, secret, args.max_tries)
    jobs: queue.Queue[tuple[str, str] | None] = queue.Queue()
    for event_id in ids:
        jobs.put(("pair" if event_id in paired else "one", event_id))
    sent = Counter[str]()
    sent_lock = threading.Lock()

    def count(kind: str, n: int = 1) -> None:
        with sent_lock:
            sent[kind] += n

    def pair(event_id: str, body: str) -> None:
        barrier = threading.Barrier(2)

        def copy() -> None:
            barrier.wait()
            sender.deliver(event_id, body)

        twin = threading.Thread(target=copy)
        twin.start()
        barrier.wait()
        sender.deliver(event_id, body)
        twin.join()
        count("deliveries", 2)
        count("concurrent_duplicates")

    def work() -> None:
        while True:
            job = jobs.get()
            try:
                if job is None:
                    return
                kind, event_id = job
                body = bodies[event_id]
                if kind == "pair":
                    pair(event_id, body)
                    continue
                ok = sender.deliver(event_id, body)
                count("deliveries")
                if kind == "later":
                    count("later_duplicates")
                elif ok and event_id in redelivered:
                    jobs.put(("later", event_id))  # Stripe sends it again, later
            finally:
                jobs.task_done()

    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    jobs.join()  # every job, including the "later" ones queued along the way
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started

    report: dict[str, Any] = {
        "deliveries": sent["deliveries"],
        "unique_events": unique,
        "concurrent_duplicates": sent["concurrent_duplicates"],
        "later_duplicates": sent["later_duplicates"],
        "marked_fail_once": len(marked),
        "requests": sum(sender.statuses.values()),
        "retries": sender.retries,
        "statuses": {str(k): v for k, v in sorted(sender.statuses.items())},
        "gave_up": sender.gave_up,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(sum(sender.statuses.values()) / elapsed, 1),
        "event_ids": sorted(bodies),
        "marked": sorted(marked),
    }
    with open(args.out, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main()
