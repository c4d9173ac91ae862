"""moto_server for the tests: moto's own server app, answering one request at a time.

moto's stock `moto_server` is threaded and its backends check a write's condition and then
write without a lock, so two concurrent conditional writes can both succeed, which DynamoDB
never allows. Serializing requests makes every moto operation atomic, as it is in AWS.
Usage: moto_server.py [-H HOST] [-p PORT]
"""

import argparse
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()

    app = DomainDispatcherApplication(create_backend_app)
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
