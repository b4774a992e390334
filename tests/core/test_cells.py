"""The cells (charrnn/core/cells.py): one step of each, by hand, against PyTorch's own module."""

import pytest
import torch

from charrnn.config import CELL_NAMES as DECLARED_CELLS
from charrnn.core.cells import CELL_NAMES, CELLS, get_cell

N, INPUT, H = 3, 5, 4


def test_the_declared_choices_are_the_cells_there_are():
    assert DECLARED_CELLS == CELL_NAMES == ("lstm", "gru", "rnn")
    with pytest.raises(ValueError, match="unknown cell 'lstmx': choose one of lstm, gru, rnn"):
        get_cell("lstmx")


@pytest.mark.parametrize("name", CELL_NAMES)
def test_one_layer_step_by_hand_is_the_modules_step(name):
    cell = CELLS[name]
    torch.manual_seed(0)
    module = cell.module(INPUT, H, num_layers=1, batch_first=True).double()
    x = torch.randn(N, INPUT, dtype=torch.float64)
    state = tuple(torch.randn(1, N, H, dtype=torch.float64) for _ in range(cell.state_size))
    expected_out, expected_state = module(x[:, None], cell.to_module(state))
    expected_state = cell.from_module(expected_state)

    input_gates = x @ module.weight_ih_l0.T + cell.input_bias(module.bias_ih_l0, module.bias_hh_l0)  # (N, G·H)
    assert input_gates.shape == (N, len(cell.gates) * H)
    new_state = cell.layer_step(
        input_gates,
        tuple(t[0] for t in state),
        lambda h, add: torch.addmm(add, h, module.weight_hh_l0.T),
        module.bias_hh_l0,
    )
    assert len(new_state) == cell.state_size
    torch.testing.assert_close(new_state[0], expected_out[:, 0], rtol=0, atol=1e-12)
    for mine, theirs in zip(new_state, expected_state, strict=True):
        torch.testing.assert_close(mine, theirs[0], rtol=0, atol=1e-12)
