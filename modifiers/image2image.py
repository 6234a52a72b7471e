from modifiers.basemodifier import BaseModifier
import random


class Image2Image(BaseModifier):
    """Stable Diffusion 1.5 image to image: `input_image` (an http(s) URL, a data: URI or an
    asset:// reference) redrawn after `prompt`. Needs the checkpoint
    v1-5-pruned-emaonly.safetensors, or another one named in `ckpt_name`."""

    WORKFLOW_JSON = "workflows/image2image.json"

    def __init__(self, modifications={}):
        super().__init__(modifications)

    async def apply_modifications(self):
        self.workflow["3"]["inputs"]["seed"] = await self.modify_workflow_value(
            "seed", random.randint(0, 2**32))
        self.workflow["3"]["inputs"]["steps"] = await self.modify_workflow_value("steps", 20)
        self.workflow["3"]["inputs"]["denoise"] = await self.modify_workflow_value("denoise", 0.87)
        self.workflow["4"]["inputs"]["ckpt_name"] = await self.modify_workflow_value(
            "ckpt_name", "v1-5-pruned-emaonly.safetensors")
        self.workflow["6"]["inputs"]["text"] = await self.modify_workflow_value("prompt", "")
        self.workflow["7"]["inputs"]["text"] = await self.modify_workflow_value(
            "negative_prompt", "text, watermark")
        # The gateway fetches the URL, checks it is an image and uploads it to ComfyUI.
        self.workflow["10"]["inputs"]["image"] = await self.modify_workflow_value("input_image")
        await super().apply_modifications()
