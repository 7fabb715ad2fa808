"""Slow HTTP clients over real sockets, for the slow-client test and benchmark: N connections that
each send the start of a request and then one byte every `interval` seconds, so the request's
headers never end; meanwhile normal requests are timed. Bounded: every socket is closed on exit."""
import http.client
import json
import socket
import statistics
import threading
import time


class SlowClients:
    """`count` dribbling connections from `source` (an address on this machine) to host:port."""

    def __init__(self, host, port, count, source="127.0.0.1", interval=0.5):
        self.socks = []
        self.refused = 0  # connections the server answered (and closed) at once
        self.interval = interval
        self._stop = threading.Event()
        for _ in range(count):
            s = socket.socket()
            s.bind((source, 0))
            s.settimeout(5)
            s.connect((host, port))
            try:
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n")
            except OSError:
                pass  # refused and closed already: counted by states()
            self.socks.append(s)
        self._thread = threading.Thread(target=self._dribble, daemon=True)
        self._thread.start()

    def _dribble(self):
        while not self._stop.is_set():
            for s in self.socks:
                try:
                    s.send(b"X")
                except OSError:
                    pass
            self._stop.wait(self.interval)

    def states(self):
        """Counts of the connections by what the server did: {"open", "429", "closed"} (closed:
        ended without a 429, by EOF or reset). Peeks at what has arrived, so it may be called again."""
        out = {"open": 0, "429": 0, "closed": 0}
        for s in self.socks:
            s.setblocking(False)
            try:
                data = s.recv(4096, socket.MSG_PEEK)
                out["429" if data.startswith(b"HTTP/1.1 429") else "closed"] += 1
            except BlockingIOError:
                out["open"] += 1
            except OSError:
                out["closed"] += 1
        return out

    def wait_states(self, want, timeout=10.0):
        """states() once it equals `want` (the server answers accepted connections in its own time),
        or as it is at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.states()
            if got == want or time.monotonic() > deadline:
                return got
            time.sleep(0.1)

    def closed_by_server(self, wait=3.0):
        """How many connections the server has closed (EOF or reset), waiting up to `wait` s."""
        deadline = time.monotonic() + wait
        closed = set()
        while time.monotonic() < deadline and len(closed) < len(self.socks):
            for i, s in enumerate(self.socks):
                if i in closed:
                    continue
                s.setblocking(False)
                try:
                    while True:
                        data = s.recv(65536)
                        if not data:
                            closed.add(i)
                            break
                except BlockingIOError:
                    pass
                except OSError:
                    closed.add(i)
            time.sleep(0.05)
        return len(closed)

    def close(self):
        self._stop.set()
        self._thread.join()
        for s in self.socks:
            s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def timed_request(host, port, method, path, body=None, source="127.0.0.1", timeout=30):
    """One request on a fresh connection from `source`; returns (seconds, status, body bytes);
    status 0 when the connection failed (reset, closed without an answer, timed out)."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        return time.monotonic() - t0, r.status, data
    except (OSError, http.client.HTTPException) as e:
        return time.monotonic() - t0, 0, repr(e).encode()
    finally:
        conn.close()


NORMAL = [("GET", "/health", None),
          ("POST", "/v1/completions", {"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0})]


def normal_latencies(host, port, source="127.0.0.1", rounds=5):
    """Seconds per normal request (health and a short completion), `rounds` of each; with statuses."""
    out = []
    for _ in range(rounds):
        for method, path, body in NORMAL:
            dt, status, _ = timed_request(host, port, method, path, body, source=source)
            out.append((path, dt, status))
    return out


def summary(latencies):
    times = [dt for _, dt, _ in latencies]
    return {"median_s": statistics.median(times), "max_s": max(times), "n": len(times)}
