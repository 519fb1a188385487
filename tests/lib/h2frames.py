"""Raw HTTP/2 for tests that speak to a server's port below any client library: the
client preface, frames, HPACK literal header fields, and reading frames off a socket."""

import socket
import struct

# Frame types (RFC 9113 section 6).
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7
# Flags.
END_STREAM = ACK = 0x1
END_HEADERS = 0x4

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS_EMPTY = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"   # a SETTINGS frame with none


def frame(ftype, flags, stream, payload=b"", claim=None):
    """One frame; claim: a length to put in its header instead of the payload's."""
    n = len(payload) if claim is None else claim
    return struct.pack(">I", n)[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + \
        payload


def literal(name, value):
    """An HPACK literal header field without indexing, new name, no Huffman."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def read_frame(so):
    """(type, flags, stream, payload), or None at EOF. A socket timeout propagates."""
    def exact(n):
        b = b""
        while len(b) < n:
            d = so.recv(n - len(b))
            if not d:
                return None
            b += d
        return b
    hd = exact(9)
    if hd is None:
        return None
    n = struct.unpack(">I", b"\x00" + hd[:3])[0]
    payload = exact(n) if n else b""
    if payload is None:
        return None
    return hd[3], hd[4], struct.unpack(">I", hd[5:9])[0] & 0x7fffffff, payload


# Frame types beyond the ones above; RST_STREAM's NO_ERROR; SETTINGS' initial window.
WINDOW_UPDATE = 8
NO_ERROR = 0
SETTINGS_INITIAL_WINDOW_SIZE = 4
END_STREAM_FLAG = 0x1


class Inflater:
    """HPACK decoding by libnghttp2 (ctypes): one per connection, fed every header block
    the peer sent, in order (its dynamic table follows the peer's)."""

    class _Nv(__import__("ctypes").Structure):
        import ctypes as _c
        _fields_ = [("name", _c.POINTER(_c.c_uint8)), ("value", _c.POINTER(_c.c_uint8)),
                    ("namelen", _c.c_size_t), ("valuelen", _c.c_size_t),
                    ("flags", _c.c_uint8)]

    def __init__(self):
        import ctypes
        self._c = ctypes
        self.lib = ctypes.CDLL("libnghttp2.so.14")
        self.lib.nghttp2_hd_inflate_hd2.restype = ctypes.c_ssize_t
        self.lib.nghttp2_hd_inflate_hd2.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(self._Nv), ctypes.POINTER(ctypes.c_int),
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
        self.lib.nghttp2_hd_inflate_end_headers.argtypes = [ctypes.c_void_p]
        self.lib.nghttp2_hd_inflate_del.argtypes = [ctypes.c_void_p]
        self.inf = ctypes.c_void_p()
        if self.lib.nghttp2_hd_inflate_new(ctypes.byref(self.inf)) != 0:
            raise MemoryError("nghttp2_hd_inflate_new")

    def __del__(self):
        if getattr(self, "inf", None):
            self.lib.nghttp2_hd_inflate_del(self.inf)

    def decode(self, block):
        """A whole header block (HEADERS payload without padding or priority): its
        fields as a dict of str."""
        c, out, pos = self._c, {}, 0
        nv, fl = self._Nv(), c.c_int()
        while True:
            rest = block[pos:]
            n = self.lib.nghttp2_hd_inflate_hd2(self.inf, c.byref(nv), c.byref(fl), rest,
                                                len(rest), 1)
            if n < 0:
                raise ValueError("HPACK error %d" % n)
            pos += n
            if fl.value & 0x2:  # EMIT
                out[c.string_at(nv.name, nv.namelen).decode()] = \
                    c.string_at(nv.value, nv.valuelen).decode()
            if fl.value & 0x1:  # FINAL
                self.lib.nghttp2_hd_inflate_end_headers(self.inf)
                return out
            if n == 0 and not rest:
                raise ValueError("header block ended early")


def header_block(ftype, flags, payload):
    """The header block of a HEADERS frame (padding and priority removed)."""
    if ftype != HEADERS:
        return payload
    if flags & 0x8:  # PADDED
        pad, payload = payload[0], payload[1:]
        payload = payload[:len(payload) - pad]
    if flags & 0x20:  # PRIORITY
        payload = payload[5:]
    return payload


class RawCall:
    """One call on stream 1 of its own raw HTTP/2 connection to 127.0.0.1:port, for the
    unittest.TestCase tc (its failures, its clean-up): SETTINGS acknowledged, header blocks
    decoded with libnghttp2's HPACK, no WINDOW_UPDATE ever sent, the request side open
    unless send(end=True)."""

    def __init__(self, tc, port, path, extra=(), timeout=30):
        self.so = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        tc.addCleanup(self.so.close)
        self.tc, self.inf, self.data, self.buf = tc, Inflater(), b"", b""
        hdrs = b"".join(literal(n, v) for n, v in (
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
            (b":authority", b"127.0.0.1"), (b"content-type", b"application/grpc"),
            (b"te", b"trailers")) + tuple(extra))
        self.so.sendall(PREFACE + SETTINGS_EMPTY + frame(HEADERS, END_HEADERS, 1, hdrs))

    def send(self, payload, end=False):
        self.so.sendall(frame(DATA, END_STREAM if end else 0, 1, payload))

    def frame(self):
        """The next frame; a header block's fields decoded (dict) in place of its payload."""
        f = read_frame(self.so)
        if f is None:
            return None
        ftype, flags, sid, payload = f
        if ftype == SETTINGS and not flags & ACK:
            self.so.sendall(frame(SETTINGS, ACK, 0))
        if ftype == HEADERS:
            payload = self.inf.decode(header_block(ftype, flags, payload))
        if ftype == DATA and sid == 1:
            self.data += payload
            self.buf += payload
        return ftype, flags, sid, payload

    def message(self):
        """The next whole gRPC message of stream 1."""
        while len(self.buf) < 5 or len(self.buf) < 5 + int.from_bytes(self.buf[1:5], "big"):
            if self.frame() is None:
                self.tc.fail("connection closed")
        n = int.from_bytes(self.buf[1:5], "big")
        m, self.buf = self.buf[5:5 + n], self.buf[5 + n:]
        self.data = self.buf  # data: stream 1's bytes since the last whole message
        return m

    def end(self, timeout=20, what=""):
        """Stream 1's end: (the fields of the HEADERS that ended it, the code of the
        RST_STREAM right after it, or None if the next frame was none)."""
        self.so.settimeout(timeout)
        try:
            while True:
                f = self.frame()
                if f is None:
                    self.tc.fail("closed before stream 1 ended %s" % what)
                if f[2] == 1 and f[0] == RST_STREAM:
                    self.tc.fail("stream 1 reset before its status %s: %r" % (what, f))
                if f[2] == 1 and f[0] == HEADERS and f[1] & END_STREAM:
                    hdrs = f[3]
                    break
        except socket.timeout:
            self.tc.fail("stream 1 did not end within %ss %s" % (timeout, what))
        try:
            while True:  # what follows for stream 1
                f = self.frame()
                if f is None:
                    return hdrs, None
                if f[2] == 1:
                    self.tc.assertEqual(f[0], RST_STREAM, what)
                    return hdrs, struct.unpack(">I", f[3])[0]
        except socket.timeout:
            self.tc.fail("nothing followed stream 1's status %r within %ss %s"
                         % (hdrs, timeout, what))

    def ping(self, timeout=10):
        """A PING and its ACK: the frames of stream 1 that came before the ACK."""
        self.so.settimeout(timeout)
        self.so.sendall(frame(PING, 0, 0, b"h2ping!!"))
        seen = []
        while True:
            f = self.frame()
            self.tc.assertIsNotNone(f, "closed before the PING's ACK")
            if f[0] == PING and f[1] & ACK:
                return seen
            if f[2] == 1:
                seen.append(f[:2])
