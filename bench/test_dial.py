#!/usr/bin/python3
"""bench/test_dial.py - bollard-bench's own connections (bench/dial.c).

1. Nothing listens: the run stops within the connect wait (min(--timeout, 5 s)), exit 3, with
   "cannot connect to H:P within T s: Connection refused".
2. The server starts listening after the bench started: the dial is retried and succeeds, and the
   request's HEADERS frame names the method and carries :authority = the endpoint (what gRPC's
   ordinary channel sends; a channel from an fd would otherwise say "test.authority"). The
   listener then closes the connection: the call fails and the report counts it (exit 1).

usage: test_dial.py BOLLARD_BENCH"""
import socket
import struct
import subprocess
import sys
import threading
import time

BENCH = sys.argv[1]
PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'


def bound_socket():
    """A socket bound to a free port on 127.0.0.1 and not listening: connects are refused."""
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    return s, s.getsockname()[1]


def frames(buf):
    """[(type, stream, payload)] of the complete HTTP/2 frames in buf (after the preface)."""
    out, p = [], 0
    while p + 9 <= len(buf):
        ln = int.from_bytes(buf[p:p + 3], 'big')
        if p + 9 + ln > len(buf):
            break
        out.append((buf[p + 3], int.from_bytes(buf[p + 5:p + 9], 'big') & 0x7fffffff,
                    buf[p + 9:p + 9 + ln]))
        p += 9 + ln
    return out


def refused():
    s, port = bound_socket()
    ep = '127.0.0.1:%d' % port
    t0 = time.monotonic()
    r = subprocess.run([BENCH, 'put', '--total', '1', '--timeout', '0.5', '--endpoints', ep],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    took = time.monotonic() - t0
    s.close()
    err = r.stderr.decode()
    assert r.returncode == 3, (r.returncode, err)
    want = 'cannot connect to %s within 0.5 s: Connection refused' % ep
    assert want in err, err
    assert took >= 0.5, took
    print('refused: exit 3 after %.2f s: %s' % (took, want))


def late_listener():
    s, port = bound_socket()
    ep = '127.0.0.1:%d' % port
    seen = {}

    def serve():
        time.sleep(0.3)
        s.listen(1)
        c, _ = s.accept()
        c.sendall(struct.pack('>I', 0)[1:] + bytes([4, 0]) + struct.pack('>I', 0))  # SETTINGS
        buf = b''
        c.settimeout(10)
        while True:
            d = c.recv(65536)
            if not d:
                break
            buf += d
            if buf.startswith(PREFACE) and any(f[0] == 1 for f in frames(buf[len(PREFACE):])):
                break
        seen['buf'] = buf
        c.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    r = subprocess.run([BENCH, 'put', '--total', '1', '--timeout', '5', '--endpoints', ep,
                        '--no-histogram'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    th.join(10)
    s.close()
    out = r.stdout.decode() + r.stderr.decode()
    buf = seen.get('buf', b'')
    assert buf.startswith(PREFACE), buf[:40]
    headers = [f for f in frames(buf[len(PREFACE):]) if f[0] == 1]
    assert headers, frames(buf[len(PREFACE):])
    block = headers[0][2]
    # gRPC 1.51 sends these as literal, non-Huffman strings
    assert b'/etcdserverpb.KV/Put' in block, block
    assert b':authority' + bytes([len(ep)]) + ep.encode() in block, block
    assert b'test.authority' not in block, block
    assert r.returncode == 1, (r.returncode, out)
    assert 'put: 0 ok' in out, out
    print('late listener: dialled, HEADERS carry :path and :authority %s, the failed call '
          'counted (exit 1)' % ep)


refused()
late_listener()
