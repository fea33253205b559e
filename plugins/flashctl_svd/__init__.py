"""flashctl built-in plugin: the Stable Video Diffusion backbone (`svd`)."""
