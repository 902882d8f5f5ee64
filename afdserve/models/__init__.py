"""Networks: the backbones as data (backbones.py: EfficientNet-Lite0/1/2 and a user's timm CNN,
with their input specs), the Lite weights' conversion, RepConv blocks, the AFD module, the
classifier they make (and its deployment form), and SwinIR with its checkpoint loading. Runtime:
shipped inside every archive. Imports nothing of afdserve outside this package."""
