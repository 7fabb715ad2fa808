"""A minimal OpenAI-compatible streaming server with scripted timing, written from the OpenAI API
reference: the reference against which jarvis-bench's client-side measurements are checked (the
server knows exactly when it sent each chunk)."""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self, first_token_delay=0.05, token_delay=0.02, fail_every=0, model="fake-model",
                 close_after_stream=None, sse_line_end="\n"):
        self.first_token_delay = first_token_delay
        self.token_delay = token_delay
        self.fail_every = fail_every  # every k-th POST answers 503 (0: never)
        # Seconds after a streamed response's last chunk at which the server drops the connection,
        # having announced keep-alive (no "Connection: close"); None: keep it. llama.cpp's server
        # (llama-cpp-python 0.3.36) does this after every stream, at once (0); a later close (e.g.
        # 0.05) lets the client's next request arrive first, so it is lost deterministically.
        self.close_after_stream = close_after_stream
        self.connections = 0          # TCP connections accepted
        self.sse_line_end = sse_line_end  # "\n", "\r\n" or "\r": the event-stream allows all three
        self.model = model
        self.bodies = []              # JSON bodies of the POSTs, in arrival order
        self.lock = threading.Lock()
        self.max_in_flight = 0
        self._in_flight = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with fake.lock:
                    fake.connections += 1
                # One event per segment as soon as it is written; otherwise Nagle's algorithm holds
                # a chunk until the client ACKs the previous one, and the scripted gaps blur.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self):
                if self.path != "/v1/models":
                    return self._json(404, {"error": {"message": "not found"}})
                self._json(200, {"object": "list", "data": [{"id": fake.model, "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.bodies.append(body)
                    n = len(fake.bodies)
                    fake._in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake._in_flight)
                try:
                    if fake.fail_every and n % fake.fail_every == 0:
                        return self._json(503, {"error": {"message": "overloaded", "type": "server_error"}})
                    self._stream(body, chat=self.path == "/v1/chat/completions")
                finally:
                    with fake.lock:
                        fake._in_flight -= 1

            def _json(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _event(self, obj):
                data = obj if isinstance(obj, str) else json.dumps(obj)
                eol = fake.sse_line_end
                chunk = f"data: {data}{eol}{eol}".encode()
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()

            def _stream(self, body, chat):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                n = body["max_tokens"]
                prompt = body["messages"][0]["content"] if chat else body["prompt"]
                if chat:  # the role-only chunk real servers send first; carries no token
                    self._event({"object": "chat.completion.chunk",
                                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                              "finish_reason": None}]})
                time.sleep(fake.first_token_delay)
                for i in range(n):
                    if i:
                        time.sleep(fake.token_delay)
                    text = f" w{i}"
                    choice = ({"index": 0, "delta": {"content": text}, "finish_reason": None} if chat
                              else {"index": 0, "text": text, "finish_reason": None})
                    self._event({"object": "chat.completion.chunk" if chat else "text_completion",
                                 "choices": [choice]})
                final = ({"index": 0, "delta": {}, "finish_reason": "length"} if chat
                         else {"index": 0, "text": "", "finish_reason": "length"})
                self._event({"choices": [final]})
                if body.get("stream_options", {}).get("include_usage"):
                    self._event({"choices": [], "usage": {"prompt_tokens": len(prompt.split()),
                                                          "completion_tokens": n,
                                                          "total_tokens": len(prompt.split()) + n}})
                self._event("[DONE]")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                if fake.close_after_stream is not None:
                    # Whatever the client sent meanwhile stays unread: closing then resets the
                    # connection, as a server closing an idle keep-alive connection would.
                    time.sleep(fake.close_after_stream)
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
