"""CenterNet (Objects as Points, ResNet-18 DCN): the network and its Task (``detector``) and the
heatmap/size/offset training targets (``targets``)."""
