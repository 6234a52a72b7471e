"""Everything that speaks ComfyUI: its HTTP API, its websocket, and the pool of backends.
Nothing here knows about the gateway's own HTTP clients."""
