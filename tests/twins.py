"""The tiny twin of every model family, built by the same loader code as the full-size models."""

TWINS = [
    "tiny-resnet",
    "tiny-densenet",
    "tiny-medclip-r50",
    "tiny-dinov2",
    "tiny-clip",
    "tiny-swin",
    "tiny-openclip",
]
