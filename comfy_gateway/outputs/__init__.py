"""Where outputs go once ComfyUI made them."""
