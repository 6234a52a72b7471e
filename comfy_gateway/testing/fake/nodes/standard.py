"""The ComfyUI nodes the fake ports (nodes.py and comfy_extras.nodes_post_processing): same
inputs, outputs and object_info, with Pillow doing the pixel work."""
from __future__ import annotations

import json
import mimetypes
import os
import random

from PIL import Image, ImageChops, ImageFilter, ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

from comfy_gateway.testing.fake.nodes.base import MAX_RESOLUTION, Images, Node, int_input


class EmptyImage(Node):
    NAME = "EmptyImage"
    INPUTS = {"required": {"width": int_input(512, 1, MAX_RESOLUTION, 1),
                           "height": int_input(512, 1, MAX_RESOLUTION, 1),
                           "batch_size": int_input(1, 1, 4096),
                           "color": int_input(0, 0, 0xFFFFFF, 1, display="color")}}

    def run(self, ctx, width, height, batch_size=1, color=0):
        img = Image.new("RGB", (width, height), ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF))
        return (Images([img] * batch_size),), None


class EmptyLatentImage(Node):
    NAME, DISPLAY_NAME, CATEGORY = "EmptyLatentImage", "Empty Latent Image", "latent"
    DESCRIPTION = "Create a new batch of empty latent images to be denoised via sampling."
    RETURN_TYPES, OUTPUT_TOOLTIPS = ("LATENT",), ("The empty latent image batch.",)
    INPUTS = {"required": {
        "width": int_input(512, 16, MAX_RESOLUTION, 8, tooltip="The width of the latent images in pixels."),
        "height": int_input(512, 16, MAX_RESOLUTION, 8, tooltip="The height of the latent images in pixels."),
        "batch_size": int_input(1, 1, 4096, tooltip="The number of latent images in the batch.")}}

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
                           "width": int_input(512, 0, MAX_RESOLUTION, 1),
                           "height": int_input(512, 0, MAX_RESOLUTION, 1),
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
    INPUTS = {"required": {"image": ("IMAGE", {}), "blur_radius": int_input(1, 1, 31, 1),
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
