"""A minimal FastCGI client (responder role, one request per connection),
for tests that talk to a worker directly, without nginx in front: what a
peer on the FastCGI socket can send, nginx's filters do not apply.

    r = fcgi_client.request("/run/api/fcgi.sock",
                            {"REQUEST_METHOD": "GET", "DOCUMENT_URI": "/items"})
    r.status, r.headers["content-type"], r.body, r.stderr, r.app_status

The FastCGI specification (1.0): a record is an 8-byte header (version,
type, request id, content length, padding length) and at most 65535 bytes
of content; the parameters are one stream of name-value pairs that may span
records, closed by an empty FCGI_PARAMS record, as is FCGI_STDIN.
"""

import socket
import struct

VERSION = 1
BEGIN_REQUEST = 1
END_REQUEST = 3
PARAMS = 4
STDIN = 5
STDOUT = 6
STDERR = 7
RESPONDER = 1
REQUEST_ID = 1
RECORD_MAX = 65535

__all__ = ["FcgiError", "FcgiResponse", "encode_params", "request"]


class FcgiError(RuntimeError):
    """The peer closed, answered out of protocol, or took too long."""


class FcgiResponse:
    """What the application sent: status (int, from the CGI Status header,
    200 without one), headers (lower-case names), body and stderr (bytes),
    app_status (the END_REQUEST application status)."""

    def __init__(self, stdout, stderr, app_status):
        head, sep, body = stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, body = stdout.partition(b"\n\n")
        if not sep:
            raise FcgiError("no end of CGI headers in %r" % stdout[:200])
        self.headers = {}
        for line in head.decode("latin-1").splitlines():
            name, colon, value = line.partition(":")
            if colon:
                self.headers[name.strip().lower()] = value.strip()
        self.status = int(self.headers.get("status", "200").split()[0])
        self.body = body
        self.stderr = stderr
        self.app_status = app_status

    def __repr__(self):
        return "<FcgiResponse %d %r %r>" % (self.status, self.headers,
                                            self.body[:200])


def _record(rtype, content=b""):
    padding = -len(content) % 8
    return (struct.pack(">BBHHBB", VERSION, rtype, REQUEST_ID, len(content),
                        padding, 0) + content + b"\0" * padding)


def _length(n):
    if n < 128:
        return struct.pack(">B", n)
    return struct.pack(">I", n | 0x80000000)


def _bytes(s):
    return s if isinstance(s, bytes) else s.encode("utf-8")


def encode_params(params):
    """The name-value pair stream of `params` (str or bytes keys and
    values), as FCGI_PARAMS records, the closing empty one included."""
    stream = b""
    for name, value in params.items():
        name, value = _bytes(name), _bytes(value)
        stream += _length(len(name)) + _length(len(value)) + name + value
    records = [_record(PARAMS, stream[i:i + RECORD_MAX])
               for i in range(0, len(stream), RECORD_MAX)]
    return b"".join(records) + _record(PARAMS)


def _read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise FcgiError("connection closed after %d of %d bytes"
                            % (len(data), n))
        data += chunk
    return data


def request(address, params, stdin=b"", timeout=10.0):
    """One request to `address` (a unix socket path, or a (host, port)
    tuple); returns an FcgiResponse once END_REQUEST arrives."""
    if isinstance(address, tuple):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
        # flags 0: the application closes the connection when it is done.
        out = _record(BEGIN_REQUEST, struct.pack(">HB5x", RESPONDER, 0))
        out += encode_params(params)
        for i in range(0, len(stdin), RECORD_MAX):
            out += _record(STDIN, stdin[i:i + RECORD_MAX])
        out += _record(STDIN)
        sock.sendall(out)
        stdout, stderr = b"", b""
        while True:
            (version, rtype, _rid, length,
             padding, _) = struct.unpack(">BBHHBB", _read_exact(sock, 8))
            if version != VERSION:
                raise FcgiError("record version %d" % version)
            content = _read_exact(sock, length + padding)[:length]
            if rtype == STDOUT:
                stdout += content
            elif rtype == STDERR:
                stderr += content
            elif rtype == END_REQUEST:
                app_status, protocol_status = struct.unpack(">IB3x", content)
                if protocol_status != 0:
                    raise FcgiError("protocol status %d" % protocol_status)
                return FcgiResponse(stdout, stderr, app_status)
            else:
                raise FcgiError("unexpected record type %d" % rtype)
    except OSError as e:
        raise FcgiError("%s: %s" % (address, e)) from e
    finally:
        sock.close()
