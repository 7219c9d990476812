import math

import torch

from emotalk3d_addon.backend.train.image_losses import photometric_loss, psnr, ssim, ssim_map


def test_ssim_identity_and_known_cases():
    torch.manual_seed(0)
    img = torch.rand(32, 40, 3)
    assert abs(float(ssim(img, img)) - 1.0) < 1e-6
    scores = [float(ssim(img, (img + s * torch.randn_like(img)).clamp(0, 1))) for s in (0.05, 0.2, 0.5)]
    assert 1 > scores[0] > scores[1] > scores[2]
    # Constant images: SSIM reduces to the luminance term (2 m1 m2 + C1) / (m1^2 + m2^2 + C1).
    a, b = torch.full((20, 20, 1), 0.2), torch.full((20, 20, 1), 0.6)
    expected = (2 * 0.2 * 0.6 + 1e-4) / (0.04 + 0.36 + 1e-4)
    interior = ssim_map(a, b)[..., 5:-5, 5:-5]
    assert torch.allclose(interior, torch.tensor(expected), atol=5e-4)


def test_photometric_loss_and_psnr():
    img = torch.rand(16, 16, 3)
    assert float(photometric_loss(img, img)) < 1e-6
    off = img + 0.1
    assert abs(float(photometric_loss(off, img, ssim_weight=0.0)) - 0.1) < 1e-6
    assert abs(psnr(off, img) - 20.0) < 1e-3
    assert math.isinf(psnr(img, img))
    x = img.clone().requires_grad_()
    photometric_loss(x, torch.zeros_like(img)).backward()
    assert x.grad.abs().sum() > 0
