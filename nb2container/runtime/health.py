"""The image's HEALTHCHECK: ``GET /health`` on this container's port; exit 0 when it answers 200.

Only the socket module, run as ``python -I -S``: no site-packages, no HTTP library, so the probe
costs a few milliseconds of CPU and answers in time even on a busy host.
"""

import os
import socket
import sys


def main() -> int:
    port = int(os.environ.get("NB2C_PORT", "8000"))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
            connection.sendall(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            status = connection.recv(32)
    except OSError:
        return 1
    return 0 if status.split(b" ", 2)[1:2] == [b"200"] else 1


if __name__ == "__main__":
    sys.exit(main())
