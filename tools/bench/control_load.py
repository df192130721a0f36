"""Control plane under load for tools/bench/run: CLIENTS connections to the
sluiced control socket, each sending `stats.get` on its own schedule so that
together they issue RATE requests per second, for SECONDS; prints the reply
latency percentiles.

    control_load.py SOCKET CLIENTS RATE SECONDS
    -> "requests N errors E p50_ms X p99_ms Y max_ms Z"

One thread drives every connection through a selector: with a thread per
client, Python's GIL would queue the clients behind each other and the
latencies would measure the interpreter rather than the daemon. A client
sends its next request only after the reply to the previous one (as
`sluicectl` does); a reply that comes late delays that client's later
requests instead of piling them up.
"""
import json
import selectors
import socket
import sys
import time

path, clients, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
if not (1 <= clients <= 1024 and 0 < rate <= 100000 and 0 < seconds <= 3600):
    sys.exit("control_load: error: CLIENTS 1-1024, RATE 0-100000/s, SECONDS 0-3600")
interval = clients / rate


class Client:
    def __init__(self, number, start):
        self.connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.connection.connect(path)
        self.buffer = b""
        self.greeted = False
        # Staggered so the clients' requests spread evenly over each interval.
        self.due = start + interval * number / clients
        self.sent_at = None
        self.request = 0


latencies, errors = [], 0
selector = selectors.DefaultSelector()
start = time.monotonic() + 0.2
end = start + seconds
everyone = [Client(number, start) for number in range(clients)]
for client in everyone:
    selector.register(client.connection, selectors.EVENT_READ, client)

while True:
    now = time.monotonic()
    for client in everyone:
        if client.greeted and client.sent_at is None and client.due <= now and client.due < end:
            client.connection.sendall(json.dumps({"id": client.request, "cmd": "stats.get"}).encode() + b"\n")
            client.sent_at = time.monotonic()
            client.request += 1
            client.due += interval
    waiting = [c for c in everyone if c.sent_at is not None or not c.greeted]
    pending = [c.due for c in everyone if c.sent_at is None and c.greeted and c.due < end]
    if not waiting and not pending:
        break
    if now > end + 10:
        sys.exit(f"control_load: error: {len(waiting)} requests unanswered 10 s after the end")
    timeout = max(0.0, min(pending) - time.monotonic()) if pending else 1.0
    for key, _ in selector.select(timeout):
        client = key.data
        data = client.connection.recv(1 << 20)
        if not data:
            sys.exit("control_load: error: the daemon closed a connection")
        client.buffer += data
        while b"\n" in client.buffer:
            line, client.buffer = client.buffer.split(b"\n", 1)
            if not client.greeted:
                client.greeted = True
                continue
            latencies.append(time.monotonic() - client.sent_at)
            client.sent_at = None
            if b'"ok":false' in line:
                errors += 1

for client in everyone:
    client.connection.close()
latencies.sort()


def percentile(p):
    return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000 if latencies else 0.0


print(f"requests {len(latencies)} errors {errors} p50_ms {percentile(50):.2f} "
      f"p99_ms {percentile(99):.2f} max_ms {percentile(100):.2f}")
