"""Projector shapes, token counts, the shared pyramid conv, and the derived image_seq_length."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from colonpipe.model import ColonGPTConfig, build_projector, num_image_tokens, pyramid_levels
from colonpipe.model.projector import PyramidProjector


@pytest.mark.parametrize(
    "ptype, grid, tokens",
    [
        ("ppc_14_7_1", 27, 246),
        ("ppc_6_3_1", 12, 46),
        ("ppc_4_2_1", 8, 21),
        ("ppc_8_4_2_1", 16, 85),
        ("ppc_5", 5, 25),
        ("ppc_1", 4, 1),
        ("mlp2x_gelu", 27, 729),
        ("linear", 12, 144),
    ],
)
def test_projector_output_shape_matches_token_count(ptype, grid, tokens):
    assert num_image_tokens(ptype, grid) == tokens
    proj = build_projector(ptype, 12, 16)
    out = proj(torch.randn(2, grid * grid, 12))
    assert out.shape == (2, tokens, 16)


def test_pyramid_has_one_shared_conv_used_on_every_level_above_1x1():
    proj = build_projector("ppc_14_7_1", 8, 16)
    convs = [m for m in proj.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and convs[0].kernel_size == (3, 3) and convs[0].padding == (1, 1)
    assert convs[0].in_channels == convs[0].out_channels == 16
    seen = []
    convs[0].register_forward_hook(lambda mod, inp, out: seen.append(tuple(out.shape[-2:])))
    proj(torch.randn(1, 27 * 27, 8))
    assert seen == [(14, 14), (7, 7)]  # 1x1 gets no conv


def test_pyramid_matches_the_spec_step_by_step():
    proj = build_projector("ppc_4_2_1", 6, 10)
    x = torch.randn(3, 64, 6)
    h = F.gelu(proj.linear_in(x)).transpose(1, 2).reshape(3, 10, 8, 8)
    levels = [proj.conv(F.adaptive_avg_pool2d(h, 4)), proj.conv(F.adaptive_avg_pool2d(h, 2)),
              F.adaptive_avg_pool2d(h, 1)]
    flat = torch.cat([lv.flatten(2).transpose(1, 2) for lv in levels], dim=1)  # row-major, 4 then 2 then 1
    torch.testing.assert_close(proj(x), proj.linear_out(flat))


def test_pyramid_without_levels_above_one_has_no_conv():
    assert build_projector("ppc_1", 4, 4).conv is None


@pytest.mark.parametrize("bad", ["ppc", "ppc_7_14_1", "ppc_3_3", "ppc_0", "mlp3x_gelu", "PPC_14_7_1"])
def test_bad_projector_types_are_rejected(bad):
    with pytest.raises(ValueError, match="projector_type"):
        pyramid_levels(bad)


def test_pyramid_level_larger_than_grid_is_an_error():
    with pytest.raises(ValueError, match="exceeds"):
        num_image_tokens("ppc_14_7_1", 12)
    with pytest.raises(ValueError, match="exceeds"):
        PyramidProjector(4, 4, [14, 7, 1])(torch.randn(1, 144, 4))
    with pytest.raises(ValueError, match="square"):
        PyramidProjector(4, 4, [2, 1])(torch.randn(1, 10, 4))


def test_config_derives_image_seq_length():
    assert ColonGPTConfig().image_seq_length == 246  # SigLIP-384/14 -> 27x27, ppc_14_7_1
    assert ColonGPTConfig(projector_type="mlp2x_gelu").image_seq_length == 729
    assert ColonGPTConfig(projector_type="linear").image_seq_length == 729
    with pytest.raises(ValueError, match="disagrees"):
        ColonGPTConfig(image_seq_length=729)
