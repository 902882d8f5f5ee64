"""Python stubs for TorchServe's gRPC inference API, generated with grpcio-tools from the .proto
files that the installed TorchServe ships inside its frontend jar, so they always match the
server. TorchServe 0.12 ships no Python stubs; nothing generated is kept in this repository.

    python -m afdserve.ops.grpc_stubs OUT_DIR
    # OUT_DIR/inference_pb2.py, inference_pb2_grpc.py, google/rpc/status_pb2.py

    inference_pb2, inference_pb2_grpc = load_stubs(OUT_DIR)
    stub = inference_pb2_grpc.InferenceAPIsServiceStub(grpc.insecure_channel("127.0.0.1:7070"))
    reply = stub.Predictions(inference_pb2.PredictionsRequest(model_name="afd_classifier",
                             input={"data": jpeg_bytes}),
                             metadata=[("authorization", f"Bearer {inference_key}")])
    json.loads(reply.prediction)

Needs grpcio-tools to generate, grpcio and protobuf to call (the ``grpc`` extra).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import tempfile
import zipfile
from pathlib import Path

# inference.proto imports google/rpc/status.proto, which the jar carries too; google/protobuf's
# own files come with grpcio-tools.
PROTOS = ("inference.proto", "google/rpc/status.proto")
JAR = Path("frontend") / "model-server.jar"


class StubsError(RuntimeError):
    pass


def frontend_jar() -> Path:
    """TorchServe's frontend jar in the installed ``ts`` package (found without importing it)."""
    spec = importlib.util.find_spec("ts")
    if spec is None or not spec.submodule_search_locations:
        raise StubsError("TorchServe (the ts package) is not installed")
    for location in spec.submodule_search_locations:
        jar = Path(location) / JAR
        if jar.is_file():
            return jar
    raise StubsError(f"no {JAR} in the installed ts package")


def generate(out_dir, jar: Path | None = None) -> Path:
    """Write the stubs for TorchServe's inference API into ``out_dir``; returns it."""
    try:
        from grpc_tools import protoc
    except ImportError as err:
        raise StubsError("generating gRPC stubs needs grpcio-tools: pip install grpcio-tools") from err
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(jar or frontend_jar()) as archive:
        for name in PROTOS:
            archive.extract(name, tmp)
        well_known = Path(protoc.__file__).parent / "_proto"
        status = protoc.main(["protoc", f"-I{tmp}", f"-I{well_known}", f"--python_out={out_dir}",
                              f"--grpc_python_out={out_dir}", *PROTOS])
    if status != 0:
        raise StubsError(f"protoc failed ({status}) on {PROTOS}")
    return out_dir


def load_stubs(out_dir):
    """(inference_pb2, inference_pb2_grpc) from ``out_dir``, generating them first if missing.
    ``out_dir`` goes on sys.path: the generated modules import each other as top-level names."""
    out_dir = Path(out_dir).resolve()
    if not (out_dir / "inference_pb2_grpc.py").is_file():
        generate(out_dir)
    if str(out_dir) not in sys.path:
        sys.path.append(str(out_dir))
    return importlib.import_module("inference_pb2"), importlib.import_module("inference_pb2_grpc")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    print(generate(args.out_dir))


if __name__ == "__main__":
    main()
