"""The Darknet YOLO family (YOLOv3, YOLOv4): one data pipeline (``pipeline``) composed by the
PyTorch build (``torch_task``) and the TensorFlow build (``tf_task``); the [yolo]-layer loss and
decoding in each framework (``loss``, ``loss_tf``); the eval protocol of Open Model Zoo's accuracy
checker, which measured the val2017 claims (``omz_protocol``, shared by both builds). The
architectures are Darknet cfgs (models/zoo_models/darknet/)."""
