"""Darknet cfg/weights support: parse ``.cfg`` files into a layer graph, build PyTorch and Keras
modules from it, and read/write ``.weights`` files.

Reference implementations: pjreddie/darknet (YOLOv3, Redmon & Farhadi, arXiv:1804.02767; public
domain / YOLO licence) and AlexeyAB/darknet (YOLOv4, Bochkovskiy et al., arXiv:2004.10934; YOLO
licence). Nothing here is copied from them; formats and layer semantics are re-implemented.

``cfg/`` holds the cfgs the models run (yolov3, yolov3-tiny, yolov4, yolov4-tiny) and the
Darknet-53 classifier: package data, written from each architecture's facts and proven equal,
layer for layer, to the official files by tests/models/test_darknet.py. Names are looked up in
$ZOO_DARKNET_CFG_DIR first (``cfg_parser.resolve_cfg``); nothing outside the package is needed.

Submodules: ``cfg_parser`` (no framework import: parsing, parameter count, cfg lookup),
``torch_backend``, ``tf_backend``, ``weights``, ``tf_weights``, ``tf_differential``, ``augment``.
"""
