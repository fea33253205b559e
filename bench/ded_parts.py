"""Where the DED decode's time goes: the stock VAE decode vs DED layouts (one conv injection at up block 0, one
cross-attention at up block 0, the default layout), 16 frames at 64 px, alternating, min of 4.

    .venv/bin/python bench/ded_parts.py
"""
import time, torch
from flashctl.plugins import build_host
from flashctl.context import BuildContext
torch.set_num_threads(1)
host = build_host()
bb = host.registry.create("backbone", "animatediff", {}, BuildContext())
lat = torch.randn(1, 16, 4, 16, 16); ref = torch.rand(1, 3, 64, 64) * 2 - 1
def ded(opts):
    d = host.registry.create("decoder", "detail-enhance", opts, BuildContext()); d.attach(bb); return d
variants = {"stock": None, "conv0": ded({"attention_blocks": [], "conv_blocks": [0]}),
            "attn0": ded({"attention_blocks": [0], "conv_blocks": []}), "default": ded({})}
times = {k: [] for k in variants}
with torch.no_grad():
    for r in range(4):
        for k, d in variants.items():
            t = time.perf_counter()
            if d is None: bb.decode_latents(lat)
            else: d.decode(lat, ref)
            times[k].append(time.perf_counter() - t)
for k, v in times.items(): print(k, round(min(v), 3), [round(x, 3) for x in v])
