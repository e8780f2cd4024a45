"""Channel sends per second end to end: e-mail to a local SMTP server, SMS to a local HTTP provider.

E-mail: N messages (default 2,000) through `Dispatcher` + the real SMTP adapter (one kept-open
connection per worker, plain SMTP on loopback) to an aiosmtpd server running in its own process;
for every message the ledger row is written, claimed, the suppression list checked, the MIME
message built (HTML + text, tracked links, pixel, List-Unsubscribe, signed tokens), sent with
MAIL/RCPT/DATA, the outcome recorded and (with `--feedback`, the default) its `Email Delivered`
event emitted into the inbox. Every message must reach the server exactly once (checked by
Message-ID). Target (issue 20): >= 1,000 sends/s.

HTTP: `http_section(args)`, the SMS/WhatsApp provider run of bench/channels_http.py (target
>= 2,000 sends/s). A summary prints both rates next to their targets, with the load average.

    python bench/channels.py [--emails 2000] [--email-workers 4] [--batch 500] [--no-email-feedback] [--email-home-dir /dev/shm] [--skip-http]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from omniweave.channels import service  # noqa: E402
from omniweave.channels.dispatch import Dispatcher  # noqa: E402
from omniweave.channels.port import Message  # noqa: E402
from omniweave.runtime import Runtime  # noqa: E402
from omniweave.settings import ChannelsSettings, EmailChannelSettings, Settings  # noqa: E402
from omniweave.storage.ops.ledger import Ledger  # noqa: E402

EMAIL_TARGET = 1000.0

HTML = (
    "<html><body><h1>Hello {name}</h1><p>Our spring sale starts today: "
    '<a href="https://shop.example/sale?utm_source=email">20% off everything</a>, '
    '<a href="https://shop.example/stores">in store too</a>.</p>'
    '<p><a href="[[unsubscribe_url]]">Unsubscribe</a></p></body></html>'
)


# --- the SMTP server, in its own process ---------------------------------------------------------------


def _smtp_server(port: int, ready: Any, stop: Any, out: Any) -> None:
    from aiosmtpd.controller import Controller

    seen: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            content = envelope.original_content or envelope.content
            start = content.find(b"Message-ID:")
            seen.append(content[start : content.find(b"\r\n", start)] if start >= 0 else b"")
            return "250 2.0.0 queued"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()
    out.send((len(seen), len(set(seen))))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def email_section(args: argparse.Namespace) -> float:
    """Send `args.emails` mails end to end and print sends/s against the target; returns sends/s."""
    port = _free_port()
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    receive, send = ctx.Pipe(duplex=False)
    server = ctx.Process(target=_smtp_server, args=(port, ready, stop, send), daemon=True)
    server.start()
    if not ready.wait(30):
        raise SystemExit("the SMTP server did not start")
    home = (
        Path(tempfile.mkdtemp(prefix="ow-bench-email-", dir=args.email_home_dir or getattr(args, "home_dir", None)))
        / "home"
    )
    section = replace(
        EmailChannelSettings(),
        enabled=True,
        host="127.0.0.1",
        port=port,
        security="plain",
        connections=max(1, args.email_workers),
    )
    settings = Settings(home=str(home), channels=ChannelsSettings(public_url="https://news.example.com", email=section))
    runtime = Runtime(settings)
    n, workers = args.emails, max(1, args.email_workers)
    messages = [
        Message(
            "email",
            f"person{i}@example.org",
            {"subject": f"Spring sale, person {i}", "html": HTML.format(name=f"person {i}")},
            person_id=f"P{i}",
            campaign="spring-sale",
            message_name="sale-1",
        )
        for i in range(n)
    ]

    def dispatcher() -> Dispatcher:
        channels = service.open_channels(runtime)
        if args.email_feedback:
            return service.dispatcher_for(runtime, channels)
        return Dispatcher(Ledger(runtime.store.engine), channels)

    statuses: list[str] = []
    warm = dispatcher()  # the tables' first pages, the signing key, one connection
    warm.send(replace(messages[0], to="warm-up@example.org"), "warm-up")
    started = time.perf_counter()
    d = dispatcher()
    for first in range(0, n, args.batch):
        part = [(m, f"bench:{i}") for i, m in enumerate(messages[first : first + args.batch], start=first)]
        statuses.extend(r.status for r in d.send_many(part, workers=workers))
    elapsed = time.perf_counter() - started
    # the adapter alone (no ledger, no events): what the SMTP path costs, to see where the time goes
    direct = messages[: max(workers, n // 4)]
    t0 = time.perf_counter()

    def direct_work(part: list[Message], tag: int) -> None:
        channel = service.email_channel(runtime)
        for j, m in enumerate(part):
            channel.send(m, f"direct:{tag}:{j}")
        channel.close()

    threads = [threading.Thread(target=direct_work, args=(direct[w::workers], w)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    direct_rate = len(direct) / (time.perf_counter() - t0)
    stop.set()
    received, distinct = receive.recv()
    server.join(10)
    delivered = statuses.count("delivered")
    events = runtime.store.inbox_count()
    runtime.close()
    received, distinct = received - 1 - len(direct), distinct - 1 - len(direct)  # the warm-up and direct sends
    rate = n / elapsed
    verdict = "met" if rate >= EMAIL_TARGET and received == distinct == n else "NOT met"
    print(
        f"email: {n} messages, {workers} worker(s), feedback {'on' if args.email_feedback else 'off'}: "
        f"{elapsed:.2f} s, {rate:,.0f} sends/s end to end (target >= {EMAIL_TARGET:,.0f}/s: {verdict}); "
        f"delivered {delivered}, server received {received} ({distinct} distinct Message-IDs), "
        f"{events - (1 if args.email_feedback else 0)} feedback events; store in {home.parent.parent}"
    )
    print(
        f"email, adapter only (no ledger): {len(direct):,} sends = {direct_rate:,.0f} sends/s; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    return rate


# --- HTTP providers (SMS / WhatsApp): filled by the SMS channel -------------------------------------------


def http_section(args: argparse.Namespace) -> float | None:
    """SLOT for the HTTP provider run (SMS engineer): bench/channels_http.py's `http_section` when present."""
    try:
        import channels_http
    except ImportError:
        print("http: not measured (bench/channels_http.py is not there)")
        return None
    rate: float = channels_http.http_section(args)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=2000, help="e-mails to send (default 2000)")
    parser.add_argument(
        "--email-workers",
        type=int,
        default=4,
        help="dispatcher threads for e-mail, one SMTP connection each (default 4)",
    )
    parser.add_argument("--batch", type=int, default=500, help="messages per Dispatcher.send_many call (default 500)")
    parser.add_argument(
        "--no-email-feedback", dest="email_feedback", action="store_false", help="no Email Delivered events"
    )
    parser.add_argument("--skip-http", action="store_true", help="only the e-mail section")
    parser.add_argument("--email-home-dir", default=None, help="where the fresh home goes (/dev/shm: no fsync)")
    try:
        import channels_http

        channels_http.add_arguments(parser)
    except ImportError:
        pass
    args = parser.parse_args()
    os.environ.pop("OMNIWEAVE_SIGNING_KEY", None)
    email_rate = email_section(args)
    http_rate = None if args.skip_http else http_section(args)
    print("summary, end to end on this machine (issue 20's targets):")
    print(
        f"  email     {email_rate:8,.0f} sends/s   target >= {EMAIL_TARGET:,.0f}/s: {_verdict(email_rate, EMAIL_TARGET)}"
    )
    if http_rate is not None:
        http_target = float(getattr(sys.modules.get("channels_http"), "TARGET", 2000.0))
        print(
            f"  sms http  {http_rate:8,.0f} sends/s   target >= {http_target:,.0f}/s: {_verdict(http_rate, http_target)}"
        )
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work on the machine lowers both)")


def _verdict(rate: float, target: float) -> str:
    return "met" if rate >= target else "NOT met"


if __name__ == "__main__":
    main()
