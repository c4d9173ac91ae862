"""moto_server for the tests: moto's own server app, answering one request at a time, with the
DynamoDB behaviours moto lacks and a few faults the tests inject.

- One request at a time: moto's stock `moto_server` is threaded and its backends check a write's
  condition and then write without a lock, so two concurrent conditional writes can both
  succeed, which DynamoDB never allows. Serializing requests makes every moto operation atomic,
  as it is in AWS.
- Idempotent TransactWriteItems: DynamoDB answers a repeated `ClientRequestToken` (within 10
  minutes, same request) with the first call's success instead of applying it again; moto
  ignores the token. Implemented here, so the tests can show a retried transaction is not a
  false conflict.
- Faults, chosen by the table name a test creates:
  - `lost-response-*`: the first TransactWriteItems of each token is applied, then answered
    with a 500 (the response was lost), so the SDK retries it;
  - `unprocessed-*`: BatchWriteItem applies only the first half of each request and returns
    the rest as `UnprocessedItems`, as DynamoDB does under throttling.

Usage: moto_server.py [-H HOST] [-p PORT]
"""

import argparse
import hashlib
import io
import json
import threading
import time

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

TARGET_PREFIX = "DynamoDB_20120810."
TOKEN_LIFETIME = 600.0


def call(app, environ, body):
    """Runs `app` on `environ` with `body`; returns (status line, headers, body bytes)."""
    environ = dict(environ)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured["status"] = status
        captured["headers"] = headers

    out = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], out


def json_reply(start_response, status, payload):
    body = json.dumps(payload).encode()
    start_response(
        status,
        [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(body)))],
    )
    return [body]


class DynamoDbExtras:
    def __init__(self, app):
        self.app = app
        # token -> (request digest, time, status, headers, body)
        self.tokens = {}
        # requests whose response was lost once (lost-response tables)
        self.lost = set()

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(TARGET_PREFIX):
            return self.app(environ, start_response)
        op = target[len(TARGET_PREFIX):]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if op == "TransactWriteItems":
            return self.transact(environ, start_response, body)
        if op == "BatchWriteItem":
            return self.batch_write(environ, start_response, body)
        status, headers, out = call(self.app, environ, body)
        start_response(status, headers)
        return [out]

    def transact(self, environ, start_response, body):
        request = json.loads(body or b"{}")
        token = request.get("ClientRequestToken")
        digest = hashlib.sha256(
            json.dumps(request.get("TransactItems"), sort_keys=True).encode()
        ).hexdigest()
        now = time.monotonic()
        self.tokens = {t: v for t, v in self.tokens.items() if now - v[1] < TOKEN_LIFETIME}
        seen = self.tokens.get(token) if token else None
        if seen is not None:
            if seen[0] != digest:
                return json_reply(
                    start_response,
                    "400 Bad Request",
                    {
                        "__type": "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
                        "message": "the ClientRequestToken was used with other parameters",
                    },
                )
            start_response(seen[2], seen[3])
            return [seen[4]]
        status, headers, out = call(self.app, environ, body)
        if status.startswith("200"):
            if token:
                self.tokens[token] = (digest, now, status, headers, out)
            tables = {
                op.get("TableName", "")
                for item in request.get("TransactItems", [])
                for op in item.values()
                if isinstance(op, dict)
            }
            # The first time a request (by token, else by content) reaches a lost-response
            # table, it is applied and its response lost.
            lost_key = token or digest
            if lost_key not in self.lost and any(t.startswith("lost-response-") for t in tables):
                self.lost.add(lost_key)
                return json_reply(
                    start_response,
                    "500 Internal Server Error",
                    {
                        "__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                        "message": "injected fault: the response was lost",
                    },
                )
        start_response(status, headers)
        return [out]

    def batch_write(self, environ, start_response, body):
        request = json.loads(body or b"{}")
        items = request.get("RequestItems", {})
        held = {}
        for table, writes in items.items():
            if table.startswith("unprocessed-") and len(writes) > 1:
                half = (len(writes) + 1) // 2
                items[table], held[table] = writes[:half], writes[half:]
        if not held:
            status, headers, out = call(self.app, environ, body)
            start_response(status, headers)
            return [out]
        status, headers, out = call(self.app, environ, json.dumps(request).encode())
        if not status.startswith("200"):
            start_response(status, headers)
            return [out]
        reply = json.loads(out or b"{}")
        unprocessed = reply.setdefault("UnprocessedItems", {})
        for table, writes in held.items():
            unprocessed.setdefault(table, []).extend(writes)
        return json_reply(start_response, "200 OK", reply)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()

    app = DynamoDbExtras(DomainDispatcherApplication(create_backend_app))
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    run_simple(
        args.host,
        args.port,
        serialized,
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
