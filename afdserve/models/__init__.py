"""Networks: the EfficientNet-Lite0 backbone, RepConv blocks and the AFD module."""
