"""Property-based fuzz of every operation in the OpenAPI schema (schemathesis + hypothesis)
against a real gateway process and the fake ComfyUI: no 5xx, no hang, nothing left running."""

from __future__ import annotations

import os
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfy_gateway.app import create_app
from comfy_gateway.settings import Settings

from .support.procs import start_fake_comfyui

schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


# With API_KEYS_FILE: the fuzz calls as a key that is not an admin (its own jobs, priorities up
# to 5), so ownership checks, /jobs and /usage filters are fuzzed too.
FUZZ_KEY = "fuzz-key-0123456789abcdef"
KEYS_TOML = f'[keys.fuzzer]\nkey = "{FUZZ_KEY}"\nmax_priority = 5\n\n[keys.other]\nkey = "other-key-0123456789abcdef"\n'


@pytest.fixture(scope="module", params=["open", "keys_file"])
def fuzz_gateway(request, tmp_path_factory, module_gateway_factory):
    base = tmp_path_factory.mktemp("fuzz")
    proc, url = start_fake_comfyui(base / "fake", base / "fake.log")
    env = {"MAX_QUEUE_SIZE": "100000"}
    if request.param == "keys_file":
        (base / "keys.toml").write_text(KEYS_TOML)
        env["API_KEYS_FILE"] = str(base / "keys.toml")
    gw = module_gateway_factory(url, **env)
    gw.headers = {"X-API-Key": FUZZ_KEY} if request.param == "keys_file" else {}
    gw.comfyui_url = url
    yield gw
    # Every job the fuzz started has ended: nothing waits, nothing is in flight.
    for _ in range(100):
        info = httpx.get(gw.url + "/queue-info", headers=gw.headers).json()
        if info["waiting"] == 0 and all(b["in_flight"] == 0 for b in info["backends"]):
            break
        time.sleep(0.1)
    assert info["waiting"] == 0 and all(b["in_flight"] == 0 for b in info["backends"]), info
    proc.stop()


def keep_local(value):
    """Point every URL the fuzz invents at a dead loopback port, and give an S3 config without
    an endpoint one: the tests must never send traffic off this machine. The address guard then
    refuses them (loopback is not allowed by default), which is a path worth fuzzing too."""
    if isinstance(value, dict):
        out = {k: keep_local(v) for k, v in value.items()}
        if isinstance(out.get("access_key_id"), str) and "bucket_name" in out:
            out["endpoint_url"] = "http://127.0.0.1:9"
        return out
    if isinstance(value, list):
        return [keep_local(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return "http://127.0.0.1:9/x"
    return value


@schema.parametrize()
@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")), deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_no_hang(case, fuzz_gateway):
    if isinstance(case.body, (dict, list)):
        case.body = keep_local(case.body)
    response = case.call(base_url=fuzz_gateway.url, timeout=30, headers=fuzz_gateway.headers)
    # 501 is the one deliberate 5xx: what this gateway's configuration does not serve (a
    # webhook when no WEBHOOK_SECRET is set to sign it).
    not_yet = response.status_code == 501 and "WEBHOOK_SECRET" in response.text
    assert response.status_code < 500 or not_yet, (case.method, case.path, response.status_code, response.text[:500])


# -- the v2 face and the early workflow check --------------------------------------------------
# The generic fuzz above sends random JSON; most of it is refused before the workflow check
# looks at it. This one builds workflows from the backend's own node classes, with links,
# numbers, strings and lists in random places, so that the check (workflows/validate.py) and
# the v2 submission meet graphs that are nearly right, which is where a check crashes.
V2_CODES = {"invalid_workflow", "invalid_request", "missing_asset", "workflow_format_ui", "idempotency_key_reuse",
            "queue_full"}


@pytest.fixture(scope="module")
def node_classes(fuzz_gateway):
    return httpx.get(fuzz_gateway.comfyui_url + "/object_info").json()


def _workflows(classes: dict):
    names = sorted(classes)
    value = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
                      st.booleans(), st.none(), st.sampled_from(["asset://" + "0" * 64, "https://127.0.0.1:9/x.png",
                                                                  "__RANDOM_INT__", "nope.png"]),
                      st.dictionaries(st.sampled_from(["__value__", "x"]), st.integers(0, 9), max_size=1))
    link = st.tuples(st.sampled_from(["1", "2", "3", "9"]), st.integers(-1, 3)).map(list)

    @st.composite
    def workflow(draw):
        wf = {}
        for node_id in ("1", "2", "3")[:draw(st.integers(1, 3))]:
            cls = draw(st.sampled_from(names))
            spec = classes[cls].get("input") or {}
            inputs = {}
            for name in [*(spec.get("required") or {}), *(spec.get("optional") or {})]:
                if draw(st.integers(0, 9)) == 0:
                    continue  # missing
                inputs[name] = draw(st.one_of(link, value, st.lists(st.integers(), max_size=3)))
            wf[node_id] = {"class_type": cls, "inputs": inputs}
        return wf
    return workflow()


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_nearly_right_workflows_get_a_clear_answer(data, fuzz_gateway, node_classes):
    wf = data.draw(_workflows(node_classes))
    key = data.draw(st.one_of(st.none(), st.sampled_from(["k1", "k2", "x" * 300, ""])))
    headers = dict(fuzz_gateway.headers) if key is None else {**fuzz_gateway.headers, "Idempotency-Key": key}
    r = httpx.post(fuzz_gateway.url + "/api/v2/jobs", json={"workflow": wf}, headers=headers, timeout=30)
    assert r.status_code in (201, 400, 422, 429), (r.status_code, r.text[:500])
    if r.status_code != 201:
        assert r.json()["error"]["code"] in V2_CODES, r.text[:500]
    g = httpx.post(fuzz_gateway.url + "/generate", json={"input": {"workflow_json": wf}}, headers=fuzz_gateway.headers,
                   timeout=30)
    assert g.status_code < 500, (g.status_code, g.text[:500])
