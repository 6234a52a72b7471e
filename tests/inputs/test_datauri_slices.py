"""Big data: URIs are decoded slice by slice (so the event loop gets the GIL back between two):
the bytes come out the same as one decode would give, and malformed data is refused wherever
it lies."""

from __future__ import annotations

import base64
import os

import pytest

from comfy_gateway.inputs import datauri
from comfy_gateway.inputs.datauri import decode_data_uri
from comfy_gateway.inputs.errors import InputInvalid, InputTooLarge


@pytest.fixture
def small_slices(monkeypatch):
    monkeypatch.setattr(datauri, "SLICE", 64)  # many slice boundaries in a few hundred bytes


@pytest.mark.parametrize("size", [1, 2, 3, 47, 48, 49, 500, 1001])
def test_sliced_decode_gives_the_bytes_back(small_slices, size):
    data = os.urandom(size)
    b64 = base64.b64encode(data).decode()
    assert decode_data_uri("data:application/octet-stream;base64," + b64, 10**6)[0] == data
    wrapped = "\r\n".join(b64[i:i + 76] for i in range(0, len(b64), 76)) + "\n"  # breaks across slices
    assert decode_data_uri("data:;base64," + wrapped, 10**6)[0] == data
    urlsafe = base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert decode_data_uri("data:;base64," + urlsafe, 10**6)[0] == data


def test_a_big_uri_decodes_whole():
    data = os.urandom(3 * datauri.SLICE + 5)
    assert decode_data_uri("data:;base64," + base64.b64encode(data).decode(), 10**8)[0] == data


def test_malformed_data_in_a_later_slice_is_refused(small_slices):
    good = base64.b64encode(os.urandom(600)).decode()
    with pytest.raises(InputInvalid, match="does not decode"):
        decode_data_uri("data:;base64," + good[:500] + "!" + good[501:], 10**6)
    # Two streams glued, the first ending with its '=' exactly where a slice ends (64 chars).
    first = base64.b64encode(os.urandom(47)).decode()
    assert len(first) == 64 and first.endswith("=")
    with pytest.raises(InputInvalid, match="padding"):
        decode_data_uri("data:;base64," + first + base64.b64encode(os.urandom(30)).decode(), 10**6)


def test_too_large_is_refused(small_slices):
    with pytest.raises(InputTooLarge, match="MAX_INPUT_BYTES"):
        decode_data_uri("data:;base64," + base64.b64encode(os.urandom(3000)).decode(), 1000)
