#!/usr/bin/env python3
"""Refresh latency under whatever else runs (standard library only): CHAINS threads each
log in once, then rotate their own refresh token, one request at a time, until STOP_FILE
exists; prints "CHAINS refreshes=N p50_ms=A p99_ms=B max_ms=C errors=E".

    refresh_chains.py BASE EMAIL PASSWORD CHAINS STOP_FILE
"""
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse

BASE, EMAIL, PASSWORD, CHAINS, STOP = sys.argv[1:6]
url = urllib.parse.urlparse(BASE)
latencies, errors, lock = [], [0], threading.Lock()


def post(conn, path, body):
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"{}")


def chain():
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    status, pair = post(conn, "/v1/auth/login", {"email": EMAIL, "password": PASSWORD})
    assert status == 200, (status, pair)
    token = pair["refresh_token"]
    while not os.path.exists(STOP):
        started = time.perf_counter()
        status, pair = post(conn, "/v1/auth/refresh", {"refresh_token": token})
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            if status == 200:
                latencies.append(elapsed)
                token = pair["refresh_token"]
            else:
                errors[0] += 1
                return


threads = [threading.Thread(target=chain) for _ in range(int(CHAINS))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
latencies.sort()
p99 = latencies[int(len(latencies) * 0.99)] if latencies else 0
print(f"CHAINS refreshes={len(latencies)} p50_ms={statistics.median(latencies or [0]):.1f} "
      f"p99_ms={p99:.1f} max_ms={max(latencies or [0]):.1f} errors={errors[0]}")
