"""Progress that reads right on the real ComfyUI: EmptyImage -> SaveImage finishes too fast for
ComfyUI to report each node on its way, yet a finished job says every node done."""

from __future__ import annotations

import httpx

from .conftest import Gateway, empty_save
from .support.sse import collect


async def test_a_finished_job_says_every_node_done(gateway: Gateway, client: httpx.AsyncClient):
    r = await client.post(gateway.url + "/generate/sync", json={"input": {"workflow_json": empty_save(prefix="prog")}})
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert (r.json()["progress"]["nodes_done"], r.json()["progress"]["nodes_total"]) == (2, 2)
    stream = await collect(client, "POST", gateway.url + "/generate/stream",
                           json_body={"input": {"workflow_json": empty_save(prefix="prog2")}})
    done = [e.data["progress"]["nodes_done"] for e in stream.events if e.event == "progress"]
    assert done == sorted(done) and done[-1] == 2, done
    assert stream.events[-1].data["result"]["progress"]["nodes_done"] == 2
