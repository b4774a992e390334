"""`charrnn chat` (charrnn/commands/chat.py) in a real pseudo-terminal, typed at as a person would."""

import sys

import pexpect
import pytest
from click.testing import CliRunner

import charrnn
from charrnn.commands.chat import chat as chat_command

PROMPT = "\r\n> "


@pytest.fixture
def chat(tiny_run, tmp_path):
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "charrnn",
            "chat",
            str(tiny_run.best),
            "--seed",
            "1",
            "--length",
            "40",
            "--device",
            "cpu",
            "--history",
            str(tmp_path / "history"),
        ],
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 200),
        env={"TERM": "dumb", "PATH": "/usr/bin:/bin"},
    )
    child.expect("Ctrl-D to quit")
    child.expect_exact("> ")
    yield child
    child.close(force=True)


def reply(child, line: str) -> str:
    """Type a line; what the chat printed before its next prompt."""
    child.sendline(line)
    child.expect_exact(PROMPT)
    return child.before.split("\r\n", 1)[1] if "\r\n" in child.before else ""


@pytest.mark.slow  # a `charrnn chat` process in a pseudo-terminal
def test_each_continuation_goes_on_from_the_last_and_new_starts_afresh(chat, tiny_run):
    model = charrnn.load(tiny_run.best, "cpu")
    session = model.session(seed=1)
    session.feed("ROMEO:")
    first = "".join(session.generate(40))
    more = "".join(session.generate(25))

    assert reply(chat, "ROMEO:").replace("\r\n", "\n") == first
    assert reply(chat, "/more 25").replace("\r\n", "\n") == more  # the state was carried
    assert "(the text is forgotten" in reply(chat, "/new")
    reply(chat, "/seed 1")
    assert reply(chat, "ROMEO:").replace("\r\n", "\n") == first  # afresh, with the same seed


@pytest.mark.slow  # a `charrnn chat` process in a pseudo-terminal
def test_settings_change_and_bad_values_are_one_line(chat):
    assert "temperature 0.5" in reply(chat, "/temp 0.5")
    assert "top-k 3" in reply(chat, "/top-k 3")
    assert "top-p 0.9" in reply(chat, "/top-p 0.9")
    assert "length 12" in reply(chat, "/length 12")
    assert "greedy on" in reply(chat, "/greedy on")
    assert "repetition-penalty 1.3" in reply(chat, "/repetition-penalty 1.3")
    bad = reply(chat, "/temp -1")
    assert "error: /temperature must be > 0, got -1.0" in bad and "Traceback" not in bad
    assert "error: /top-k must be >= 1, got 0" in reply(chat, "/top-k 0")  # as --top-k 0 says
    assert "top-k off" in reply(chat, "/top-k off")
    assert "unknown command /fly" in reply(chat, "/fly")
    assert "outside the model's" in reply(chat, "caf\u00e9\u2603")
    assert len(reply(chat, "ROMEO:").strip("\r\n")) == 12


@pytest.mark.slow  # a `charrnn chat` process in a pseudo-terminal
def test_ctrl_c_stops_a_continuation_but_not_the_session_and_ctrl_d_quits(chat):
    reply(chat, "/length 1000000")
    chat.sendline("ROMEO:")
    chat.expect(r"\S{20}")  # text is streaming in
    chat.sendintr()
    chat.expect_exact("[stopped]")
    chat.expect_exact("> ")
    assert "length 30" in reply(chat, "/length 30")
    assert len(reply(chat, "/more").strip("\r\n")) >= 29  # the session goes on (a newline may be drawn)
    chat.sendeof()
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


@pytest.mark.slow  # a `charrnn chat` process in a pseudo-terminal
def test_quit_ends_the_session_with_status_0(chat):
    chat.sendline("/quit")
    chat.expect(pexpect.EOF)
    chat.close()
    assert chat.exitstatus == 0


def test_in_process_a_session_reads_commands_and_lines_until_quit(tiny_run, tmp_path):
    typed = "/temp 0.5\n/length 15\nROMEO:\n/more 5\n/fly\n/quit\n"
    result = CliRunner().invoke(
        chat_command,
        [str(tiny_run.best), "--seed", "2", "--device", "cpu", "--history", str(tmp_path / "history")],
        input=typed,
    )
    assert result.exit_code == 0, result.output
    model = charrnn.load(tiny_run.best, "cpu")
    session = model.session(seed=2, temperature=0.5)
    session.feed("ROMEO:")
    first = "".join(session.generate(15))
    more = "".join(session.generate(5))
    assert "temperature 0.5" in result.output and "length 15" in result.output
    assert first + "\n" in result.output and more + "\n" in result.output
    assert "unknown command /fly" in result.output
