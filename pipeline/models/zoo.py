"""The keras.applications zoo as one table: every ImageNet family Thaw can build.

Each row says how Keras builds the backbone and what it needs: the constructor in
`keras.applications`, the module whose `preprocess_input` scales its pixels (and the name
of Thaw's numpy scaling that equals it: tests/models/test_zoo.py checks both, and the URL
below against the one Keras requests), the smallest input Keras accepts, and the ImageNet
file without top that `weights: imagenet` downloads, exactly as Keras names it.

`fingerprints` maps each width Keras publishes weights for (MobileNet's alpha; 1.0 for a
family without widths) to the number of values in the backbone's tensors of one or more
dimensions: what a weights-only file holds for it, in either layout, whatever its layer
names. No two rows share one, so `thaw check` tells which architecture and width a file
fits without building anything. They were counted by `python -m benchmarks.zoo_table`.

Plain data, no TensorFlow: preflight reads it before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass

KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"
# EfficientNet's files sit one folder up (keras.applications.efficientnet.BASE_WEIGHTS_PATH)
EFFICIENTNET_WEIGHTS = "https://storage.googleapis.com/keras-applications/"

# Families whose model scales its own input (a Rescaling/Normalization first layer:
# EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3's include_preprocessing), so its
# preprocess_input passes [0, 255] through: Thaw's "raw".
RAW = "raw"


@dataclass(frozen=True)
class Member:
    constructor: str  # keras.applications.<constructor>
    module: str  # keras.applications.<module>.preprocess_input is its scaling
    preprocess: str  # the key of backbones.PREPROCESSORS that equals it
    min_size: int  # the smallest input side Keras accepts
    # ImageNet without top; {alpha}, {alpha_text}, {rows}, {rows_v2} as Keras fills them
    url: str
    fingerprints: dict[float, int]  # published width -> values in its weights' tensors
    stem: str = ""  # the first convolution's layer name, where Keras names it explicitly
    cache_name: str = ""  # Keras's name for the download in ~/.keras/models, if not the URL's
    # Searched sizes must be multiples of this: NASNet's cells pad or crop by the parity of
    # each stage's side, so its graph built at one size fits only sizes alike (at_size)
    size_step: int = 1

    @property
    def widths(self) -> tuple[float, ...]:
        """The alphas Keras publishes ImageNet weights for; (1.0,) without a width option."""
        return tuple(self.fingerprints)

    @property
    def has_width(self) -> bool:
        """Whether the constructor takes `alpha` (MobileNet, V2, V3)."""
        return len(self.fingerprints) > 1


def _resnet(constructor: str, name: str, module: str, preprocess: str, n: int) -> Member:
    url = f"{KERAS_WEIGHTS}resnet/{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return Member(constructor, module, preprocess, 32, url, {1.0: n}, stem="conv1_conv")


def _tf_kernels(folder: str, constructor: str, preprocess: str, size: int, n: int, stem: str):
    """Families whose file is <folder>/<folder>_weights_tf_dim_ordering_tf_kernels_notop.h5."""
    url = f"{KERAS_WEIGHTS}{folder}/{folder}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return Member(constructor, folder, preprocess, size, url, {1.0: n}, stem=stem)


def _densenet(depth: int, n: int) -> Member:
    url = f"{KERAS_WEIGHTS}densenet/densenet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return Member(f"DenseNet{depth}", "densenet", "torch", 32, url, {1.0: n}, stem="conv1_conv")


def _efficientnet(variant: str, n: int) -> Member:
    url = f"{EFFICIENTNET_WEIGHTS}efficientnet{variant.lower()}_notop.h5"
    return Member(f"EfficientNet{variant}", "efficientnet", RAW, 32, url, {1.0: n}, "stem_conv")


def _efficientnet_v2(variant: str, n: int) -> Member:
    url = f"{KERAS_WEIGHTS}efficientnet_v2/efficientnetv2-{variant.lower()}_notop.h5"
    return Member(
        f"EfficientNetV2{variant}", "efficientnet_v2", RAW, 32, url, {1.0: n}, "stem_conv"
    )


def _convnext(size: str, n: int) -> Member:
    url = f"{KERAS_WEIGHTS}convnext/convnext_{size.lower()}_notop.h5"
    return Member(
        f"ConvNeXt{size}", "convnext", RAW, 32, url, {1.0: n}, stem=f"convnext_{size.lower()}_stem"
    )


def _mobilenet_v3(size: str, fingerprints: dict[float, int]) -> Member:
    url = (
        f"{KERAS_WEIGHTS}mobilenet_v3/weights_mobilenet_v3_{size.lower()}_224_{{alpha}}_float_"
        "no_top_v2.h5"
    )
    return Member(f"MobileNetV3{size}", "mobilenet_v3", RAW, 32, url, fingerprints)


def _nasnet(size: str, n: int) -> Member:
    url = f"{KERAS_WEIGHTS}nasnet/NASNet-{size.lower()}-no-top.h5"
    cache = f"nasnet_{size.lower()}_no_top.h5"  # get_file's fname, not the URL's
    return Member(
        f"NASNet{size}", "nasnet", "symmetric", 32, url, {1.0: n}, "stem_conv1", cache, 32
    )


ZOO: dict[str, Member] = {
    "mobilenet": Member(
        "MobileNet",
        "mobilenet",
        "symmetric",
        32,
        f"{KERAS_WEIGHTS}mobilenet/mobilenet_{{alpha_text}}_{{rows}}_tf_no_top.h5",
        {0.25: 218_544, 0.5: 829_536, 0.75: 1_832_976, 1.0: 3_228_864},
        stem="conv1",
    ),
    "mobilenet_v2": Member(
        "MobileNetV2",
        "mobilenet_v2",
        "symmetric",
        32,
        f"{KERAS_WEIGHTS}mobilenet_v2/"
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows_v2}_no_top.h5",
        {
            0.35: 410_208,
            0.5: 706_224,
            0.75: 1_382_064,
            1.0: 2_257_984,
            1.3: 3_766_048,
            1.4: 4_363_712,
        },
        stem="Conv1",
    ),
    "mobilenet_v3_small": _mobilenet_v3("Small", {0.75: 583_160, 1.0: 939_120}),
    "mobilenet_v3_large": _mobilenet_v3("Large", {0.75: 1_808_736, 1.0: 2_996_352}),
    "resnet50": _resnet("ResNet50", "resnet50", "resnet", "caffe", 23_587_712),
    "resnet101": _resnet("ResNet101", "resnet101", "resnet", "caffe", 42_658_176),
    "resnet152": _resnet("ResNet152", "resnet152", "resnet", "caffe", 58_370_944),
    "resnet50_v2": _resnet("ResNet50V2", "resnet50v2", "resnet_v2", "symmetric", 23_564_800),
    "resnet101_v2": _resnet("ResNet101V2", "resnet101v2", "resnet_v2", "symmetric", 42_626_560),
    "resnet152_v2": _resnet("ResNet152V2", "resnet152v2", "resnet_v2", "symmetric", 58_331_648),
    "vgg16": _tf_kernels("vgg16", "VGG16", "caffe", 32, 14_714_688, "block1_conv1"),
    "vgg19": _tf_kernels("vgg19", "VGG19", "caffe", 32, 20_024_384, "block1_conv1"),
    # Inception's convolutions are named by Keras's counters (conv2d, conv2d_1, ...): no stem
    "inception_v3": _tf_kernels("inception_v3", "InceptionV3", "symmetric", 75, 21_802_784, ""),
    "inception_resnet_v2": _tf_kernels(
        "inception_resnet_v2", "InceptionResNetV2", "symmetric", 75, 54_336_736, ""
    ),
    "xception": _tf_kernels("xception", "Xception", "symmetric", 71, 20_861_480, "block1_conv1"),
    "densenet121": _densenet(121, 7_037_504),
    "densenet169": _densenet(169, 12_642_880),
    "densenet201": _densenet(201, 18_321_984),
    "efficientnet_b0": _efficientnet("B0", 4_049_570),
    "efficientnet_b1": _efficientnet("B1", 6_575_238),
    "efficientnet_b2": _efficientnet("B2", 7_768_568),
    "efficientnet_b3": _efficientnet("B3", 10_783_534),
    "efficientnet_b4": _efficientnet("B4", 17_673_822),
    "efficientnet_b5": _efficientnet("B5", 28_513_526),
    "efficientnet_b6": _efficientnet("B6", 40_960_142),
    "efficientnet_b7": _efficientnet("B7", 64_097_686),
    "efficientnet_v2_b0": _efficientnet_v2("B0", 5_919_312),
    "efficientnet_v2_b1": _efficientnet_v2("B1", 6_931_124),
    "efficientnet_v2_b2": _efficientnet_v2("B2", 8_769_374),
    "efficientnet_v2_b3": _efficientnet_v2("B3", 12_930_622),
    "efficientnet_v2_s": _efficientnet_v2("S", 20_331_360),
    "efficientnet_v2_m": _efficientnet_v2("M", 53_150_388),
    "efficientnet_v2_l": _efficientnet_v2("L", 117_746_848),
    "convnext_tiny": _convnext("Tiny", 27_820_128),
    "convnext_small": _convnext("Small", 49_454_688),
    "convnext_base": _convnext("Base", 87_566_464),
    "convnext_large": _convnext("Large", 196_230_336),
    "convnext_xlarge": _convnext("XLarge", 348_147_968),
    "nasnet_mobile": _nasnet("Mobile", 4_269_716),
    "nasnet_large": _nasnet("Large", 84_916_818),
}


def _mobilenet_alpha_text(alpha: float) -> str:
    """keras.applications.mobilenet's file-name spelling of alpha."""
    return {1.0: "1_0", 0.75: "7_5", 0.5: "5_0"}.get(alpha, "2_5")


def imagenet_url(member: Member, alpha: float, image_size: int) -> str:
    """The file `weights=\"imagenet\"` downloads for this width and input size: MobileNet
    and V2 publish one per input size (Keras falls back to 224 for any other)."""
    return member.url.format(
        alpha=float(alpha),
        alpha_text=_mobilenet_alpha_text(alpha),
        rows=image_size if image_size in (128, 160, 192, 224) else 224,
        rows_v2=image_size if image_size in (96, 128, 160, 192, 224) else 224,
    )


def cache_name(member: Member, alpha: float, image_size: int) -> str:
    """The download's file name in Keras's cache (~/.keras/models)."""
    return member.cache_name or imagenet_url(member, alpha, image_size).rsplit("/", 1)[1]


def fitting(fingerprint: int) -> list[tuple[str, float]]:
    """The (arch, alpha) pairs whose ImageNet weights hold this many values."""
    return [
        (arch, alpha)
        for arch, member in ZOO.items()
        for alpha, count in member.fingerprints.items()
        if count == fingerprint
    ]
