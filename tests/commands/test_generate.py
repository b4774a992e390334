"""`charrnn generate` (charrnn/commands/generate.py), in-process as a user types it."""

import subprocess
import sys

import pytest

import charrnn
import charrnn.commands.common
from tests.conftest import invoke


def test_a_seeded_sample_streams_the_prime_and_its_continuation(tiny_run):
    first = invoke("generate", tiny_run.best, "--prime", "ROMEO:", "--length", 200, "--seed", 1)
    assert first.exit_code == 0, first.output
    assert first.stdout == "ROMEO:" + charrnn.load(tiny_run.best, "cpu").generate("ROMEO:", 200, seed=1) + "\n"
    other = invoke("generate", tiny_run.best, "--prime", "ROMEO:", "--length", 200, "--seed", 2)
    assert other.stdout != first.stdout


def test_length_zero_prints_just_the_prime(tiny_run):
    result = invoke("generate", tiny_run.last, "--prime", "MENENIUS", "--length", 0)
    assert result.exit_code == 0, result.output
    assert result.stdout == "MENENIUS\n"


def test_an_empty_prime_starts_from_the_zero_state(tiny_run):
    # From the zero state the logits are the output layer's bias: the greedy first character is its argmax.
    model = charrnn.load(tiny_run.last, "cpu")
    expected = model.vocab.chars[int(model.model.head.bias.argmax())]
    result = invoke("generate", tiny_run.last, "--length", 1, "--greedy")
    assert result.exit_code == 0, result.output
    assert result.stdout == expected + "\n"


def test_an_empty_prime_file_is_the_empty_prime(tiny_run, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    from_file = invoke("generate", tiny_run.last, "--prime-file", empty, "--length", 40, "--seed", 3)
    assert from_file.exit_code == 0, from_file.output
    from_option = invoke("generate", tiny_run.last, "--prime", "", "--length", 40, "--seed", 3)
    assert from_file.stdout == from_option.stdout and len(from_file.stdout) == 41


def test_a_non_utf8_prime_file_gets_advice_that_fits_generate(tiny_run, tmp_path):
    latin1 = tmp_path / "prime.txt"
    latin1.write_bytes("caf\u00e9".encode("latin-1"))
    result = invoke("generate", tiny_run.last, "--prime-file", latin1)
    assert result.exit_code == 1
    assert result.output.strip().endswith("prime.txt is not valid UTF-8 (byte offset 3): convert it to UTF-8")
    assert "--decode-errors" not in result.output


def test_seeds_up_to_2_64_minus_1_for_all_the_samples(tiny_run):
    top = 2**64 - 1
    assert invoke("generate", tiny_run.last, "--length", 5, "--seed", top).exit_code == 0
    too_big = invoke("generate", tiny_run.last, "--length", 5, "--seed", top + 1)
    assert too_big.exit_code == 2 and "--seed" in too_big.output
    negative = invoke("generate", tiny_run.last, "--length", 5, "--seed", -1)
    assert negative.exit_code == 2 and "--seed" in negative.output
    batch = invoke("generate", tiny_run.last, "--length", 5, "--seed", top, "--num-samples", 3)
    assert batch.exit_code == 2 and "--seed" in batch.output and f"at most {top - 2}" in batch.output
    fits = invoke("generate", tiny_run.last, "--length", 5, "--seed", top - 2, "--num-samples", 3)
    assert fits.exit_code == 0 and f"(seed {top})" in fits.stdout


def test_a_random_seed_is_reported_and_reproduces_the_samples(tiny_run):
    drawn = invoke("generate", tiny_run.last, "--length", 30, "--num-samples", 2)
    assert drawn.exit_code == 0, drawn.output
    seed = int(drawn.stdout.split("(seed ", 1)[1].split(")", 1)[0])
    again = invoke("generate", tiny_run.last, "--length", 30, "--num-samples", 2, "--seed", seed)
    assert again.stdout == drawn.stdout


def test_num_samples_are_separated_and_sample_i_uses_seed_plus_i(tiny_run, monkeypatch):
    real_load = charrnn.commands.common.load

    def load_float64(path, device, **options):
        # In float32 a batch's matrix multiply may round differently in the last bit from a
        # single row's and so flip a draw; in float64 sample i is exactly the single sample.
        model = real_load(path, device, **options)
        model.model.double()
        return model

    monkeypatch.setattr(charrnn.commands.common, "load", load_float64)
    args = ("generate", tiny_run.last, "--prime", "ROMEO:", "--length", 40, "--num-samples", 3, "--seed", 9)
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    parts = first.stdout.split("----- sample ")[1:]
    assert [p.split(" ", 1)[0] for p in parts] == ["1", "2", "3"]
    assert "(seed 9)" in parts[0] and "(seed 11)" in parts[2]
    single = invoke("generate", tiny_run.last, "--prime", "ROMEO:", "--length", 40, "--seed", 11)
    assert parts[2].split("-----\n", 1)[1] == single.stdout  # sample 3 is the single sample with seed + 2


def test_greedy_top_k_1_and_a_tiny_top_p_all_take_the_most_likely_character(tiny_run):
    greedy = invoke("generate", tiny_run.last, "--prime", "ROMEO:", "--length", 30, "--greedy")
    top1 = invoke("generate", tiny_run.last, "--prime", "ROMEO:", "--length", 30, "--top-k", 1, "--seed", 5)
    nucleus = invoke("generate", tiny_run.last, "--prime", "ROMEO:", "--length", 30, "--top-p", 1e-9, "--seed", 6)
    assert greedy.exit_code == 0 and greedy.stdout == top1.stdout == nucleus.stdout
    sampled = invoke("generate", tiny_run.last, "--prime", "ROMEO:", "--length", 30, "--seed", 5)
    assert sampled.stdout != greedy.stdout
    assert invoke("generate", tiny_run.last, "--top-p", "1.5").exit_code == 2


def test_prime_file_stop_and_output_with_header(tiny_run, tmp_path):
    prime_file = tmp_path / "prime.txt"
    prime_file.write_text("First Citizen:\r\n", encoding="utf-8")  # CRLF is read as LF
    plain = invoke("generate", tiny_run.last, "--prime-file", prime_file, "--length", 300, "--seed", 3)
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.startswith("First Citizen:\n")
    generated = plain.stdout[len("First Citizen:\n") : -1]
    assert "e" in generated
    stopped = invoke(
        "generate",
        tiny_run.last,
        "--prime-file",
        prime_file,
        "--length",
        300,
        "--seed",
        3,
        "--stop",
        "e",
        "--stop",
        "\\n\\n",
    )
    end = min(i for i in (generated.find("e"), generated.find("\n\n")) if i >= 0)
    assert stopped.stdout == "First Citizen:\n" + generated[:end] + "\n"

    out = tmp_path / "samples.txt"
    written = invoke(
        "generate", tiny_run.last, "--prime", "ROMEO:", "--length", 50, "--seed", 3, "--top-p", 0.8, "--output", out
    )
    assert written.exit_code == 0 and written.stdout == ""
    header, body = out.read_text(encoding="utf-8").split("\n\n", 1)
    assert "# checkpoint: " in header and "# prime: 'ROMEO:'" in header and "seed: 3" in header
    assert "top-p 0.8" in header and body.startswith("ROMEO:") and len(body) == 6 + 50 + 1
    again = invoke("generate", tiny_run.last, "--output", out)
    assert again.exit_code == 1 and "already exists" in again.output
    both = invoke("generate", tiny_run.last, "--prime", "x", "--prime-file", prime_file)
    assert both.exit_code == 2


def test_unknown_prime_characters_exit_1_and_name_them(tiny_run):
    result = invoke("generate", tiny_run.last, "--prime", "caf\u00e9 \u2603")
    assert result.exit_code == 1
    assert "'\u00e9'" in result.output and "'\u2603'" in result.output and "Traceback" not in result.output


def test_unknown_prime_characters_can_be_skipped_with_a_warning(tiny_run):
    result = invoke(
        "generate", tiny_run.last, "--prime", "Zebra ROMEO", "--length", 5, "--seed", 1, "--on-unknown", "skip"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ebra ROMEO") and len(result.stdout) == len("ebra ROMEO") + 5 + 1
    assert "dropped prime character(s) outside the vocabulary: 'Z'" in result.stderr
    plain = invoke("generate", tiny_run.last, "--prime", "ebra ROMEO", "--length", 5, "--seed", 1)
    assert plain.stdout == result.stdout


@pytest.mark.parametrize("temperature", ["0", "-1", "nan", "inf"])
def test_bad_temperature_is_a_usage_error(tiny_run, temperature):
    result = invoke("generate", tiny_run.last, "--temperature", temperature)
    assert result.exit_code == 2 and "temperature" in result.output


def test_a_corrupt_checkpoint_exits_1(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    for args in (["generate", bad], ["train", "--resume", bad, "--no-progress"]):
        result = invoke(*args)
        assert result.exit_code == 1
        assert result.output.strip().endswith("bad.pt is not a charrnn checkpoint or is corrupted")


def test_stop_texts_understand_newlines_tabs_backslashes_and_hex_escapes():
    from charrnn.commands.common import unescape

    assert unescape(r"a\nb\tc\\n\x1cd\x4A\xZZ") == "a\nb\tc\\n\x1cdJ\\xZZ"


@pytest.mark.slow
def test_generate_imports_nothing_it_does_not_need():
    # Cold start (docs/performance.md): the plot, server, export and compiler stacks stay unloaded.
    code = (
        "import sys\n"
        "from charrnn.commands.cli import main\n"
        "main(['generate', '--length', '1', '--seed', '1'], standalone_mode=False)\n"
        "heavy = ('matplotlib', 'starlette', 'uvicorn', 'onnx', 'onnxscript', 'onnxruntime', 'safetensors')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('torch._inductor')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
