"""`charrnn export`: a checkpoint as safetensors + JSON + ONNX files (charrnn/formats/export.py)."""

from __future__ import annotations

from pathlib import Path

import click

from charrnn.commands.common import EXISTING_FILE
from charrnn.formats.checkpoint import Checkpoint


@click.command()
@click.argument("checkpoint", type=EXISTING_FILE)
@click.argument("out_dir", metavar="OUTDIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--no-onnx", is_flag=True, help="Leave out model.onnx (the other files need only safetensors).")
def export(checkpoint: Path, out_dir: Path, no_onnx: bool) -> None:
    """Write CHECKPOINT's model to the new directory OUTDIR as files other programs load:
    model.safetensors, config.json, vocab.json and model.onnx (one generation step).

    \b
    Examples:
      charrnn export checkpoints/tinyshakespeare/best.pt shakespeare-export
      charrnn generate shakespeare-export --prime "ROMEO:"

    docs/export.md lists the tensor names and shows a complete sampler in numpy and onnxruntime.
    Needs the export extra: pip install 'charrnn[export]'.
    """
    from charrnn.formats.export import export as write_export  # the export extra is imported only here

    written = write_export(Checkpoint.load(checkpoint), str(checkpoint), out_dir, onnx=not no_onnx)
    for path in written:
        click.echo(f"wrote {path} ({path.stat().st_size:,} bytes)")
