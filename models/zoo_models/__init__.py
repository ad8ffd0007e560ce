"""The lab's seven models (Faster R-CNN, Mask R-CNN, RetinaNet, CenterNet, YOLOv3 in PyTorch and
TensorFlow, YOLOv4, pix2pix) as one zoo: Task classes behind the harness's interface
(replicate/zoo/task.py), their configs (``conf/model/``), their packaged data (Darknet cfgs, the
smoke tiers' fixed evaluation weights) and their defects. The harness finds it through the entry
point in models/pyproject.toml (``zoo_models.zoo:ZOO``), as it finds a lab's own zoo.
"""
