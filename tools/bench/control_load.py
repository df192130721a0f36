"""Control plane under load for tools/bench/run: CLIENTS connections to the
sluiced control socket, each sending `stats.get` on its own schedule so that
together they issue RATE requests per second, for SECONDS; prints the reply
latency percentiles.

    control_load.py SOCKET CLIENTS RATE SECONDS
    -> "requests N errors E p50_ms X p99_ms Y max_ms Z"
"""
import json
import socket
import sys
import threading
import time

path, clients, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
if not (1 <= clients <= 1024 and 0 < rate <= 100000 and 0 < seconds <= 3600):
    sys.exit("control_load: error: CLIENTS 1-1024, RATE 0-100000/s, SECONDS 0-3600")
interval = clients / rate
latencies, errors = [], [0]
lock = threading.Lock()
start = time.monotonic() + 0.2


def client(number):
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(path)
    reader = connection.makefile("rb")
    reader.readline()  # the greeting
    mine = []
    # Staggered so the clients' requests spread evenly over each interval.
    due = start + interval * number / clients
    request = 0
    while due < start + seconds:
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sent = time.monotonic()
        connection.sendall(json.dumps({"id": request, "cmd": "stats.get"}).encode() + b"\n")
        reply = reader.readline()
        mine.append(time.monotonic() - sent)
        if not reply or b'"ok":false' in reply:
            with lock:
                errors[0] += 1
        request += 1
        due += interval
    connection.close()
    with lock:
        latencies.extend(mine)


threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
latencies.sort()


def percentile(p):
    return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000 if latencies else 0.0


print(f"requests {len(latencies)} errors {errors[0]} p50_ms {percentile(50):.2f} "
      f"p99_ms {percentile(99):.2f} max_ms {percentile(100):.2f}")
