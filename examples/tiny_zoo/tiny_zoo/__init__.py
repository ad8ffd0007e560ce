"""An example of a lab's own zoo: one small FCOS detector (torchvision's class, a four-stage
convolutional backbone of our own), registered with the harness and configured beside it."""
