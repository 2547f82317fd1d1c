#!/usr/bin/env python3
"""Median and p99 latency of login, refresh and me against a running authgate,
one request at a time over one keep-alive connection (standard library only).
Start authgate with the per-IP rate limit off, or it answers 429 after 120 requests:

    AUTHGATE_RATE_LIMIT_PER_IP=0 cargo run --release &
    python3 bench/latency.py [--base http://127.0.0.1:8080] [--requests 200]
"""
import argparse
import http.client
import json
import statistics
import time
import urllib.parse
import uuid


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="http://127.0.0.1:8080")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    url = urllib.parse.urlparse(args.base)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80)

    def call(method, path, body=None, token=None):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        start = time.perf_counter()
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - start
        return response.status, (json.loads(data) if data else None), elapsed

    email = f"bench-{uuid.uuid4().hex}@example.com"
    credentials = {"email": email, "password": "correct horse battery"}
    status, _, _ = call("POST", "/v1/auth/register", credentials)
    assert status == 201, status

    def measure(name, count, request):
        times = []
        for _ in range(count):
            status, body, elapsed = request()
            assert status in (200, 204), (name, status, body)
            times.append(elapsed * 1000)
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        print(f"| {name} | {count} | {statistics.median(times):.2f} | {p99:.2f} |")

    print("| request | n | median ms | p99 ms |")
    print("|---|---|---|---|")
    logins = max(20, args.requests // 10)
    measure("POST /v1/auth/login", logins, lambda: call("POST", "/v1/auth/login", credentials))

    _, pair, _ = call("POST", "/v1/auth/login", credentials)
    state = {"refresh": pair["refresh_token"], "access": pair["access_token"]}

    def refresh():
        result = call("POST", "/v1/auth/refresh", {"refresh_token": state["refresh"]})
        if result[0] == 200:
            state["refresh"] = result[1]["refresh_token"]
            state["access"] = result[1]["access_token"]
        return result

    measure("POST /v1/auth/refresh", args.requests, refresh)
    measure("GET /v1/auth/me", args.requests, lambda: call("GET", "/v1/auth/me", token=state["access"]))


if __name__ == "__main__":
    main()
