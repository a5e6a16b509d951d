"""A TCP proxy of the tests' own between the workers and MariaDB (the
stack's WORKER_DB_PORT, see scripts/run-local.sh --help): what a fault
drill puts on the path to the database.

    proxy = DbProxy(db_port)   # or a function returning it, asked per connection
    proxy.port             # where it listens (a free port it bound)
    proxy.delay = 0.35     # each chunk the server sends arrives this late
    proxy.drop_all()       # close every open connection
    proxy.close()
"""

import socket
import threading
import time


class DbProxy:
    """Forwards 127.0.0.1:port to 127.0.0.1:target, one thread per
    direction and connection. `target`: a port, or a function returning it
    (the stack's database port is known only once its start has chosen it)."""

    def __init__(self, target):
        self.target = target
        self.delay = 0.0
        self.closed = False
        self.lock = threading.Lock()
        self.conns = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                target = self.target() if callable(self.target) \
                    else self.target
                server = socket.create_connection(("127.0.0.1", target),
                                                  timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns.append((client, server))
            threading.Thread(target=self._pipe, args=(client, server, False),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True),
                             daemon=True).start()

    def _pipe(self, src, dst, from_server):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_server and self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop_all(self):
        """Close every open connection (the workers see them closed)."""
        with self.lock:
            conns, self.conns = self.conns, []
        for pair in conns:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self):
        self.closed = True
        self.listener.close()
        self.drop_all()
