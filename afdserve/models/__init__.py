"""Networks: the EfficientNet-Lite0 backbone, RepConv blocks, the AFD module, the classifier they
make (and its deployment form), and SwinIR with its checkpoint loading. Runtime: shipped inside
every archive. Imports nothing of afdserve outside this package."""
