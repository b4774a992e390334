"""The seeded draw's building blocks (charrnn/generation/draw.py): uniform numbers drawn a block at
a time are the numbers one call at a time gives, so batching them changes no seed's text."""

import pytest
import torch

from charrnn.generation.draw import UniformBlocks, draw_uniforms, draw_with_uniforms


@pytest.mark.parametrize("count", [1, 7, 64, 200])
def test_one_call_for_k_numbers_gives_the_k_numbers_of_k_calls(count):
    together = torch.rand(count, generator=torch.Generator().manual_seed(11))
    one_by_one = torch.Generator().manual_seed(11)
    apart = torch.cat([torch.rand(1, generator=one_by_one) for _ in range(count)])
    assert torch.equal(together, apart)


def test_uniform_blocks_hand_out_what_draw_uniforms_would_across_block_edges():
    seeds = [3, 4, 5]
    blocks = UniformBlocks([torch.Generator().manual_seed(s) for s in seeds])
    single = [torch.Generator().manual_seed(s) for s in seeds]
    for _ in range(UniformBlocks.BLOCK * 2 + 5):  # three blocks drawn
        assert torch.equal(blocks.take(), draw_uniforms(single, torch.device("cpu")))


def test_the_uniform_number_picks_by_cumulative_probability():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]]))
    for uniform, expected in [(0.0, 0), (0.19, 0), (0.21, 1), (0.49, 1), (0.51, 2), (0.999, 2)]:
        assert draw_with_uniforms(logits, torch.tensor([uniform]), 1.0).item() == expected
