"""SMS sends per second end to end: Dispatcher + the real SMS adapter → a local Twilio-shaped server.

The provider is the package's FakeTwilio served by its own keep-alive HTTP/1.1 server
(channels/sms/fake_server.py) in its own process on 127.0.0.1 (real HTTP over loopback: form body,
Basic auth, a JSON answer with the sid); the sender is this process: for every message the ledger row
is written, claimed, the suppression list checked, the Messages API called through the adapter's
default client (`channels.http.PooledClient`, kept-alive connections), and the outcome recorded in
the operational store (SQLite in a fresh home, synchronous=FULL). `Dispatcher.send_many` takes
`--batch` messages at a time; W threads share W connections and the ledger's writes of one step
overlap the calls of the next. Every message must reach the provider exactly once (checked).
Target (issue 20): ≥ 2,000 sends/s.

Besides the rate it prints the CPU each side spent per send (this process, and the provider's
process), which does not depend on what else the machine runs, and the load average.

    python bench/channels_http.py [--messages 4000] [--workers 4] [--batch 500] [--feedback] [--home-dir /dev/shm]

`http_section(args)` is the same run for bench/channels.py.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

from omniweave.channels.dispatch import Dispatcher
from omniweave.channels.http import PooledClient
from omniweave.channels.port import Message
from omniweave.channels.service import dispatcher_for
from omniweave.channels.sms.fake import FakeTwilio
from omniweave.channels.sms.service import messaging_channel, send_feedback
from omniweave.runtime import Runtime
from omniweave.settings import ChannelsSettings, MessagingChannelSettings, Settings
from omniweave.storage.ops.ledger import Ledger

SID = "AC" + "b" * 32
TOKEN = "bench-auth-token"
TARGET = 2000.0


def _serve(port: int, ready: multiprocessing.synchronize.Event, stop: multiprocessing.synchronize.Event, out) -> None:  # type: ignore[no-untyped-def]
    fake = FakeTwilio(account_sid=SID, auth_token=TOKEN)
    with fake.serve(port=port):
        ready.set()
        stop.wait()
        out.send((len(fake.messages), len({m["idempotency_token"] for m in fake.messages}), fake.requests))


def _cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) process `pid` has used (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The HTTP section's options."""
    parser.add_argument("--messages", type=int, default=4000, help="SMS to send (default 4,000)")
    parser.add_argument("--workers", type=int, default=4, help="sending threads (default 4)")
    parser.add_argument("--feedback", action="store_true", help="also emit the 'SMS Sent' events into the inbox")
    parser.add_argument(
        "--home-dir",
        default=None,
        help="where the fresh home goes (default: the system temp folder; /dev/shm: no fsync cost)",
    )


def http_section(args: argparse.Namespace) -> float:
    """Send `args.messages` SMS through the dispatcher to a local Twilio-shaped server; print and return sends/s."""
    port = _free_port()
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=_serve, args=(port, ready, stop, send), daemon=True)
    server.start()
    if not ready.wait(20):
        raise SystemExit("the local Twilio-shaped server did not start")
    os.environ["OMNIWEAVE_TWILIO_AUTH_TOKEN"] = TOKEN
    with tempfile.TemporaryDirectory(dir=args.home_dir) as home:
        sms = MessagingChannelSettings(
            enabled=True, api_base=f"http://127.0.0.1:{port}/2010-04-01", account_sid=SID, from_number="+447700900000"
        )
        settings = Settings(home=str(Path(home) / "home"), channels=ChannelsSettings(sms=sms))
        runtime = Runtime(settings)
        ledger = Ledger(runtime.store.engine)
        on_outcome = send_feedback(runtime) if args.feedback else None
        workers = max(1, args.workers)
        client = PooledClient(timeout=10, connections=workers)  # what the adapter uses by default
        channel = messaging_channel(runtime, "sms", client=client)
        dispatcher = (
            dispatcher_for(runtime, {"sms": channel}, rng=random.Random(1))  # feedback events, one commit a batch
            if on_outcome is not None
            else Dispatcher(ledger, {"sms": channel}, rng=random.Random(1))
        )
        messages = [
            (
                Message("sms", f"+4477009{i:05d}", {"body": f"Spring sale, code SPRING{i:05d}"}, person_id=f"P{i}"),
                f"bench:{i}",
            )
            for i in range(args.messages)
        ]
        # warm up: one connection per worker and the tables' first pages
        for i in range(workers):
            dispatcher.send(Message("sms", f"+4477008{i:05d}", {"body": "warm-up"}), f"warm:{i}")
        provider_cpu = _cpu_seconds(server.pid or 0)
        sender_cpu = time.process_time()
        started = time.perf_counter()
        batch = getattr(args, "batch", 500)
        for first in range(0, len(messages), batch):
            dispatcher.send_many(messages[first : first + batch], workers=workers)
        elapsed = time.perf_counter() - started
        sender_cpu = time.process_time() - sender_cpu
        provider_after = _cpu_seconds(server.pid or 0)
        provider_cpu = None if provider_cpu is None or provider_after is None else provider_after - provider_cpu
        counts = ledger.counts()
        # the adapter alone (no ledger): what the HTTP path costs, to see where the time goes
        direct = [(m, f"direct:{k}") for m, k in messages[: max(workers, args.messages // 4)]]
        t0 = time.perf_counter()
        parts = [direct[w::workers] for w in range(workers)]
        threads = [threading.Thread(target=lambda p=p: [channel.send(m, k) for m, k in p]) for p in parts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        direct_rate = len(direct) / (time.perf_counter() - t0)
        client.close()
        runtime.close()
    stop.set()
    accepted, distinct, requests = receive.recv()
    server.join(10)
    accepted, distinct, requests = accepted - len(direct), distinct - len(direct), requests - len(direct)
    rate = args.messages / elapsed
    delivered = counts.get("delivered", 0) - workers
    ok = delivered == args.messages and accepted == distinct == args.messages + workers
    print(
        f"sms http: {args.messages:,} sends in {elapsed:.2f} s = {rate:,.0f} sends/s "
        f"(target >= {TARGET:,.0f}/s: {'met' if rate >= TARGET else 'NOT met'}); workers {workers}, "
        f"feedback events {'on' if args.feedback else 'off'}, store in {args.home_dir or tempfile.gettempdir()}; "
        f"delivered {delivered:,}, provider got "
        f"{accepted - workers:,} messages in {requests - workers:,} requests, each once: {'yes' if ok else 'NO'}"
    )
    per = 1e6 / args.messages
    provider = f"{provider_cpu * per:.0f} us" if provider_cpu is not None else "not measured"
    print(
        f"sms http, CPU per send end to end: sender {sender_cpu * per:.0f} us (ledger, dispatcher, adapter, "
        f"client), provider {provider}; adapter only (no ledger): {len(direct):,} sends = {direct_rate:,.0f} "
        f"sends/s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    if not ok:
        print(f"  ledger: {counts}", file=sys.stderr)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=500, help="messages per Dispatcher.send_many call (default 500)")
    add_arguments(parser)
    http_section(parser.parse_args())


if __name__ == "__main__":
    main()
