"""`charrnn export`: a model as files that other programs load without charrnn (docs/export.md).

    OUTDIR/model.safetensors   the weights, under PyTorch's names (below)
    OUTDIR/config.json         architecture, sizes, state layout, ONNX signature, a few training facts
    OUTDIR/vocab.json          the characters, a JSON list: character i is id i
    OUTDIR/model.onnx          one generation step: ids (S,) int64 and the state in, logits (S, V)
                               and the new state out, for any number of streams S

Tensor names in model.safetensors (G gates of H rows each, in PyTorch's order; L layers):

    rnn.weight_ih_l{k}  (G·H, V) for k = 0, (G·H, H) above     rnn.bias_ih_l{k}  (G·H,)
    rnn.weight_hh_l{k}  (G·H, H)                                rnn.bias_hh_l{k}  (G·H,)
    head.weight         (V, H)                                  head.bias         (V,)

With ``"head": "adaptive"`` in config.json the head is PyTorch's AdaptiveLogSoftmaxWithLoss under
``head.softmax.*`` (its own names), plus ``head.rank`` (V,) int64: each character id's place in
the frequency order; the ONNX step then outputs log-probabilities, which sample like logits.

An export loads back into charrnn (``load_export``) as a generation-only checkpoint, so
`charrnn generate OUTDIR` and the Python API read it like a .pt file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from charrnn.config import ModelConfig
from charrnn.core.cells import State, get_cell
from charrnn.core.corpus import Corpus, Document
from charrnn.core.model import CharRNN
from charrnn.core.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.formats.checkpoint import Checkpoint, Progress
from charrnn.generation.stepper import Stepper, laid_out_weights
from charrnn.version import __version__

EXPORT_FORMAT = "charrnn-export"
EXPORT_VERSION = 1
MISSING_EXTRA = "{what} needs the export extra: pip install 'charrnn[export]'"
FILES = ("model.safetensors", "config.json", "vocab.json", "model.onnx")


class OnnxStep(nn.Module):
    """What model.onnx computes: ``Stepper.step`` with the weights as constants, plain layout."""

    def __init__(self, model: CharRNN):
        super().__init__()
        weights = laid_out_weights(model, parts=1)
        self.names = [name for name in weights if not name.endswith(".blocks")]  # no split layout: S is unknown
        for index, name in enumerate(self.names):
            self.register_buffer(f"w{index}", weights[name])
        self.cell, self.num_layers = model.cell, model.config.num_layers

    def forward(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, ...]:
        weights = {name: getattr(self, f"w{index}") for index, name in enumerate(self.names)}
        logits, state = Stepper.from_weights(self.cell, self.num_layers, weights).step(ids, state)
        return logits, *state


def is_export(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory written by ``export``."""
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def state_names(model_config: ModelConfig) -> list[str]:
    return ["h", "c"] if model_config.cell == "lstm" else ["h"]


def export(checkpoint: Checkpoint, source: str, out_dir: Path, onnx: bool = True) -> list[Path]:
    """Write ``checkpoint``'s model to the new directory ``out_dir``; return the files written.

    Everything is written into a temporary directory beside it first and renamed into place at
    the end: an export cut short leaves nothing behind, and an existing ``out_dir`` is refused.
    """
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise CharRNNError(MISSING_EXTRA.format(what="charrnn export")) from None
    if out_dir.exists():
        raise CharRNNError(f"{out_dir} already exists: choose a new OUTDIR (charrnn export never writes into one)")
    model = checkpoint.model("cpu").eval().float()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    except OSError as exc:
        raise CharRNNError(f"cannot write into {out_dir.parent}: {exc.strerror or exc}") from None
    try:
        tensors = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
        save_file(tensors, str(partial / "model.safetensors"), metadata={"format": EXPORT_FORMAT})
        _write_json(partial / "config.json", _config(checkpoint, source, onnx))
        _write_json(partial / "vocab.json", list(checkpoint.vocab.chars))
        if onnx:
            export_onnx(model, partial / "model.onnx")
        _as_umask_allows(partial)
        os.replace(partial, out_dir)
    except OSError as exc:
        raise CharRNNError(f"cannot write {out_dir}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return [out_dir / name for name in FILES if (out_dir / name).exists()]


def export_onnx(model: CharRNN, path: Path) -> None:
    """model.onnx: one step (see the module docstring), S dynamic."""
    try:
        import onnx  # noqa: F401 - the exporter needs both
        import onnxscript  # noqa: F401
    except ImportError:
        raise CharRNNError(MISSING_EXTRA.format(what="writing model.onnx")) from None
    names = state_names(model.config)
    streams = torch.export.Dim("streams", min=1, max=65536)
    example = (torch.zeros(2, dtype=torch.long), model.init_state(2))
    # The exporter's own notices (pytree deprecations, axis renaming, "torchvision is not installed")
    # are not the user's to act on.
    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            OnnxStep(model),
            example,
            dynamo=True,
            input_names=["ids", *names],
            output_names=["logits", *(f"{name}_out" for name in names)],
            dynamic_shapes=({0: streams}, tuple({1: streams} for _ in names)),
            verbose=False,
        )
    registry_log.setLevel(level)
    program.save(str(path))


def _config(checkpoint: Checkpoint, source: str, onnx: bool) -> dict[str, Any]:
    config = checkpoint.model_config
    names = state_names(config)
    saved = checkpoint.saved_train_config
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "charrnn_version": __version__,
        "source": source,
        "cell": config.cell,
        "head": config.head,
        "gates": list(get_cell(config.cell).gates),
        "num_layers": config.num_layers,
        "hidden_size": config.hidden_size,
        "vocab_size": len(checkpoint.vocab),
        "dropout": config.dropout,
        "state": names,
        "state_shape": ["num_layers", "streams", "hidden_size"],
        "onnx": {
            "inputs": {"ids": ["streams"], **{name: ["num_layers", "streams", "hidden_size"] for name in names}},
            "outputs": {
                "logits": ["streams", "vocab_size"],
                **{f"{name}_out": ["num_layers", "streams", "hidden_size"] for name in names},
            },
        }
        if onnx
        else None,
        # What evaluate needs to lay a text out as the run did, and how good the model was.
        "training": {
            "batch_size": saved.get("batch_size"),
            "seq_len": saved.get("seq_len"),
            "step": checkpoint.progress.step,
            "best_val_loss": checkpoint.best_val_loss,
        },
    }


def _as_umask_allows(directory: Path) -> None:
    """The permissions any new directory and file get (755 and 644 under the usual umask): a
    temporary directory is made 700, and some writers make their files 600."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for file in directory.iterdir():
        file.chmod(0o666 & ~umask)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def load_export(path: str | os.PathLike) -> Checkpoint:
    """An export directory as a generation-only checkpoint (it cannot be resumed)."""
    path = Path(path)
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CharRNNError(MISSING_EXTRA.format(what=f"reading the export {path}")) from None
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        chars = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
        if config.get("format") != EXPORT_FORMAT:
            raise ValueError("config.json is not a charrnn export's")
        state = load_file(str(path / "model.safetensors"))
        model_config = ModelConfig(
            hidden_size=config["hidden_size"],
            num_layers=config["num_layers"],
            dropout=config.get("dropout", 0.0),
            cell=config["cell"],
            head=config.get("head", "full"),
        )
        training = config.get("training") or {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CharRNNError(f"{path} is not a readable charrnn export: {exc}") from None
    train_config = {key: training[key] for key in ("batch_size", "seq_len") if training.get(key) is not None}
    return Checkpoint(
        model_config=model_config,
        vocab=Vocab(chars),
        model_state=state,
        saved_train_config=train_config,
        corpus=Corpus([Document(str(config.get("source", path)), 0, "", 0)], 0),
        progress=Progress(step=training.get("step") or 0),
        optimizer_state={},
        hidden_state=[],
        rng=None,
        best_val_loss=training.get("best_val_loss"),
        last_val_loss=None,
        metrics=[],
    )
