#!/usr/bin/python3
"""bench/test_compare.py - bench/compare --quick as a smoke test (issue 5): both servers
answer and the table prints, with a figure for each server in every row of the suite.

Not a timed assertion: the figures' values are the benchmark's business. What is checked
is their presence and the one derived row's arithmetic: "put 1/1, p50 above one fdatasync"
is that row's p50 less the fdatasync timed before it (one round: no means in between).
Exit 77 (a skip for meson) without Debian's etcd, as compare's own.

usage: test_compare.py COMPARE BOLLARD_STORE BOLLARD_BENCH"""
import re
import subprocess
import sys

COMPARE, STORE, BENCH = sys.argv[1:4]


def main():
    p = subprocess.run([sys.executable, COMPARE, '--quick', '--bollard', STORE, '--bench', BENCH],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=280)
    sys.stdout.write(p.stdout)
    sys.stderr.write(p.stderr)
    if p.returncode == 77:
        return 77
    problems = []
    if p.returncode != 0:
        problems.append('compare exited %d' % p.returncode)
    rows = {}
    for line in p.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if line.startswith('| ') and len(cells) == 4 and cells[0] != 'figure':
            rows[cells[0]] = cells[1:]
    want = ['put 1/1, req/s', 'put 1/1, p50 ms', 'put 1/1, one fdatasync p50 ms (before the row)',
            'put 1/1, p50 above one fdatasync, ms', 'put 10/100, req/s', 'put 100/1000, req/s',
            'range linearizable 10/100, req/s', 'range serializable 10/100, req/s',
            'txn-put 10/100, req/s', 'watch 1000 watchers/100 keys, events/s',
            'peak RSS after the suite, MB', '5k keys of 256 B: RSS, MB',
            '5k keys of 256 B: restart to serving, s', '3 members: put 1/1, req/s']
    number = re.compile(r'^-?[0-9.]+(e-?[0-9]+)?$')
    for name in want:
        got = rows.get(name)
        if got is None:
            problems.append('no row %r' % name)
        elif not (number.match(got[0]) and number.match(got[1])):
            problems.append('row %r: %s' % (name, got))
    for col, server in ((0, 'etcd'), (1, 'Bollard')):
        try:
            p50 = float(rows['put 1/1, p50 ms'][col])
            floor = float(rows['put 1/1, one fdatasync p50 ms (before the row)'][col])
            above = float(rows['put 1/1, p50 above one fdatasync, ms'][col])
        except (KeyError, ValueError):
            continue  # reported above
        # the table prints 3 significant digits
        if floor <= 0 or abs(above - (p50 - floor)) > 0.006 * max(p50, 1e-3) + 0.002:
            problems.append('%s: p50 %g less fdatasync %g is not %g' % (server, p50, floor, above))
    for msg in problems:
        print('FAIL:', msg)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
