"""The protocol-faithful fake ComfyUI 0.3.75, one concern per module:

- ``server``: FakeComfyUI, which wires the parts below together and owns start/stop/restart
- ``knobs``: the knobs (what the fake is told to do) and the stats (what it counts)
- ``hub``: websockets by clientId, frame publishing, dropping connections
- ``prompt_queue``: pending and running prompts, history (ComfyUI's PromptQueue)
- ``executor``, ``progress``: running a prompt and the frames it sends (execution.py)
- ``graph``: node order, cache keys and input gathering (comfy_execution/graph.py)
- ``validation``: POST /prompt validation and its 400 bodies
- ``app`` and ``routes_*``: the aiohttp application and its HTTP routes
- ``protocol``: wire facts shared by several of them (features, timestamps, frame shape)
- ``nodes``: the ported and the fake-only nodes, file naming and save counters
- ``cli``: ``python -m comfy_gateway.testing.fake_comfyui``

Import FakeComfyUI from ``comfy_gateway.testing.fake_comfyui``.
"""
