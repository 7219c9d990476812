"""S2GNet alone on 60 s at 30 fps (1,800 frames) (goal >= 500x real time).

Mesh sizes: FLAME's 5,023 vertices and a 2,500-vertex face. Prints the total, the GRU part
(chunked batch and one sequential pass) and the head's arithmetic rate.
"""
import torch

from common import best_of
from emotalk3d_addon.backend.geometry.s2gnet import S2GConfig, S2GNet

frames, seconds = 1800, 60.0
feats, cond = torch.randn(frames, 768), torch.rand(frames, 9)
print(f"threads {torch.get_num_threads()}, {frames} frames")
for vertices in (5023, 2500):
    net = S2GNet(S2GConfig(768, vertices)).eval()
    net.predict(feats, cond)
    t = best_of(lambda: net.predict(feats, cond), 5)
    with torch.inference_mode():
        t_chunked = best_of(lambda: net.chunked_hidden_states(feats, cond), 5)
        t_seq = best_of(lambda: net.hidden_states(feats[None], cond[None]), 3)
    head = t - t_chunked
    flops = 2 * frames * net.config.hidden * vertices * 3
    print(f"V={vertices}: {t * 1000:.1f} ms = {seconds / t:.0f}x real time | GRU chunked {t_chunked * 1000:.1f} ms "
          f"(sequential {t_seq * 1000:.1f} ms) | head {head * 1000:.1f} ms, {flops / head / 1e9:.0f} GFLOP/s")
