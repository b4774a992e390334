"""The Python API (charrnn/api.py): load, generate, stream, evaluate, train, describe."""

import inspect

import pytest

import charrnn
from charrnn.config import ModelConfig, TrainConfig
from tests.conftest import quiet


def test_generate_one_sample_or_several_and_reproduce_them_by_seed(tiny_run):
    model = charrnn.load(tiny_run.best, device="cpu")
    one = model.generate("ROMEO:", 30, temperature=0.7, seed=2)
    assert isinstance(one, str) and len(one) == 30 and one == model.generate("ROMEO:", 30, temperature=0.7, seed=2)
    assert set(one) <= set(model.vocab.chars)
    many = model.generate("ROMEO:", 30, temperature=0.7, seed=2, num_samples=3)
    assert isinstance(many, list) and len(many) == 3 and many[0] == one and many[1] != one
    assert model.generate("ROMEO:", 30, greedy=True) == model.generate("ROMEO:", 30, top_k=1, seed=8)
    assert "".join(piece for _, piece in model.stream("ROMEO:", 30, seed=2, temperature=0.7)) == one


def test_stop_texts_bad_arguments_and_the_seed_it_drew(tiny_run):
    model = charrnn.load(tiny_run.best, device="cpu")
    full = model.generate("ROMEO:", 200, seed=4)
    stop = next(full[i : i + 3] for i in range(20, 150) if full[i : i + 3].isalpha())
    assert min(full.find(c) for c in stop) < full.find(stop)  # a stop per character would end it sooner
    assert model.generate("ROMEO:", 200, seed=4, stop=stop) == full[: full.find(stop)]
    assert model.generate("ROMEO:", 200, seed=4, stop=[stop]) == full[: full.find(stop)]

    for bad in (0, -1):
        with pytest.raises(charrnn.CharRNNError, match="number of samples must be 1 or more"):
            model.generate("ROMEO:", 10, num_samples=bad)
    with pytest.raises(charrnn.CharRNNError, match="seed must be an integer"):
        model.generate("ROMEO:", 10, seed=2**64)

    drawn = model.generate("ROMEO:", 60)
    seed = model.last_seed
    assert isinstance(seed, int) and model.generate("ROMEO:", 60, seed=seed) == drawn
    several = model.generate("ROMEO:", 60, num_samples=2)
    assert several == model.generate("ROMEO:", 60, num_samples=2, seed=model.last_seed)
    assert model.last_seed != seed  # a fresh draw each time


def test_train_checks_its_options_as_the_command_does(tiny_run, tmp_path):
    with pytest.raises(TypeError, match="unknown training option.*hiden_size"):
        charrnn.train(tiny_run.text, hiden_size=3)
    with pytest.raises(TypeError, match="dropout must be < 1, got 1.5"):
        charrnn.train(tiny_run.text, dropout=1.5, out_dir=tmp_path / "a")
    with pytest.raises(TypeError, match="cell must be one of lstm, gru, rnn"):
        charrnn.train(tiny_run.text, cell="transformer", out_dir=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(charrnn.CharRNNError, match="already holds a run"):
        charrnn.train(tiny_run.text, out_dir=tiny_run.dir, log=quiet, progress_bar=False)
    result = charrnn.train(
        tiny_run.text,
        out_dir=tmp_path / "c",
        hidden_size=8,
        batch_size=2,
        seq_len=8,
        max_steps=2,
        eval_every=2,
        device="cpu",
        log=quiet,
        progress_bar=False,
    )
    assert result.step == 2 and (tmp_path / "c" / "best.pt").is_file()


def test_trains_keyword_arguments_are_the_declared_options():
    parameters = inspect.signature(charrnn.train).parameters
    for config in (ModelConfig(), TrainConfig()):
        for name, default in vars(config).items():
            assert parameters[name].default == default, name
            assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY


def test_finetune_takes_the_options_of_its_command_with_its_own_defaults(tiny_run, tmp_path):
    parameters = inspect.signature(charrnn.finetune).parameters
    assert parameters["lr"].default == TrainConfig.lr and parameters["warmup_steps"].default == 20
    assert parameters["dropout"].default is None and "hidden_size" not in parameters
    with pytest.raises(TypeError, match="unknown training option.*hidden_size"):
        charrnn.finetune(tiny_run.last, tiny_run.text, hidden_size=64)
    result = charrnn.finetune(
        tiny_run.last,
        [tiny_run.text],
        out_dir=tmp_path / "ft",
        dropout=0.0,
        batch_size=2,
        seq_len=8,
        max_steps=2,
        eval_every=2,
        device="cpu",
        log=quiet,
        progress_bar=False,
    )
    assert result.step == 2
    facts = charrnn.describe(tmp_path / "ft" / "last.pt")
    assert facts["base"]["path"] == str(tiny_run.last.resolve()) and facts["model_config"]["dropout"] == 0.0
    assert facts["train_config"]["warmup_steps"] == 20


def test_describe_is_what_info_prints(tiny_run):
    facts = charrnn.describe(tiny_run.last)
    assert facts["step"] == 8 and facts["vocab_size"] == len(facts["vocab"]) == len(set(tiny_run.text.read_text()))
    assert facts["input_path"] == "one-hot" and facts["format_version"] == 2
