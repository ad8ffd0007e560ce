"""The Darknet YOLO family (YOLOv3, YOLOv4): one data pipeline (``pipeline``) composed by the
PyTorch build (``torch_task``) and the TensorFlow build (``tf_task``); the [yolo]-layer loss and
decoding in each framework (``loss``, ``loss_tf``). The architectures are Darknet cfgs
(replicate/models/darknet/)."""
