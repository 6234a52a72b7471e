from modifiers.basemodifier import BaseModifier


class ImageEdit(BaseModifier):
    """Load an image (an http(s) URL, a data: URI or an asset:// reference), invert or blur it,
    and scale it. Runs on any ComfyUI, with or without model weights."""

    WORKFLOW_JSON = "workflows/image_edit.json"

    # Typed parameters: validated before the job is queued (a 422 names a bad one) and shown in
    # /docs and at GET /modifiers. Those with node/input are set in the workflow for us.
    PARAMETERS = {
        "image": {"type": "image", "node": "1", "input": "image"},
        "effect": {"type": "string", "enum": ["invert", "blur", "none"], "default": "invert",
                   "description": "what to do to the image"},
        "blur_radius": {"type": "integer", "node": "3", "input": "blur_radius", "default": 3,
                        "minimum": 1, "maximum": 31, "description": "used by effect=blur"},
        "sigma": {"type": "number", "node": "3", "input": "sigma", "default": 1.0,
                  "minimum": 0.1, "maximum": 10.0, "description": "used by effect=blur"},
        "width": {"type": "integer", "node": "4", "input": "width", "default": 0, "minimum": 0,
                  "maximum": 8192, "description": "0: from height, keeping the aspect ratio; both 0: unchanged"},
        "height": {"type": "integer", "node": "4", "input": "height", "default": 0, "minimum": 0,
                   "maximum": 8192, "description": "0: from width, keeping the aspect ratio"},
        "upscale_method": {"type": "string", "node": "4", "input": "upscale_method", "default": "bilinear",
                           "enum": ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]},
    }

    def __init__(self, modifications={}):
        super().__init__(modifications)

    async def apply_modifications(self):
        # The effect picks a branch of the graph: the scaler reads from the chosen node, and the
        # unused one is dropped (ComfyUI would not run it anyway).
        effect = await self.modify_workflow_value("effect", "invert")
        source = {"invert": "2", "blur": "3", "none": "1"}[effect]
        self.workflow["4"]["inputs"]["image"] = [source, 0]
        for node in {"invert": ["3"], "blur": ["2"], "none": ["2", "3"]}[effect]:
            del self.workflow[node]
        await super().apply_modifications()
