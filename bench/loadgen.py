"""A load generator in its own process: signed deliveries over HTTP at a fixed concurrency.

    loadgen.py --port P --path /stripe/webhook/... --payloads FILE [--concurrency 32]
    loadgen.py --port P --path ... --generate 100000 --id-prefix evt_mem [--concurrency 8]

``--payloads`` sends the signed deliveries of a file (made by ``payloads.write``);
``--generate`` makes unique events from ``payloads.templates()`` and signs each one with
stripe-python as it goes (for the long memory run). Every request is a fresh loopback
connection (``Connection: close``: gunicorn's sync workers close it anyway), driven by an
``asyncio.Protocol`` on uvloop: about 0.3 ms of CPU per request here, against 0.6–0.7 ms
with asyncio's streams, CPU that on a small machine is taken from the server under test.
Prints one JSON line: rate, latency percentiles, the client's CPU per request, statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import payloads  # noqa: E402


def _request(path: str, body: bytes, header: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Stripe-Signature: {header}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def generated(count: int, prefix: str) -> Iterator[tuple[bytes, str]]:
    templates = payloads.templates()
    for i in range(count):
        body = templates[i % len(templates)].replace(payloads.ID_MARK, f"{prefix}{i:012d}")
        yield body.encode(), payloads.sign(body)


class _Exchange(asyncio.Protocol):
    """One request on a fresh connection: send it, read until the server closes."""

    def __init__(self, data: bytes, done: asyncio.Future[bytes]) -> None:
        self.data = data
        self.done = done
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.data)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is None:
                self.done.set_result(b"".join(self.chunks))
            else:
                self.done.set_exception(exc)


async def run(
    port: int, path: str, items: Iterator[tuple[bytes, str]], concurrency: int
) -> dict[str, object]:
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    clock = time.perf_counter
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        for body, header in items:  # a shared iterator: each item is sent once
            data = _request(path, body, header)
            t0 = clock()
            try:
                done: asyncio.Future[bytes] = loop.create_future()
                await loop.create_connection(
                    functools.partial(_Exchange, data, done), "127.0.0.1", port
                )
                answer = await done
                status = answer.split(b" ", 2)[1].decode() if answer else "closed"
            except OSError as exc:
                status = type(exc).__name__
            latencies.append(clock() - t0)
            statuses[status] += 1

    start, cpu = clock(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cpu = clock() - start, time.process_time() - cpu
    latencies.sort()
    n = len(latencies)

    def pct(q: float) -> float:
        return latencies[min(n - 1, int(round(q * (n - 1))))] * 1000 if n else 0.0

    return {
        "deliveries": n,
        "seconds": elapsed,
        "rate": n / elapsed if elapsed else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "client_cpu_ms": cpu / n * 1000 if n else 0.0,
        "statuses": dict(sorted(statuses.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--payloads")
    parser.add_argument("--generate", type=int, default=0)
    parser.add_argument("--id-prefix", default="evt_gen")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if args.payloads:
        items: Iterator[tuple[bytes, str]] = iter(payloads.read(args.payloads))
    else:
        items = generated(args.generate, args.id_prefix)
    print(json.dumps(_run_loop(run(args.port, args.path, items, args.concurrency))))


def _run_loop(main: Any) -> Any:
    """uvloop when installed (``bench/run.py`` installs it): it halves the load generator's
    CPU per request, which on a small machine is CPU taken from the server under test."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


if __name__ == "__main__":
    main()
