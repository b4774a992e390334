import pytest
import torch
from torch import nn

from charrnn.core.reference import ReferenceLSTM, lstm_cell


def make_lstm(dtype, input_size=7, hidden_size=5, num_layers=2):
    torch.manual_seed(11)
    return nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True).to(dtype).eval()


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_reference_reproduces_nn_lstm_from_a_non_zero_state(dtype, tolerance):
    lstm = make_lstm(dtype)
    inputs = torch.randn(3, 9, 7, dtype=dtype)
    state = (torch.randn(2, 3, 5, dtype=dtype), torch.randn(2, 3, 5, dtype=dtype))
    with torch.no_grad():
        expected, (h_n, c_n) = lstm(inputs, state)
        outputs, (ref_h, ref_c), _ = ReferenceLSTM(lstm)(inputs, state)
    assert outputs.shape == (3, 9, 5) and ref_h.shape == ref_c.shape == (2, 3, 5)
    assert (outputs - expected).abs().max() <= tolerance
    assert (ref_h - h_n).abs().max() <= tolerance
    assert (ref_c - c_n).abs().max() <= tolerance


def test_reference_notices_a_wrong_gate_order():
    lstm = make_lstm(torch.float64)
    inputs = torch.randn(2, 4, 7, dtype=torch.float64)
    with torch.no_grad():
        expected, _ = lstm(inputs)
        # swap the forget and cell gate blocks of layer 0: the reference must disagree
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            weight = getattr(lstm, name)
            i, f, g, o = weight.chunk(4, dim=0)
            weight.copy_(torch.cat([i, g, f, o]))
        outputs, _, _ = ReferenceLSTM(lstm)(inputs)
    assert (outputs - expected).abs().max() > 1e-3


def test_gate_cell_passes_gradcheck():
    torch.manual_seed(0)
    batch, inputs, hidden = 2, 3, 4
    args = [
        torch.randn(batch, inputs),
        torch.randn(batch, hidden),
        torch.randn(batch, hidden),
        torch.randn(4 * hidden, inputs),
        torch.randn(4 * hidden, hidden),
        torch.randn(4 * hidden),
        torch.randn(4 * hidden),
    ]
    args = [a.double().requires_grad_() for a in args]
    assert torch.autograd.gradcheck(lambda *a: lstm_cell(*a)[:2], args)


def test_gate_trace_reports_activations_in_their_ranges():
    lstm = make_lstm(torch.float64)
    _, _, trace = ReferenceLSTM(lstm)(torch.randn(2, 6, 7, dtype=torch.float64), trace=True)
    assert len(trace.means) == 2
    for means in trace.means:
        assert list(means) == ["input", "forget", "cell", "output"]
        assert all(0 < means[g] < 1 for g in ("input", "forget", "output"))
        assert -1 < means["cell"] < 1
