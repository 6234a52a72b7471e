"""Which workflow inputs name a model file, and which of ComfyUI's models folders each loads
from; and whether a file's content is a model at all.

ComfyUI 0.3.75's /object_info lists a loader's input as a bare choice list (empty without
models) and does not say which folder it reads, so the folder comes from a table of ComfyUI's
own loaders (read from its nodes.py and comfy_extras), extended by MODEL_LOADERS_FILE for
custom nodes: a JSON object {"NodeClass": {"input_name": "folder"}}.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from yarl import URL

from .errors import InputWrongType
from .find import InputRef

# ComfyUI 0.3.75's loaders: class_type -> {input name: models folder}.
BUILTIN_LOADERS: dict[str, dict[str, str]] = {
    "CheckpointLoaderSimple": {"ckpt_name": "checkpoints"},
    "CheckpointLoader": {"ckpt_name": "checkpoints"},
    "ImageOnlyCheckpointLoader": {"ckpt_name": "checkpoints"},
    "unCLIPCheckpointLoader": {"ckpt_name": "checkpoints"},
    "CreateHookModelAsLora": {"ckpt_name": "checkpoints"},
    "CreateHookModelAsLoraModelOnly": {"ckpt_name": "checkpoints"},
    "LoraLoader": {"lora_name": "loras"},
    "LoraLoaderModelOnly": {"lora_name": "loras"},
    "CreateHookLora": {"lora_name": "loras"},
    "CreateHookLoraModelOnly": {"lora_name": "loras"},
    "VAELoader": {"vae_name": "vae"},
    "ControlNetLoader": {"control_net_name": "controlnet"},
    "DiffControlNetLoader": {"control_net_name": "controlnet"},
    "UNETLoader": {"unet_name": "diffusion_models"},
    "CLIPLoader": {"clip_name": "text_encoders"},
    "DualCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    "TripleCLIPLoader": {f"clip_name{i}": "text_encoders" for i in (1, 2, 3)},
    "QuadrupleCLIPLoader": {f"clip_name{i}": "text_encoders" for i in (1, 2, 3, 4)},
    "CLIPVisionLoader": {"clip_name": "clip_vision"},
    "StyleModelLoader": {"style_model_name": "style_models"},
    "GLIGENLoader": {"gligen_name": "gligen"},
    "UpscaleModelLoader": {"model_name": "upscale_models"},
    "LatentUpscaleModelLoader": {"model_name": "latent_upscale_models"},
    "HypernetworkLoader": {"hypernetwork_name": "hypernetworks"},
    "PhotoMakerLoader": {"photomaker_model_name": "photomaker"},
    "ModelPatchLoader": {"name": "model_patches"},
    "AudioEncoderLoader": {"audio_encoder_name": "audio_encoders"},
}

# What a model file may be, told from its first bytes; the extension a loader lists it under.
FORMAT_EXTENSIONS = {"safetensors": ".safetensors", "gguf": ".gguf", "torch-zip": ".pt", "pickle": ".ckpt"}
# Names ComfyUI's folders list (folder_paths.supported_pt_extensions, and .gguf for GGUF loaders).
_KEEP_EXTENSIONS = {
    "safetensors": {".safetensors", ".sft"},
    "gguf": {".gguf"},
    "torch-zip": {".pt", ".pth", ".ckpt", ".bin", ".pt2"},
    "pickle": {".ckpt", ".pt", ".pth", ".bin", ".pkl"},
}
SNIFF_BYTES = 16
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024


class LoaderTable:
    def __init__(self, loaders: dict[str, dict[str, str]]):
        self._loaders = loaders

    @classmethod
    def load(cls, extra: Path | None) -> "LoaderTable":
        table = {k: dict(v) for k, v in BUILTIN_LOADERS.items()}
        if extra is not None:
            try:
                data = json.loads(Path(extra).read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"MODEL_LOADERS_FILE {extra}: {exc}") from None
            if not isinstance(data, dict) or not all(
                    isinstance(v, dict) and all(isinstance(f, str) for f in v.values()) for v in data.values()):
                raise ValueError(f'MODEL_LOADERS_FILE {extra}: expected {{"NodeClass": {{"input": "folder"}}}}')
            for node, inputs in data.items():
                table.setdefault(node, {}).update(inputs)
        return cls(table)

    def folder(self, class_type: str, input_name: str) -> str | None:
        return self._loaders.get(class_type, {}).get(input_name)


@dataclass(frozen=True, slots=True)
class ModelRef:
    ref: InputRef
    folder: str


def split_model_refs(workflow: dict[str, Any], refs: list[InputRef],
                     table: LoaderTable) -> tuple[list[ModelRef], list[InputRef]]:
    """(the refs that name a model, with their folder; the other refs, images and such)."""
    models, others = [], []
    for ref in refs:
        node = workflow.get(ref.path[0])
        class_type = node.get("class_type") if isinstance(node, dict) else None
        folder = table.folder(str(class_type), str(ref.path[2])) if len(ref.path) == 3 else None
        if folder is not None and ref.kind in ("url", "asset"):
            models.append(ModelRef(ref, folder))
        else:
            others.append(ref)
    return models, others


def sniff_model(head: bytes) -> str:
    """The model format of a file from its first bytes; InputWrongType if it is none."""
    if len(head) >= 9 and head[8:9] == b"{":
        (size,) = struct.unpack("<Q", head[:8])
        if 2 <= size <= _MAX_SAFETENSORS_HEADER:
            return "safetensors"
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"  # torch.save's zip archive (.pt, .pth, .ckpt, .bin)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"  # torch.save's legacy pickle format
    raise InputWrongType("not a model file: its content is none of safetensors, GGUF, or a PyTorch "
                         "checkpoint (.ckpt/.pt/.pth/.bin)")


def model_filename(source: str, fmt: str, sha256: str) -> str:
    """The file's name on a backend: a hash prefix (so the same content keeps one stable name
    and different contents never clash) and the name the URL gave, with an extension the
    loader lists."""
    stem, ext = "model", ""
    if source.lower().startswith(("http://", "https://")):
        try:
            path = PurePosixPath(URL(source).path)
            stem, ext = path.stem or stem, path.suffix.lower()
        except ValueError:
            pass
    if ext not in _KEEP_EXTENSIONS[fmt]:
        ext = FORMAT_EXTENSIONS[fmt]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80].strip("._") or "model"
    return f"{sha256[:12]}-{safe}{ext}"
