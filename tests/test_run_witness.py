"""The outcome of a run as the websocket tells it (comfy/witness.py), checked against what real
ComfyUIs wrote into /history for the same runs (shared/comfyui-protocol)."""
from __future__ import annotations

from typing import Any

import pytest

from comfy_gateway.comfy.history import output_refs
from comfy_gateway.comfy.witness import RunWitness

from .support.transcripts import transcript

VERSIONS = ["v0.3.75", "v0.33.0"]


def replay(run: dict[str, Any]) -> tuple[RunWitness, dict[str, Any]]:
    """Feed a recorded run's frames to a witness, as the backend routes them (its prompt's only);
    the recorded history entry beside it."""
    [(prompt_id, entry)] = run["history"].items()
    witness = RunWitness(run["request"]["prompt"])
    for frame in run["ws_messages"]:
        data = frame.get("data") or {}
        if frame.get("kind") == "text" and data.get("prompt_id") == prompt_id:
            witness.see(frame["type"], data)
    return witness, entry


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["10_empty_save.json", "11_empty_save_cached.json", "20_upload_pipeline.json"])
def test_a_successful_run_is_known_from_its_frames_as_history_records_it(version: str, name: str):
    witness, recorded = replay(transcript(name, version))
    entry = witness.entry()
    assert entry is not None
    assert entry["outputs"] == recorded["outputs"]
    assert list(output_refs(entry)) == list(output_refs(recorded))
    assert entry["status"]["status_str"] == recorded["status"]["status_str"] == "success"
    assert [m[0] for m in entry["status"]["messages"]] == [m[0] for m in recorded["status"]["messages"]]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_failed_run_is_left_to_history(version: str):
    witness, recorded = replay(transcript("40_runtime_errors.json", version)["corrupt_image"])
    assert recorded["status"]["status_str"] == "error"
    assert witness.entry() is None  # the error's details are in the entry's messages


def test_a_gap_in_the_frames_is_left_to_history():
    witness, _ = replay(transcript("10_empty_save.json"))
    assert witness.entry() is not None
    witness.missed_frames()
    assert witness.entry() is None


def test_a_run_seen_only_in_part_is_left_to_history():
    run = transcript("10_empty_save.json")
    [(prompt_id, _)] = run["history"].items()
    witness = RunWitness(run["request"]["prompt"])
    for frame in run["ws_messages"]:  # joined after execution_start
        if frame.get("type") not in ("status", "execution_start"):
            witness.see(frame["type"], frame.get("data") or {})
    assert witness.entry() is None


def test_a_cached_output_node_without_its_frame_is_left_to_history():
    workflow = {"1": {"class_type": "EmptyImage", "inputs": {}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}

    def run(cached: list[str], executed: list[str]) -> dict[str, Any] | None:
        witness = RunWitness(workflow)
        witness.see("execution_start", {"prompt_id": "p"})
        witness.see("execution_cached", {"nodes": cached, "prompt_id": "p"})
        for node in executed:
            witness.see("executed", {"node": node, "output": {"images": [{"filename": "a.png"}]}, "prompt_id": "p"})
        witness.see("execution_success", {"prompt_id": "p"})
        return witness.entry()

    assert run(["1"], ["2"]) is not None  # a cached source feeds the node that reported
    assert run(["1", "2"], ["2"]) is not None  # the cached output node sent its frame (as 0.3.64+)
    assert run(["1", "2"], []) is None  # it did not (older ComfyUIs): only /history knows
