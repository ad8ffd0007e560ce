"""Darknet cfg/weights support: parse ``.cfg`` files into a layer graph, build PyTorch modules
from it, and read/write ``.weights`` files.

Reference implementations: pjreddie/darknet (YOLOv3, Redmon & Farhadi, arXiv:1804.02767; public
domain / YOLO licence) and AlexeyAB/darknet (YOLOv4, Bochkovskiy et al., arXiv:2004.10934; YOLO
licence). Nothing here is copied from them; formats and layer semantics are re-implemented.

Submodules: ``cfg_parser`` (no framework import), ``torch_backend``, ``weights``, ``augment``.
"""
