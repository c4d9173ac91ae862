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
- TransactWriteItems that rolls back only the items it wrote: moto's own deep-copies the whole
  table once per item of the transaction (quadratic in the table's size: a 100-item
  transaction on a table of 10,000 items copies a million items), which made large FHIR
  transactions take minutes.
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
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType

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


def patch_transactions() -> None:
    """Makes moto's TransactWriteItems snapshot only the items it writes instead of whole tables.

    moto's implementation keeps a deep copy of each table a transaction names, taken once per
    item, and puts those copies back when an item fails. Here the copy is replaced by a record of
    each written item's previous state (taken just before moto writes it), and a failed
    transaction restores those items. Requests are serialized (see `main`), so nothing else
    runs in between."""
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        undo = []  # (table, hash, range, previous item or None), in write order
        tables = {}
        for item in transact_items:
            _, op = next(iter(item.items()))
            name = op.get("TableName")
            if name in self.tables:
                tables[name] = self.tables[name]
        saved = {}
        for name, table in tables.items():
            saved[name] = table
            self.tables[name] = _Recording(table, undo)
        try:
            original(self, transact_items)
        except Exception:
            for name, table in saved.items():
                self.tables[name] = table
            for table, hash_value, range_value, previous in reversed(undo):
                bucket = table.items[hash_value] if range_value is not None else table.items
                key = range_value if range_value is not None else hash_value
                if previous is None:
                    bucket.pop(key, None)
                else:
                    bucket[key] = previous
            raise
        finally:
            for name, table in saved.items():
                self.tables[name] = table

    DynamoDBBackend.transact_write_items = transact_write_items


class _Recording:
    """A table seen through moto's transaction code: a deep copy of it is this same proxy (so
    moto's per-item copies cost nothing), and each put or delete first records the item's
    previous state for the rollback."""

    def __init__(self, table, undo):
        self._table = table
        self._undo = undo

    def __deepcopy__(self, memo):
        return self

    def __getattr__(self, name):
        return getattr(self._table, name)

    def _record(self, hash_value, range_value):
        t = self._table
        if range_value is not None:
            previous = t.items.get(hash_value, {}).get(range_value)
        else:
            previous = t.items.get(hash_value)
        self._undo.append((t, hash_value, range_value, previous))

    def _key(self, attrs):
        t = self._table
        hash_value = DynamoType(attrs[t.hash_key_attr])
        range_value = DynamoType(attrs[t.range_key_attr]) if t.range_key_attr else None
        return hash_value, range_value

    def put_item(self, item_attrs, *args, **kwargs):
        self._record(*self._key(item_attrs))
        return self._table.put_item(item_attrs, *args, **kwargs)

    def delete_item(self, hash_value, range_value, *args, **kwargs):
        self._record(hash_value, range_value)
        return self._table.delete_item(hash_value, range_value, *args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    patch_transactions()

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
