import pytest
import torch
import torch.nn.functional as F

from charrnn.config import ModelConfig
from charrnn.model import CharLSTM, count_parameters, detach
from charrnn.reference import ReferenceLSTM

V, H, L, B, T = 11, 16, 2, 3, 7


def make_model(dropout: float = 0.0, dtype=torch.float32) -> CharLSTM:
    torch.manual_seed(0)
    return CharLSTM(V, ModelConfig(hidden_size=H, num_layers=L, dropout=dropout)).to(dtype)


def test_shapes_at_every_layer():
    model = make_model()
    seen = {}
    model.lstm.register_forward_hook(
        lambda module, inputs, output: seen.update(one_hot=inputs[0].shape, lstm_out=output[0].shape)
    )
    model.head.register_forward_hook(lambda module, inputs, output: seen.update(head_in=inputs[0].shape))
    ids = torch.randint(0, V, (B, T))
    logits, (h, c) = model(ids)
    assert seen == {"one_hot": (B, T, V), "lstm_out": (B, T, H), "head_in": (B * T, H)}
    assert logits.shape == (B * T, V)
    assert h.shape == c.shape == (L, B, H)
    assert model.init_state(B)[0].shape == (L, B, H)
    assert count_parameters(model) == sum(
        4 * H * (n_in + H) + 8 * H for n_in in (V, H)
    ) + H * V + V


def test_chunked_forward_equals_whole_forward():
    model = make_model(dropout=0.3).eval()
    ids = torch.randint(0, V, (B, 2 * T))
    whole, whole_state = model(ids)
    first, state = model(ids[:, :T])
    second, chunked_state = model(ids[:, T:], state)
    # logits rows are ordered (b, t): put the two chunks back side by side per stream
    chunked = torch.cat([first.view(B, T, V), second.view(B, T, V)], dim=1).reshape(B * 2 * T, V)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(chunked_state, whole_state, rtol=0, atol=1e-6)


def test_model_matches_the_gate_equations():
    model = make_model(dtype=torch.float64).eval()
    ids = torch.randint(0, V, (B, T))
    logits, (h, c) = model(ids)
    outputs, (ref_h, ref_c), _ = ReferenceLSTM(model.lstm)(F.one_hot(ids, V).double())
    expected = outputs.reshape(B * T, H) @ model.head.weight.T + model.head.bias  # rows ordered (b, t)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close((h, c), (ref_h, ref_c), rtol=0, atol=1e-10)


def test_dropout_is_active_in_training_and_off_in_eval():
    model = make_model(dropout=0.5)
    ids = torch.randint(0, V, (B, T))
    model.train()
    assert not torch.equal(model(ids)[0], model(ids)[0])
    model.eval()
    assert torch.equal(model(ids)[0], model(ids)[0])


def test_detach_cuts_the_graph_but_keeps_the_values():
    model = make_model()
    _, state = model(torch.randint(0, V, (B, T)))
    assert state[0].requires_grad
    cut = detach(state)
    assert not cut[0].requires_grad and not cut[1].requires_grad
    assert torch.equal(cut[0], state[0]) and torch.equal(cut[1], state[1])


@pytest.mark.parametrize("num_layers", [1, 3])
def test_any_depth_builds_and_runs(num_layers):
    model = CharLSTM(V, ModelConfig(hidden_size=8, num_layers=num_layers, dropout=0.2))
    logits, (h, _) = model(torch.randint(0, V, (2, 5)))
    assert logits.shape == (10, V) and h.shape == (num_layers, 2, 8)
