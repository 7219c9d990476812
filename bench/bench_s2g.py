"""S2GNet alone on 60 s at 30 fps (1,800 frames), FLAME-size mesh (5,023 vertices).

Prints the time and the speed-up over real time (goal >= 500x).
"""
import torch

from common import NUM_VERTICES, best_of
from emotalk3d_addon.backend.geometry.s2gnet import S2GConfig, S2GNet

frames, seconds = 1800, 60.0
net = S2GNet(S2GConfig(768, NUM_VERTICES)).eval()
feats, cond = torch.randn(frames, 768), torch.rand(frames, 9)
net.predict(feats, cond)
t = best_of(lambda: net.predict(feats, cond), 5)
with torch.inference_mode():
    t_gru = best_of(lambda: net.hidden_states(feats[None], cond[None]), 5)
print(f"S2GNet 60 s @ 30 fps, V={NUM_VERTICES}: {t * 1000:.1f} ms  ({seconds / t:.0f}x real time); "
      f"GRU part {t_gru * 1000:.1f} ms, head {1000 * (t - t_gru):.1f} ms")
