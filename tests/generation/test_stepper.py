"""Generation's one-character step (charrnn/generation/stepper.py) against the model's forward."""

import pytest
import torch

from charrnn.config import ModelConfig
from charrnn.core.cells import CELL_NAMES as CELLS
from charrnn.core.model import CharRNN
from charrnn.generation.stepper import WIDE_BATCH, Stepper

V, H, L, B, T = 11, 16, 2, 3, 7


def make_model(dtype=torch.float32, cell: str = "lstm") -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(V, ModelConfig(hidden_size=H, num_layers=L, dropout=0.0, cell=cell)).to(dtype)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("streams", [1, 3, WIDE_BATCH + 1])  # the split multiply, and W xᵀ from WIDE_BATCH on
@pytest.mark.parametrize("parts", [1, 2])
def test_the_generation_step_matches_the_model_forward(cell, streams, parts):
    model = make_model(dtype=torch.float64, cell=cell).eval()
    stepper = Stepper(model, parts)  # the weights are split into one block per thread the step may use
    assert stepper.weights["0.hh.blocks"].shape[0] == parts
    state = tuple(torch.randn_like(t) for t in model.init_state(streams))
    step_state = state
    ids = torch.randint(0, V, (streams, T))
    for t in range(T):
        expected, state = model(ids[:, t : t + 1], state)  # (B, V)
        logits, step_state = stepper.step(ids[:, t], step_state)
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(step_state, state, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("mode", ["one-hot", "lookup"])
def test_ids_of_every_dtype_the_vocabulary_stores_give_the_same_outputs(cell, mode):
    # The vocabulary keeps ids as uint8 / int16 / int32 (issue 15: int16 ids crashed the lookup
    # path, and uint8 ids used as an index would be read as a boolean mask).
    model = make_model(cell=cell).eval()
    stepper = Stepper(model)
    ids = torch.randint(0, V, (B, T))
    expected_logits, _ = model(ids, input_path=mode)
    expected_step, _ = stepper.step(ids[:, 0], model.init_state(B))
    for dtype in (torch.uint8, torch.int16, torch.int32):
        logits, _ = model(ids.to(dtype), input_path=mode)
        torch.testing.assert_close(logits, expected_logits, rtol=0, atol=0)
        step_logits, _ = stepper.step(ids[:, 0].to(dtype), model.init_state(B))
        assert step_logits.shape == (B, V)
        torch.testing.assert_close(step_logits, expected_step, rtol=0, atol=0)
