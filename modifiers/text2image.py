from modifiers.basemodifier import BaseModifier
import random


class Text2Image(BaseModifier):
    """Stable Diffusion 1.5 text to image (ComfyUI's default workflow). Needs the checkpoint
    v1-5-pruned-emaonly.safetensors, or another one named in `ckpt_name`."""

    WORKFLOW_JSON = "workflows/text2image.json"

    def __init__(self, modifications={}):
        super().__init__(modifications)

    async def apply_modifications(self):
        self.workflow["3"]["inputs"]["seed"] = await self.modify_workflow_value(
            "seed", random.randint(0, 2**32))
        self.workflow["3"]["inputs"]["steps"] = await self.modify_workflow_value("steps", 20)
        self.workflow["3"]["inputs"]["cfg"] = await self.modify_workflow_value("cfg", 8.0)
        self.workflow["3"]["inputs"]["sampler_name"] = await self.modify_workflow_value("sampler_name", "euler")
        self.workflow["3"]["inputs"]["scheduler"] = await self.modify_workflow_value("scheduler", "normal")
        self.workflow["4"]["inputs"]["ckpt_name"] = await self.modify_workflow_value(
            "ckpt_name", "v1-5-pruned-emaonly.safetensors")
        self.workflow["5"]["inputs"]["width"] = await self.modify_workflow_value("width", 512)
        self.workflow["5"]["inputs"]["height"] = await self.modify_workflow_value("height", 512)
        # No default: a request without a prompt is a 422 naming it.
        self.workflow["6"]["inputs"]["text"] = await self.modify_workflow_value("prompt")
        self.workflow["7"]["inputs"]["text"] = await self.modify_workflow_value(
            "negative_prompt", "text, watermark")
        await super().apply_modifications()
