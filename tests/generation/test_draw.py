"""The seeded draw's building blocks (charrnn/generation/draw.py): uniform numbers drawn a block at
a time are the numbers one call at a time gives, so batching them changes no seed's text."""

import pytest
import torch

from charrnn.generation.draw import Uniforms, draw_with_uniforms


@pytest.mark.parametrize("count", [1, 7, 64, 200])
def test_one_call_for_k_numbers_gives_the_k_numbers_of_k_calls(count):
    together = torch.rand(count, generator=torch.Generator().manual_seed(11))
    one_by_one = torch.Generator().manual_seed(11)
    apart = torch.cat([torch.rand(1, generator=one_by_one) for _ in range(count)])
    assert torch.equal(together, apart)


def test_a_rows_uniforms_are_its_generators_numbers_one_call_at_a_time_across_block_edges():
    blocks = Uniforms(3)
    single = torch.Generator().manual_seed(3)
    for _ in range(Uniforms.BLOCK * 2 + 5):  # three blocks drawn
        assert torch.tensor([blocks.take()]) == torch.rand(1, generator=single)


def test_the_uniform_number_picks_by_cumulative_probability():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]]))
    for uniform, expected in [(0.0, 0), (0.19, 0), (0.21, 1), (0.49, 1), (0.51, 2), (0.999, 2)]:
        assert draw_with_uniforms(logits, torch.tensor([uniform]), 1.0).item() == expected
