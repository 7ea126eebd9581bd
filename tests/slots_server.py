"""An HTTP/1.1 server of known capacity: ``slots`` requests served at once, each for ``service_ms``.

Its peak throughput is slots / service time (Little's law), e.g. 10 slots of 20 ms:
500 requests/s; requests beyond the slots wait in order. Run as
``python slots_server.py PORT SLOTS SERVICE_MS [FIRST_FREE]``; it prints ``ready`` when
listening. Every path answers 200 with a short body, on kept-alive connections. With
FIRST_FREE = 1 the first request is answered at once (the check a run makes before load).
"""

from __future__ import annotations

import asyncio
import sys

BODY = b"ok"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\n" + BODY


async def main(port: int, slots: int, service_s: float, first_free: bool) -> None:
    semaphore = asyncio.Semaphore(slots)
    free = [first_free]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                if free[0]:
                    free[0] = False
                else:
                    async with semaphore:
                        await asyncio.sleep(service_s)
                writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=2048)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    first = len(sys.argv) > 4 and sys.argv[4] == "1"
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000, first))
