"""The three stages (preprocess, generation, postprocess) and their supervised worker pools."""
