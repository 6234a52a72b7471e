"""Nodes, prompt validation and execution order of the fake ComfyUI (see fake_comfyui.py).

Ports of the parts of ComfyUI 0.3.75 that shape what a client sees: ``validate_prompt`` /
``validate_inputs`` (execution.py), ``ExecutionList`` node ordering (comfy_execution/graph.py),
``get_save_image_path`` file naming (folder_paths.py) and the image nodes of nodes.py.
An IMAGE is a list of Pillow RGB images (ComfyUI's ``[B, H, W, 3]`` tensor).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import mimetypes
import os
import random
import time
import traceback
from typing import Any

from PIL import Image, ImageChops, ImageFilter, ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

MAX_RESOLUTION = 16384
OOM_TIPS = ("This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked "
            "before you might have accidentally set the batch_size to a large number.")


class InterruptProcessingException(Exception):
    """Raised at a node boundary (or between FakeSlow steps) after POST /interrupt."""


class OutOfMemoryError(RuntimeError):
    """Stands in for torch.OutOfMemoryError (FakeFail exception_type)."""


OutOfMemoryError.__module__ = "torch"


class Images(list):
    """A batch of RGB images, printed like the tensor ComfyUI would hold."""

    def __repr__(self) -> str:
        w, h = self[0].size if self else (0, 0)
        return f"tensor(<IMAGE shape=[{len(self)}, {h}, {w}, 3]>)"

    __str__ = __repr__


def full_type_name(klass: type) -> str:
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


def is_link(obj: Any) -> bool:
    return (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str)
            and isinstance(obj[1], (int, float)))


def format_value(x: Any) -> Any:
    if x is None or isinstance(x, (int, float, bool, str)):
        return x
    return str(x)


class Dirs:
    """input/ output/ temp/ under one base directory, as ComfyUI's --base-directory."""

    def __init__(self, base_dir: str):
        self.base = os.path.abspath(base_dir)
        self.input = os.path.join(self.base, "input")
        self.output = os.path.join(self.base, "output")
        self.temp = os.path.join(self.base, "temp")
        for d in (self.input, self.output, self.temp):
            os.makedirs(d, exist_ok=True)

    def by_type(self, type_name: str | None) -> str | None:
        return {"output": self.output, "temp": self.temp, "input": self.input}.get(type_name or "")

    def annotated(self, name: str) -> tuple[str, str | None]:
        for tag, d in (("[output]", self.output), ("[input]", self.input), ("[temp]", self.temp)):
            if name.endswith(tag):
                return name[:-len(tag) - 1], d
        return name, None

    def annotated_path(self, name: str) -> str:
        name, base = self.annotated(name)
        return os.path.join(base or self.input, name)


class SaveCounters:
    """folder_paths.get_save_image_path, with the directory scan done once per prefix.

    ComfyUI rescans the folder on every save; the fake scans it the first time a
    (folder, prefix) is used and then counts in memory (O(1) per save, same names).
    """

    def __init__(self) -> None:
        self._next: dict[tuple[str, str], int] = {}

    def clear(self) -> None:
        self._next.clear()

    def save_path(self, prefix: str, output_dir: str, width: int = 0, height: int = 0):
        if "%" in prefix:
            now = time.localtime()
            for k, v in (("%width%", width), ("%height%", height), ("%year%", now.tm_year),
                         ("%month%", f"{now.tm_mon:02}"), ("%day%", f"{now.tm_mday:02}"),
                         ("%hour%", f"{now.tm_hour:02}"), ("%minute%", f"{now.tm_min:02}"),
                         ("%second%", f"{now.tm_sec:02}")):
                prefix = prefix.replace(k, str(v))
        subfolder = os.path.dirname(os.path.normpath(prefix))
        filename = os.path.basename(os.path.normpath(prefix))
        full = os.path.join(output_dir, subfolder)
        common = os.path.commonpath((output_dir, os.path.abspath(full)))
        if common != output_dir:
            raise Exception("**** ERROR: Saving image outside the output folder is not allowed."
                            f"\n full_output_folder: {os.path.abspath(full)}"
                            f"\n         output_dir: {output_dir}\n         commonpath: {common}")
        key = (os.path.abspath(full), os.path.normcase(filename))
        if key not in self._next:
            self._next[key] = self._scan(full, filename)
        os.makedirs(full, exist_ok=True)
        return full, filename, self._next[key], subfolder

    def advance(self, full: str, filename: str, counter: int) -> None:
        self._next[(os.path.abspath(full), os.path.normcase(filename))] = counter

    @staticmethod
    def _scan(full: str, filename: str) -> int:
        plen = len(filename)
        best = 0
        try:
            names = os.listdir(full)
        except FileNotFoundError:
            return 1
        for name in names:
            head = name[:plen + 1]
            if os.path.normcase(head[:-1]) != os.path.normcase(filename) or head[-1:] != "_":
                continue
            try:
                best = max(best, int(name[plen + 1:].split("_")[0]))
            except ValueError:
                pass
        return best + 1


class NodeContext:
    """What a running node may use besides its inputs."""

    def __init__(self, dirs: Dirs, counters: SaveCounters, progress=None):
        self.dirs, self.counters = dirs, counters
        self.progress = progress  # async (value, total) -> None; raises when interrupted


# ----------------------------------------------------------------------------- nodes
class Node:
    NAME = ""
    DISPLAY_NAME: str | None = None
    CATEGORY = "image"
    DESCRIPTION = ""
    MODULE = "nodes"
    OUTPUT_NODE = False
    RETURN_TYPES: tuple = ("IMAGE",)
    OUTPUT_TOOLTIPS: tuple | None = None
    V3 = False
    VALIDATE_ARGS: tuple = ()
    INPUTS: dict = {}

    def __init__(self, dirs: Dirs):
        self.dirs = dirs

    def input_types(self) -> dict:
        return self.INPUTS

    def is_changed(self, inputs: dict) -> Any:
        return False

    def run(self, ctx: NodeContext, **kw) -> tuple[tuple, dict | None]:
        raise NotImplementedError

    async def arun(self, ctx: NodeContext, **kw) -> tuple[tuple, dict | None]:
        return await asyncio.to_thread(self.run, ctx, **kw)

    def object_info(self) -> dict:
        it = self.input_types()
        info = {"input": it, "input_order": {k: list(v) for k, v in it.items()},
                "output": list(self.RETURN_TYPES), "output_is_list": [False] * len(self.RETURN_TYPES),
                "output_name": list(self.RETURN_TYPES)}
        if self.V3:
            info["output_tooltips"] = [None] * len(self.RETURN_TYPES)
        info.update(name=self.NAME, display_name=None if self.V3 else (self.DISPLAY_NAME or self.NAME),
                    description=self.DESCRIPTION, python_module=self.MODULE,
                    category=self.CATEGORY, output_node=self.OUTPUT_NODE)
        if self.V3:
            info.update(deprecated=False, experimental=False, api_node=False)
        elif self.OUTPUT_TOOLTIPS:
            info["output_tooltips"] = list(self.OUTPUT_TOOLTIPS)
        return info


def _int(default, lo, hi, step=None, **extra):
    d = {"default": default, "min": lo, "max": hi}
    if step is not None:
        d["step"] = step
    d.update(extra)
    return ("INT", d)


class EmptyImage(Node):
    NAME = "EmptyImage"
    INPUTS = {"required": {"width": _int(512, 1, MAX_RESOLUTION, 1), "height": _int(512, 1, MAX_RESOLUTION, 1),
                           "batch_size": _int(1, 1, 4096),
                           "color": _int(0, 0, 0xFFFFFF, 1, display="color")}}

    def run(self, ctx, width, height, batch_size=1, color=0):
        img = Image.new("RGB", (width, height), ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF))
        return (Images([img] * batch_size),), None


class EmptyLatentImage(Node):
    NAME, DISPLAY_NAME, CATEGORY = "EmptyLatentImage", "Empty Latent Image", "latent"
    DESCRIPTION = "Create a new batch of empty latent images to be denoised via sampling."
    RETURN_TYPES, OUTPUT_TOOLTIPS = ("LATENT",), ("The empty latent image batch.",)
    INPUTS = {"required": {
        "width": _int(512, 16, MAX_RESOLUTION, 8, tooltip="The width of the latent images in pixels."),
        "height": _int(512, 16, MAX_RESOLUTION, 8, tooltip="The height of the latent images in pixels."),
        "batch_size": _int(1, 1, 4096, tooltip="The number of latent images in the batch.")}}

    def run(self, ctx, width, height, batch_size=1):
        return ({"samples": f"zeros([{batch_size}, 4, {height // 8}, {width // 8}])"},), None


class LoadImage(Node):
    NAME, DISPLAY_NAME = "LoadImage", "Load Image"
    RETURN_TYPES = ("IMAGE", "MASK")
    VALIDATE_ARGS = ("image",)

    def input_types(self):
        d = self.dirs.input
        files = [f for f in os.listdir(d) if os.path.isfile(os.path.join(d, f))
                 and (mimetypes.guess_type(f, strict=False)[0] or "").startswith("image/")]
        return {"required": {"image": (sorted(files), {"image_upload": True})}}

    def VALIDATE_INPUTS(self, image):
        name, base = self.dirs.annotated(image)
        if not os.path.exists(os.path.join(base or self.dirs.input, name)):
            return "Invalid image file: {}".format(image)
        return True

    def is_changed(self, inputs):
        try:
            st = os.stat(self.dirs.annotated_path(inputs.get("image", "")))
            return f"{st.st_mtime_ns}:{st.st_size}"
        except (OSError, TypeError):
            return None

    def run(self, ctx, image):
        img = Image.open(self.dirs.annotated_path(image))
        images, masks, size = Images(), [], None
        for frame in ImageSequence.Iterator(img):
            frame = ImageOps.exif_transpose(frame)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = frame.convert("RGB")
            size = size or rgb.size
            if rgb.size != size:
                continue
            if "A" in frame.getbands():
                masks.append(ImageOps.invert(frame.getchannel("A")))
            elif frame.mode == "P" and "transparency" in frame.info:
                masks.append(ImageOps.invert(frame.convert("RGBA").getchannel("A")))
            else:
                masks.append(Image.new("L", (64, 64), 0))
            images.append(rgb)
        if img.format == "MPO":
            images, masks = Images(images[:1]), masks[:1]
        return (images, masks), None


class ImageInvert(Node):
    NAME, DISPLAY_NAME = "ImageInvert", "Invert Image"
    INPUTS = {"required": {"image": ("IMAGE",)}}

    def run(self, ctx, image):
        return (Images(ImageOps.invert(i) for i in image),), None


_RESAMPLE = {"nearest-exact": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
             "area": Image.Resampling.BOX, "bicubic": Image.Resampling.BICUBIC,
             "lanczos": Image.Resampling.LANCZOS}


def _upscale(img: Image.Image, width: int, height: int, method: str, crop: str) -> Image.Image:
    if crop == "center":
        ow, oh = img.size
        old_aspect, new_aspect = ow / oh, width / height
        x = y = 0
        if old_aspect > new_aspect:
            x = round((ow - ow * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((oh - oh * (old_aspect / new_aspect)) / 2)
        img = img.crop((x, y, ow - x, oh - y))
    return img.resize((width, height), _RESAMPLE.get(method, Image.Resampling.BILINEAR))


class ImageScale(Node):
    NAME, DISPLAY_NAME, CATEGORY = "ImageScale", "Upscale Image", "image/upscaling"
    INPUTS = {"required": {"image": ("IMAGE",), "upscale_method": (list(_RESAMPLE),),
                           "width": _int(512, 0, MAX_RESOLUTION, 1), "height": _int(512, 0, MAX_RESOLUTION, 1),
                           "crop": (["disabled", "center"],)}}

    def run(self, ctx, image, upscale_method, width, height, crop):
        if width == 0 and height == 0:
            return (image,), None
        w0, h0 = image[0].size
        if width == 0:
            width = max(1, round(w0 * height / h0))
        elif height == 0:
            height = max(1, round(h0 * width / w0))
        return (Images(_upscale(i, width, height, upscale_method, crop) for i in image),), None


class ImageBlur(Node):
    NAME, CATEGORY, MODULE, V3 = "ImageBlur", "image/postprocessing", "comfy_extras.nodes_post_processing", True
    INPUTS = {"required": {"image": ("IMAGE", {}), "blur_radius": _int(1, 1, 31, 1),
                           "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1})}}

    def run(self, ctx, image, blur_radius, sigma):
        if blur_radius == 0:
            return (image,), None
        f = ImageFilter.GaussianBlur(radius=sigma * blur_radius)  # pixel sigma of ComfyUI's kernel
        return (Images(i.filter(f) for i in image),), None


class ImageBlend(Node):
    NAME, CATEGORY, MODULE, V3 = "ImageBlend", "image/postprocessing", "comfy_extras.nodes_post_processing", True
    MODES = ["normal", "multiply", "screen", "overlay", "soft_light", "difference"]
    INPUTS = {"required": {"image1": ("IMAGE", {}), "image2": ("IMAGE", {}),
                           "blend_factor": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
                           "blend_mode": ("COMBO", {"multiselect": False, "options": MODES})}}

    def run(self, ctx, image1, image2, blend_factor, blend_mode):
        out = Images()
        for i, a in enumerate(image1):
            b = image2[min(i, len(image2) - 1)]
            if b.size != a.size:
                b = _upscale(b, a.size[0], a.size[1], "bicubic", "center")
            if blend_mode not in self.MODES:
                raise ValueError(f"Unsupported blend mode: {blend_mode}")
            mixed = {"normal": lambda: b, "multiply": lambda: ImageChops.multiply(a, b),
                     "screen": lambda: ImageChops.screen(a, b), "overlay": lambda: ImageChops.overlay(a, b),
                     "soft_light": lambda: ImageChops.soft_light(a, b),
                     "difference": lambda: ImageChops.subtract(a, b)}[blend_mode]()
            out.append(Image.blend(a, mixed, blend_factor))
        return (out,), None


class SaveImage(Node):
    NAME, DISPLAY_NAME, OUTPUT_NODE, RETURN_TYPES = "SaveImage", "Save Image", True, ()
    DESCRIPTION = "Saves the input images to your ComfyUI output directory."
    TYPE, COMPRESS = "output", 4
    INPUTS = {"required": {
        "images": ("IMAGE", {"tooltip": "The images to save."}),
        "filename_prefix": ("STRING", {"default": "ComfyUI", "tooltip": (
            "The prefix for the file to save. This may include formatting information such as "
            "%date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.")})},
        "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def prefix_append(self) -> str:
        return ""

    def run(self, ctx, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        out_dir = self.dirs.by_type(self.TYPE)
        w, h = images[0].size
        full, filename, counter, subfolder = ctx.counters.save_path(
            filename_prefix + self.prefix_append(), out_dir, w, h)
        results = []
        for batch_number, img in enumerate(images):
            meta = PngInfo()
            if prompt is not None:
                meta.add_text("prompt", json.dumps(prompt))
            for k, v in (extra_pnginfo or {}).items():
                meta.add_text(k, json.dumps(v))
            file = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            img.save(os.path.join(full, file), pnginfo=meta, compress_level=self.COMPRESS)
            results.append({"filename": file, "subfolder": subfolder, "type": self.TYPE})
            counter += 1
        ctx.counters.advance(full, filename, counter)
        return (), {"images": results}


class PreviewImage(SaveImage):
    NAME, DISPLAY_NAME = "PreviewImage", "Preview Image"
    TYPE, COMPRESS = "temp", 1
    INPUTS = {"required": {"images": ("IMAGE",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def prefix_append(self) -> str:
        return "_temp_" + "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))


# ---------------------------------------------------------------- fake-only test nodes
def _black(images):
    return images if images else Images([Image.new("RGB", (64, 64))])


class FakeSlow(Node):
    """Sleeps ``seconds`` in ``steps`` steps, sending ``progress`` after each; passes images on."""
    NAME, DISPLAY_NAME, CATEGORY, MODULE = "FakeSlow", "Fake Slow", "testing", "fake_comfyui"
    INPUTS = {"required": {"seconds": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 86400.0, "step": 0.01}),
                           "steps": _int(1, 1, 1_000_000)},
              "optional": {"images": ("IMAGE",)}}

    async def arun(self, ctx, seconds=1.0, steps=1, images=None):
        per = seconds / steps
        for i in range(1, steps + 1):
            if per > 0:
                await asyncio.sleep(per)
            await ctx.progress(i, steps)
        return (_black(images),), None


class FakeFail(Node):
    """Raises ``exception_type(message)`` when run: an execution_error."""
    NAME, DISPLAY_NAME, CATEGORY, MODULE = "FakeFail", "Fake Fail", "testing", "fake_comfyui"
    ERRORS = {"RuntimeError": RuntimeError, "ValueError": ValueError,
              "torch.OutOfMemoryError": OutOfMemoryError}
    INPUTS = {"required": {"message": ("STRING", {"default": "FakeFail: intentional failure"})},
              "optional": {"exception_type": (list(ERRORS),), "images": ("IMAGE",)}}

    def run(self, ctx, message="FakeFail: intentional failure", exception_type="RuntimeError", images=None):
        raise self.ERRORS[exception_type](message)


class FakeBigOutput(Node):
    """Output node writing a ``bytes``-long file in 1 MiB chunks, reported under ``output_key``."""
    NAME, DISPLAY_NAME, CATEGORY, MODULE = "FakeBigOutput", "Fake Big Output", "testing", "fake_comfyui"
    OUTPUT_NODE, RETURN_TYPES = True, ()
    INPUTS = {"required": {"bytes": _int(1 << 20, 0, 1 << 50)},
              "optional": {"filename_prefix": ("STRING", {"default": "ComfyUI_big"}),
                           "output_key": ("STRING", {"default": "gifs"}),
                           "format": ("STRING", {"default": "video/mp4"}), "images": ("IMAGE",)}}
    CHUNK = bytes(range(256)) * 4096

    def run(self, ctx, bytes, filename_prefix="ComfyUI_big", output_key="gifs", format="video/mp4", images=None):
        ext = mimetypes.guess_extension(format) or ".bin"
        full, filename, counter, subfolder = ctx.counters.save_path(filename_prefix, self.dirs.output)
        file = f"{filename}_{counter:05}_{ext}"
        left = bytes
        with open(os.path.join(full, file), "wb") as f:
            while left > 0:
                n = min(left, len(self.CHUNK))
                f.write(self.CHUNK[:n])
                left -= n
        ctx.counters.advance(full, filename, counter + 1)
        return (), {output_key: [{"filename": file, "subfolder": subfolder, "type": "output", "format": format}]}


NODE_CLASSES = [EmptyImage, EmptyLatentImage, LoadImage, ImageInvert, ImageScale, ImageBlur, ImageBlend,
                SaveImage, PreviewImage, FakeSlow, FakeFail, FakeBigOutput]


def make_nodes(dirs: Dirs) -> dict[str, Node]:
    return {cls.NAME: cls(dirs) for cls in NODE_CLASSES}


# ------------------------------------------------------------------------ validation
def _input_info(class_inputs: dict, name: str):
    for category in ("required", "optional", "hidden"):
        if name in class_inputs.get(category, {}):
            info = class_inputs[category][name]
            if isinstance(info, str):
                return info, category, {}
            return info[0], category, (info[1] if len(info) > 1 else {})
    return None, None, None


def _types_match(received: Any, wanted: Any) -> bool:
    if received == "*" or wanted == "*" or received == wanted:
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in wanted.split(",")})


def _err(type_, message, details, extra):
    return {"type": type_, "message": message, "details": details, "extra_info": extra}


def _validate_inputs(nodes, prompt, uid, validated):
    if uid in validated:
        return validated[uid]
    inputs = prompt[uid]["inputs"]
    node = nodes[prompt[uid]["class_type"]]
    class_inputs = node.input_types()
    names = list(dict.fromkeys([*class_inputs.get("required", {}), *class_inputs.get("optional", {})]))
    errors, valid = [], True
    for x in names:
        input_type, category, extra = _input_info(class_inputs, x)
        if x not in inputs:
            if category == "required":
                errors.append(_err("required_input_missing", "Required input is missing", f"{x}",
                                   {"input_name": x}))
            continue
        val, info = inputs[x], (input_type, extra)
        if isinstance(val, list):
            if len(val) != 2:
                errors.append(_err("bad_linked_input",
                                   "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                                   f"{x}", {"input_name": x, "input_config": info, "received_value": val}))
                continue
            o_id = val[0]
            received = nodes[prompt[o_id]["class_type"]].RETURN_TYPES[val[1]]
            if not _types_match(received, input_type):
                errors.append(_err("return_type_mismatch", "Return type mismatch between linked nodes",
                                   f"{x}, received_type({received}) mismatch input_type({input_type})",
                                   {"input_name": x, "input_config": info, "received_type": received,
                                    "linked_node": val}))
                continue
            try:
                if _validate_inputs(nodes, prompt, o_id, validated)[0] is False:
                    valid = False
            except Exception as ex:
                valid = False
                validated[o_id] = (False, [_err(
                    "exception_during_inner_validation", "Exception when validating inner node", str(ex),
                    {"input_name": x, "input_config": info, "exception_message": str(ex),
                     "exception_type": full_type_name(type(ex)),
                     "traceback": _format_tb(ex), "linked_node": val})], o_id)
            continue
        try:
            if isinstance(val, dict) and "__value__" in val:
                val = inputs[x] = val["__value__"]
            conv = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(
                input_type if isinstance(input_type, str) else "")
            if conv is not None:
                val = inputs[x] = conv(val)
        except Exception as ex:
            errors.append(_err("invalid_input_type", f"Failed to convert an input value to a {input_type} value",
                               f"{x}, {val}, {ex}", {"input_name": x, "input_config": info,
                                                     "received_value": val, "exception_message": str(ex)}))
            continue
        if x in node.VALIDATE_ARGS:
            continue
        if "min" in extra and val < extra["min"]:
            errors.append(_err("value_smaller_than_min", "Value {} smaller than min of {}".format(val, extra["min"]),
                               f"{x}", {"input_name": x, "input_config": info, "received_value": val}))
            continue
        if "max" in extra and val > extra["max"]:
            errors.append(_err("value_bigger_than_max", "Value {} bigger than max of {}".format(val, extra["max"]),
                               f"{x}", {"input_name": x, "input_config": info, "received_value": val}))
            continue
        if isinstance(input_type, list) and val not in input_type:
            big = len(input_type) > 20
            errors.append(_err("value_not_in_list", "Value not in list",
                               f"{x}: '{val}' not in {f'(list of length {len(input_type)})' if big else input_type}",
                               {"input_name": x, "input_config": None if big else info, "received_value": val}))
    if node.VALIDATE_ARGS:
        args = {x: (None if is_link(inputs[x]) else inputs[x]) for x in inputs if x in node.VALIDATE_ARGS}
        r = node.VALIDATE_INPUTS(**args)
        if r is not True:
            for x in args:
                errors.append(_err("custom_validation_failed", "Custom validation failed for node",
                                   f"{x}" + ("" if r is False else f" - {r}"), {"input_name": x}))
    ret = (False, errors, uid) if errors or valid is not True else (True, [], uid)
    validated[uid] = ret
    return ret


def _format_tb(ex: BaseException) -> list[str]:
    return traceback.format_tb(ex.__traceback__)


def validate_prompt(nodes: dict[str, Node], prompt: dict, partial: list | None = None):
    """execution.validate_prompt: (ok, error, outputs_to_execute, node_errors)."""
    outputs = []
    for x in prompt:
        if "class_type" not in prompt[x]:
            return False, _err("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                               f"Node ID '#{x}'", {}), [], {}
        class_type = prompt[x]["class_type"]
        node = nodes.get(class_type)
        if node is None:
            return False, _err("invalid_prompt", f"Cannot execute because node {class_type} does not exist.",
                               f"Node ID '#{x}'", {}), [], {}
        if node.OUTPUT_NODE and (partial is None or x in partial):
            outputs.append(x)
    if not outputs:
        return False, _err("prompt_no_outputs", "Prompt has no outputs", "", {}), [], {}
    good, failed, node_errors, validated = [], [], {}, {}
    for o in outputs:
        try:
            valid, reasons, _ = _validate_inputs(nodes, prompt, o, validated)
        except Exception as ex:
            valid = False
            reasons = [_err("exception_during_validation", "Exception when validating node", str(ex),
                            {"exception_type": full_type_name(type(ex)), "traceback": _format_tb(ex)})]
            validated[o] = (False, reasons, o)
        if valid is True:
            good.append(o)
            continue
        failed.append((o, reasons))
        for node_id, (ok, node_reasons, _) in validated.items():
            if ok is not True and node_reasons:
                if node_id not in node_errors:
                    node_errors[node_id] = {"errors": node_reasons, "dependent_outputs": [],
                                            "class_type": prompt[node_id]["class_type"]}
                node_errors[node_id]["dependent_outputs"].append(o)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failed for e in errs)
        return False, _err("prompt_outputs_failed_validation", "Prompt outputs failed validation", details, {}), \
            [], node_errors
    return True, None, good, node_errors


# ------------------------------------------------------------------- execution order
class ExecutionList:
    """comfy_execution.graph.ExecutionList: same node order, output nodes first when ready."""

    def __init__(self, prompt: dict, nodes: dict[str, Node], is_cached):
        self.prompt, self.nodes, self.is_cached = prompt, nodes, is_cached
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict] = {}

    def _is_output(self, nid: str) -> bool:
        return self.nodes[self.prompt[nid]["class_type"]].OUTPUT_NODE

    def add_node(self, node_id: str) -> None:
        stack, links = [node_id], []
        while stack:
            uid = stack.pop()
            if uid in self.pending:
                continue
            self.pending[uid], self.block_count[uid], self.blocking[uid] = True, 0, {}
            for value in self.prompt[uid]["inputs"].values():
                if is_link(value):
                    if not self.is_cached(value[0]):
                        stack.append(value[0])
                    links.append((value[0], uid))
        for frm, to in links:
            if not self.is_cached(frm):
                self.add_node(frm)
                if to not in self.blocking[frm]:
                    self.blocking[frm][to] = True
                    self.block_count[to] += 1

    def empty(self) -> bool:
        return not self.pending

    def next_node(self) -> str:
        ready = [n for n in self.pending if self.block_count[n] == 0]
        for n in ready:
            if self._is_output(n):
                return n
        for n in ready:
            if any(self._is_output(b) for b in self.blocking[n]):
                return n
        for n in ready:
            if any(self._is_output(b2) for b in self.blocking[n] for b2 in self.blocking[b]):
                return n
        if not ready:
            raise RuntimeError("Dependency cycle detected")
        return ready[0]

    def complete(self, nid: str) -> None:
        del self.pending[nid]
        for b in self.blocking.pop(nid):
            self.block_count[b] -= 1


def node_signatures(prompt: dict, nodes: dict[str, Node]) -> dict[str, str]:
    """Cache keys like ComfyUI's classic cache: class, IS_CHANGED, inputs and ancestors."""
    sigs: dict[str, str] = {}

    def sig(nid: str) -> str:
        if nid not in sigs:
            node = prompt[nid]
            parts = [node["class_type"], nodes[node["class_type"]].is_changed(node["inputs"])]
            for k in sorted(node["inputs"]):
                v = node["inputs"][k]
                parts.append([k, ["ANCESTOR", sig(v[0]), v[1]] if is_link(v) else v])
            sigs[nid] = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        return sigs[nid]

    for nid in prompt:
        sig(nid)
    return sigs


def get_input_data(node: Node, inputs: dict, outputs: dict, prompt: dict, extra_data: dict) -> dict:
    """execution.get_input_data: {name: [value]} for the node's call, hidden inputs included."""
    class_inputs = node.input_types()
    data = {}
    for x, v in inputs.items():
        _, category, _ = _input_info(class_inputs, x)
        if is_link(v):
            src = outputs.get(v[0])
            data[x] = [src[v[1]]] if src is not None and v[1] < len(src) else [None]
        elif category is not None:
            data[x] = [v]
    for x, kind in class_inputs.get("hidden", {}).items():
        if kind == "PROMPT":
            data[x] = [prompt]
        elif kind == "EXTRA_PNGINFO":
            data[x] = [extra_data.get("extra_pnginfo")]
    return data
