"""hsst: masked NIR-VIS face recognition for access gates.

``hsst`` (this package) is the torch-free runtime and the shared core; ``hsst.train`` (torch) trains
models; ``hsst.export`` turns them into ONNX files and TensorRT engines.
"""
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
