"""Raw HTTP/2 for tests that speak to a server's port below any client library: the
client preface, frames, HPACK literal header fields, and reading frames off a socket."""

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
