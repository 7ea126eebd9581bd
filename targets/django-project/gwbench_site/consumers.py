"""The WebSocket side of the ASGI targets: Channels, Django's own project for WebSockets."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer


class EchoConsumer(AsyncWebsocketConsumer):
    """WS /ws/echo: accepts (the default connect), then sends every message back unchanged.

    As shipped, Channels (4.2+) runs Django's close_old_connections through
    sync_to_async before handling each message; kept, since every Channels app pays it.
    """

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data)
