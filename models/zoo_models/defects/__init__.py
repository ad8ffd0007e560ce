"""This zoo's defects, one module per family of implementations (the defects of a training
recipe, which any model can have, are the harness's: replicate/defects/catalogue/). Each module
registers its defects with ``replicate.defects.registry.register``; the registry imports every
module here through the zoo's ``defects`` package.
"""

from replicate.defects.registry import lead

# Which of this zoo's models the selftest injects the harness's recipe defects into first (the
# models whose smoke recipes measured them when they were written).
lead("lr_10x", "yolov4")
lead("shuffled_labels", "centernet")
lead("eval_on_train_split", "mask_rcnn")
