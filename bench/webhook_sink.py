#!/usr/bin/env python3
"""A webhook receiver for bench/messages.sh (standard library only): answers every POST
with 204 over keep-alive connections and, once it has received N requests, prints
"SINK received=N first_to_last_s=S distinct_ids=D" and exits.

    webhook_sink.py PORT N
"""
import asyncio
import os
import sys
import time

PORT, N = int(sys.argv[1]), int(sys.argv[2])
times, ids = [], set()
done = asyncio.Event()


async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
                elif name.lower() == b"webhook-id":
                    ids.add(value.strip())
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
            times.append(time.monotonic())
            if len(times) >= N:
                done.set()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", PORT)
    async with server:
        await done.wait()
    print(f"SINK received={len(times)} first_to_last_s={times[-1] - times[0]:.3f} "
          f"distinct_ids={len(ids)}", flush=True)
    os._exit(0)  # without cancelling the open connections' readers one by one


asyncio.run(main())
