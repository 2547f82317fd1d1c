#!/usr/bin/env python3
"""Client-side chores of bench/run.sh that are awkward in shell (standard library only).

    client.py register  BASE EMAIL PASSWORD           -> 201 or exits non-zero
    client.py access    BASE EMAIL PASSWORD           -> prints one access token
    client.py refresh-tokens BASE EMAIL PASSWORD N OUT [--threads T]
                                                      -> N distinct refresh tokens in OUT
    client.py argon2-ms BASE EMAIL [--count 20]       -> median ms of 20 sequential failed logins
    client.py startup-ms ENV_FILE LOG -- CMD...       -> ms from exec to /health/ready 200

Nothing here is timed by wrk: these only prepare inputs or measure what wrk cannot.
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse


def connect(base):
    url = urllib.parse.urlparse(base)
    return http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)


def call(conn, method, path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    data = response.read()
    return response.status, data


def login(conn, email, password):
    status, data = call(conn, "POST", "/v1/auth/login", {"email": email, "password": password})
    if status != 200:
        sys.exit(f"login answered {status}: {data[:200]!r}")
    return json.loads(data)


def cmd_register(args):
    status, data = call(connect(args.base), "POST", "/v1/auth/register",
                        {"email": args.email, "password": args.password})
    if status != 201:
        sys.exit(f"register answered {status}: {data[:200]!r}")


def cmd_access(args):
    print(login(connect(args.base), args.email, args.password)["access_token"])


def cmd_refresh_tokens(args):
    # One login per token: each starts its own session, so spending one token never
    # touches another (no grace-window or theft paths in the timed run).
    tokens = [None] * args.count
    cursor = iter(range(args.count))
    lock = threading.Lock()
    failure = []

    def worker():
        conn = connect(args.base)  # keep-alive: the connection is reused for every login
        while not failure:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            try:
                tokens[index] = login(conn, args.email, args.password)["refresh_token"]
            except SystemExit as err:
                failure.append(str(err))
            except Exception as err:  # noqa: BLE001 - reported, then the run stops
                failure.append(repr(err))

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failure:
        sys.exit(f"preparing refresh tokens failed: {failure[0]}")
    with open(args.out, "w") as out:
        out.write("\n".join(tokens) + "\n")


def cmd_argon2_ms(args):
    # A wrong password costs one argon2id verify and no database write, so on an idle
    # server its latency is the hash time plus a fraction of a millisecond.
    conn = connect(args.base)
    body = {"email": args.email, "password": "not the password at all"}
    times = []
    for _ in range(args.count):
        start = time.perf_counter()
        status, data = call(conn, "POST", "/v1/auth/login", body)
        times.append((time.perf_counter() - start) * 1000)
        if status != 401:
            sys.exit(f"wrong-password login answered {status}: {data[:200]!r}")
    print(f"{statistics.median(times):.2f}")


def cmd_startup_ms(args):
    env = dict(os.environ)
    with open(args.env_file) as lines:
        for line in lines:
            name, _, value = line.rstrip("\n").partition("=")
            if name:
                env[name] = value
    url = urllib.parse.urlparse(env["AUTHGATE_ISSUER"])
    log = open(args.log, "ab")
    start = time.perf_counter()
    process = subprocess.Popen(args.cmd, env=env, stdout=log, stderr=log)
    try:
        deadline = start + 30
        while time.perf_counter() < deadline:
            if process.poll() is not None:
                sys.exit(f"authgate exited with {process.returncode} before it was ready")
            try:
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=1)
                conn.request("GET", "/health/ready")
                if conn.getresponse().status == 200:
                    print(f"{(time.perf_counter() - start) * 1000:.1f}")
                    return
            except OSError:
                pass
            time.sleep(0.002)
        sys.exit("authgate was not ready within 30 s")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("register")
    p.add_argument("base"); p.add_argument("email"); p.add_argument("password")
    p.set_defaults(run=cmd_register)

    p = sub.add_parser("access")
    p.add_argument("base"); p.add_argument("email"); p.add_argument("password")
    p.set_defaults(run=cmd_access)

    p = sub.add_parser("refresh-tokens")
    p.add_argument("base"); p.add_argument("email"); p.add_argument("password")
    p.add_argument("count", type=int); p.add_argument("out")
    p.add_argument("--threads", type=int, default=16)
    p.set_defaults(run=cmd_refresh_tokens)

    p = sub.add_parser("argon2-ms")
    p.add_argument("base"); p.add_argument("email")
    p.add_argument("--count", type=int, default=20)
    p.set_defaults(run=cmd_argon2_ms)

    p = sub.add_parser("startup-ms")
    p.add_argument("env_file"); p.add_argument("log")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(run=cmd_startup_ms)

    args = parser.parse_args()
    if getattr(args, "cmd", None) and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    args.run(args)


if __name__ == "__main__":
    main()
