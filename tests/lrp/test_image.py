"""Tests of lrp_lightning.image: colour maps, normalisation and rendering, with Zennit 0.5.1 as oracle."""

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from lrp_lightning import image as lrp_image
from lrp_lightning.image import (
    COLOR_MAPS,
    ColorMap,
    get_cmap,
    grid,
    heatmap,
    heatmap_batch,
    imgify,
    normalize,
    overlay,
    register_cmap,
    to_png_bytes,
)

zennit_cmap = pytest.importorskip("zennit.cmap")
zennit_image = pytest.importorskip("zennit.image")

LEVELS = [1.0, 0.5, 0.73, 1.5, 2.0, 0.0, -1.0]


def rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


@pytest.fixture
def zennit_imgify(monkeypatch):
    """Zennit's imgify, made loadable under current Pillow without changing a colour.

    Zennit 0.5.1 hands ``putpalette`` a (256, 3) numpy array; Pillow 13 stores it as is and then
    fails to load the image ("only integer scalar arrays can be converted to a scalar index"). The
    shim passes the very same palette as bytes, so the oracle's pixels are Zennit's.
    """
    original = zennit_image.palette
    monkeypatch.setattr(zennit_image, "palette", lambda cmap="bwr", level=1.0: original(cmap, level).tobytes())
    return zennit_image.imgify


@pytest.fixture
def clean_registry():
    before = dict(COLOR_MAPS)
    yield
    COLOR_MAPS.clear()
    COLOR_MAPS.update(before)


# --- colour maps -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(zennit_image.CMAPS))
def test_builtin_palettes_equal_zennit(name):
    assert name in COLOR_MAPS
    for level in LEVELS:
        ours = COLOR_MAPS[name].palette(level)
        theirs = zennit_image.CMAPS[name].palette(level)
        assert ours.dtype == np.uint8 and ours.shape == (256, 3)
        np.testing.assert_array_equal(ours, theirs, err_msg=f"{name} at level {level}")


@pytest.mark.parametrize(
    "spec",
    [
        "f00,0f0,00f,ff0,0ff",  # unindexed colours spread evenly (rounded down)
        "40:123456,c0:abcdef",  # held colour before the first and after the last index
        "8:fff, 9:000 ,a0:f0f",  # one-digit indices are doubled; spaces are ignored
        "000,10:f00,0f0,00f,e0:fff,888",  # runs of unindexed colours between indices
        "000,80:f00,80:00f,fff",  # a hard step: two colours at one index
    ],
)
def test_spec_palettes_equal_zennit(spec):
    for level in LEVELS:
        np.testing.assert_array_equal(ColorMap(spec).palette(level), zennit_cmap.ColorMap(spec).palette(level))


def test_three_stop_spec_interpolates_exact_colours():
    palette = ColorMap("0:000,80:f00,ff:fff").palette()
    assert palette[0].tolist() == [0, 0, 0]
    assert palette[64].tolist() == [127, 0, 0]  # halfway to red: 127.5, rounded down as in Zennit
    assert palette[128].tolist() == [255, 0, 0]
    assert palette[192].tolist() == [255, 128, 128]  # 255 * 64 / 127 = 128.5
    assert palette[255].tolist() == [255, 255, 255]


def test_named_map_anchor_colours():
    assert COLOR_MAPS["hot"].palette()[255].tolist() == [255, 255, 255]
    assert COLOR_MAPS["hot"].palette()[0].tolist() == [0, 0, 0]
    assert COLOR_MAPS["coldnhot"].palette()[128].tolist() == [0, 0, 0]
    assert COLOR_MAPS["coldnhot"].palette()[0].tolist() == [0, 255, 255]
    assert COLOR_MAPS["bwr"].palette()[128].tolist() == [255, 255, 255]
    assert COLOR_MAPS["seismic"].palette()[128].tolist() == [208, 208, 208]
    # level 0 uses one colour: the map at 127.5, just short of the white stop at 128
    assert (COLOR_MAPS["bwr"].palette(0.0) == [254, 254, 255]).all()


def test_stops_equal_the_spec_they_spell():
    stops = ColorMap([(0.0, (0, 0, 0)), (0.5, "#f00"), (1.0, (255, 255, 255))])
    spec = ColorMap("0:000,80:f00,ff:fff")
    np.testing.assert_array_equal(stops.palette(), spec.palette())
    assert stops.spec == "00:000000,80:ff0000,ff:ffffff"
    np.testing.assert_array_equal(ColorMap(stops.spec).palette(1.7), stops.palette(1.7))
    assert spec.stops == ((0, (0, 0, 0)), (128, (255, 0, 0)), (255, (255, 255, 255)))


def test_colormap_call_and_palette_is_read_only():
    cmap = get_cmap("gray")
    np.testing.assert_allclose(cmap(np.array([0.0, 0.25, 1.0, 2.0])), [[0] * 3, [0.25] * 3, [1] * 3, [1] * 3])
    with pytest.raises(ValueError, match="read-only"):
        cmap.palette()[0] = 7


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fff", "needs at least 2"),
        ("000,80:fff,40:f00", "below the previous index 80"),
        ("000,ffff", "colour 'ffff'"),
        ("000,123:fff", "index '123'"),
        ("000,,fff", "entry 2"),
        ([(0.0, (0, 0, 0)), (1.5, (1, 2, 3))], "outside"),
        ([(0.0, (0, 0, 0)), (1.0, (0.5, 0.5, 0.5))], "multiply by 255"),
        ([(0.0, (0, 0, 0)), (1.0, "xyz")], "hex"),
    ],
)
def test_malformed_colour_maps_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        ColorMap(spec)


def test_unknown_cmap_name_lists_known_names():
    expected = r"get_cmap: cmap must be a registered colour map \(.*, got 'viridis'$"
    with pytest.raises(ValueError, match=expected) as info:
        get_cmap("viridis")
    for name in ("bwr", "coldnhot", "gray", "hot", "seismic"):
        assert name in str(info.value)


def test_get_cmap_resolves_names_specs_stops_and_instances():
    assert get_cmap("bwr") is COLOR_MAPS["bwr"]
    cmap = ColorMap("000,fff")
    assert get_cmap(cmap) is cmap
    np.testing.assert_array_equal(get_cmap("000,fff").palette(), COLOR_MAPS["gray"].palette())
    np.testing.assert_array_equal(
        get_cmap([(0.0, (0, 0, 0)), (1.0, (255, 255, 255))]).palette(), COLOR_MAPS["gray"].palette()
    )


def test_register_cmap(clean_registry):
    registered = register_cmap("my_green", "000,0f0")
    assert get_cmap("my_green") is registered and registered.name == "my_green"
    assert get_cmap("my_green").palette()[255].tolist() == [0, 255, 0]
    with pytest.raises(ValueError, match="overwrite=True"):
        register_cmap("my_green", "000,f00")
    register_cmap("my_green", ColorMap("000,f00"), overwrite=True)
    assert get_cmap("my_green").palette()[255].tolist() == [255, 0, 0]
    with pytest.raises(ValueError, match=r"register_cmap: name must be a letter or '_' .*, got 'has,comma'$"):
        register_cmap("has,comma", "000,fff")
    with pytest.raises(TypeError, match=r"ColorMap: spec must be a spec string .*, got 3$"):
        ColorMap(3)


# --- normalisation ---------------------------------------------------------------------------------


def test_normalize_symmetric_and_absolute():
    relevance = np.array([[-2.0, 0.0, 1.0]])
    np.testing.assert_allclose(normalize(relevance), [[0.0, 0.5, 0.75]])
    np.testing.assert_allclose(normalize(relevance, symmetric=False), [[0.0, 2 / 3, 1.0]])


def test_normalize_level_is_contrast_around_the_centre():
    relevance = np.array([[-2.0, 0.0, 1.0]])
    np.testing.assert_allclose(normalize(relevance, level=0.5), [[0.25, 0.5, 0.625]])
    np.testing.assert_allclose(normalize(relevance, level=2.0), [[0.0, 0.5, 1.0]])


def test_normalize_is_per_sample_for_batches():
    base = np.array([[-1.0, 0.5], [0.0, 1.0]])
    batch = np.stack([base, 10 * base, base - 3])
    scaled = normalize(batch)
    np.testing.assert_allclose(scaled[0], scaled[1])
    np.testing.assert_allclose(scaled[0], [[0.0, 0.75], [0.5, 1.0]])
    np.testing.assert_allclose(normalize(batch, symmetric=False)[2], [[0.0, 0.75], [0.5, 1.0]])
    # as one map instead, the largest sample sets the scale
    np.testing.assert_allclose(normalize(batch, batched=False)[0], [[0.45, 0.525], [0.5, 0.55]])


def test_normalize_bounds():
    relevance = np.array([[-1.0, 0.0, 1.0]])
    # symmetric: one given bound mirrors to the other
    np.testing.assert_allclose(normalize(relevance, vmax=2.0), [[0.25, 0.5, 0.75]])
    np.testing.assert_allclose(normalize(relevance, symmetric=False, vmin=0.0, vmax=0.5), [[0.0, 0.0, 1.0]])
    per_sample = normalize(np.stack([relevance, relevance]), vmax=[1.0, 4.0])
    np.testing.assert_allclose(per_sample[:, 0], [[0.0, 0.5, 1.0], [0.375, 0.5, 0.625]])
    with pytest.raises(ValueError, match="upper bound is below the lower bound"):
        normalize(relevance, vmin=1.0, vmax=-1.0)
    with pytest.raises(ValueError, match=r"vmin of shape \(3,\)"):
        normalize(np.zeros((2, 4, 4)), vmin=[0.0, 1.0, 2.0], vmax=5.0)


def test_normalize_constant_maps_are_the_centre():
    np.testing.assert_array_equal(normalize(np.zeros((3, 4))), np.full((3, 4), 0.5))
    np.testing.assert_array_equal(normalize(np.full((3, 4), 7.0), symmetric=False), np.full((3, 4), 0.5))
    batch = np.stack([np.zeros((2, 2)), np.eye(2)])
    np.testing.assert_array_equal(normalize(batch)[0], np.full((2, 2), 0.5))
    np.testing.assert_array_equal(normalize(batch)[1], [[1.0, 0.5], [0.5, 1.0]])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_relevance_raises(bad):
    relevance = np.ones((3, 3))
    relevance[1, 2] = bad
    with pytest.raises(ValueError, match=r"(1 NaN|1 infinite).*\(1, 2\)"):
        normalize(relevance)
    with pytest.raises(ValueError, match="nan_to_num"):
        heatmap(relevance)
    with pytest.raises(ValueError, match="NaN"):
        imgify(relevance)


def test_normalize_dtypes_and_tensors():
    half = torch.tensor([[-1.0, 0.0, 0.5]], dtype=torch.float16)
    assert normalize(half).dtype == np.float32
    np.testing.assert_allclose(normalize(half), [[0.0, 0.5, 0.75]])
    assert normalize(np.array([[-1.0, 1.0]])).dtype == np.float64
    np.testing.assert_allclose(normalize(torch.tensor([[-2.0, 2.0]], dtype=torch.bfloat16)), [[0.0, 1.0]])
    with pytest.raises(TypeError, match="numeric"):
        normalize([["a", "b"]])


# --- rendering -------------------------------------------------------------------------------------


def test_heatmap_zero_relevance_is_palette_index_128():
    relevance = np.array([[-1.0, 0.0, 1.0], [0.5, 0.0, -0.5]], dtype=np.float32)
    image = heatmap(relevance)
    assert image.mode == "RGB" and image.size == (3, 2)
    pixels = rgb(image)
    coldnhot = COLOR_MAPS["coldnhot"].palette()
    assert pixels[0, 1].tolist() == coldnhot[128].tolist() == [0, 0, 0]
    assert pixels[0, 0].tolist() == [0, 255, 255]  # most negative: cyan
    assert pixels[0, 2].tolist() == [255, 255, 255]  # most positive: white
    assert pixels[1, 0].tolist() == coldnhot[192].tolist()  # 0.75 is bin 192
    assert rgb(heatmap(relevance, cmap="bwr"))[1, 1].tolist() == [255, 255, 255]


def test_heatmap_hot_absolute_spans_black_to_white():
    pixels = rgb(heatmap(np.array([[3.0, 5.0, 7.0]]), cmap="hot", symmetric=False))
    assert pixels[0, 0].tolist() == [0, 0, 0]
    assert pixels[0, 2].tolist() == [255, 255, 255]
    # the middle value is bin 128: between red at 85 and yellow at 170, green 255 * 43 / 85 = 129.0
    assert pixels[0, 1].tolist() == COLOR_MAPS["hot"].palette()[128].tolist() == [255, 129, 0]


def test_heatmap_all_zero_map_is_the_centre_colour():
    pixels = rgb(heatmap(torch.zeros(4, 5), cmap="seismic"))
    assert (pixels == [208, 208, 208]).all()


def test_heatmap_sums_channels_and_takes_tensors():
    rng = np.random.default_rng(0)
    channels = rng.normal(size=(3, 6, 5)).astype(np.float32)
    np.testing.assert_array_equal(rgb(heatmap(torch.from_numpy(channels))), rgb(heatmap(channels.sum(0))))
    with pytest.raises(ValueError, match="heatmap_batch"):
        heatmap(np.zeros((2, 3, 4, 4)))


def test_heatmap_level_uses_the_level_palette():
    relevance = np.array([[-1.0, -0.25, 0.5, 1.0]])
    pixels = rgb(heatmap(relevance, cmap="bwr", level=0.5))
    palette = COLOR_MAPS["bwr"].palette(0.5)
    np.testing.assert_array_equal(pixels[0], palette[[0, 96, 192, 255]])


def test_heatmap_batch_normalises_each_sample():
    base = np.array([[-1.0, 0.0], [0.25, 1.0]])
    images = heatmap_batch(np.stack([base, 100 * base])[:, None])  # (N, C, H, W)
    assert len(images) == 2
    np.testing.assert_array_equal(rgb(images[0]), rgb(images[1]))
    np.testing.assert_array_equal(rgb(images[0]), rgb(heatmap(base)))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        heatmap_batch(np.zeros((4, 4)))


def test_grid_places_images_row_by_row():
    colours = [(10 * k, 0, 0) for k in range(1, 6)]
    tiles = [Image.new("RGB", (3, 2), colour) for colour in colours]
    canvas = grid(tiles, nrow=2, padding=1, fill=(0, 0, 255))
    assert canvas.size == (2 * 3 + 1, 3 * 2 + 2)
    pixels = rgb(canvas)
    assert pixels[0, 0].tolist() == [10, 0, 0]
    assert pixels[0, 4].tolist() == [20, 0, 0]  # second column starts after 3 px + 1 px padding
    assert pixels[0, 3].tolist() == [0, 0, 255]  # padding
    assert pixels[3, 0].tolist() == [30, 0, 0]  # second row
    assert pixels[6, 0].tolist() == [50, 0, 0]
    assert pixels[6, 4].tolist() == [0, 0, 255]  # empty last cell
    assert grid(tiles).size == (3 * 3, 2 * 2)  # default: ceil(sqrt(5)) = 3 per row


def test_grid_mixes_modes_and_rejects_mismatched_sizes():
    mixed = grid([Image.new("L", (2, 2), 9), heatmap(np.eye(2))])
    assert mixed.mode == "RGB" and rgb(mixed)[0, 0].tolist() == [9, 9, 9]
    with pytest.raises(ValueError, match="one size"):
        grid([Image.new("RGB", (2, 2)), Image.new("RGB", (3, 2))])
    with pytest.raises(ValueError, match=r"grid: images must be a non-empty sequence of PIL images, got list \[\]"):
        grid([])
    with pytest.raises(ValueError, match=r"grid: nrow must be an int >= 1 \(images per row\), got 0"):
        grid([heatmap(np.eye(2))], nrow=0)
    with pytest.raises(ValueError, match=r"grid: padding must be an int >= 0 \(pixels\), got True"):
        grid([heatmap(np.eye(2))], padding=True)
    with pytest.raises(TypeError, match="heatmap"):
        grid([np.zeros((2, 2))])


def test_png_round_trip_keeps_pixels():
    image = heatmap(np.random.default_rng(1).normal(size=(8, 7)), cmap="coldnhot")
    data = to_png_bytes(image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "PNG" and decoded.size == (7, 8)
    np.testing.assert_array_equal(rgb(decoded), rgb(image))
    with pytest.raises(TypeError, match="PIL image"):
        to_png_bytes(np.zeros((2, 2)))


def test_overlay_alpha_ends_are_the_input_and_the_heatmap():
    rng = np.random.default_rng(2)
    picture = rng.uniform(size=(3, 6, 5)).astype(np.float32)  # (C, H, W) in [0, 1]: used as is
    relevance = rng.normal(size=(6, 5))
    expected_input = np.rint(picture.transpose(1, 2, 0) * 255).astype(np.uint8)
    np.testing.assert_array_equal(rgb(overlay(picture, relevance, alpha=0.0)), expected_input)
    np.testing.assert_array_equal(rgb(overlay(picture, relevance, alpha=1.0)), rgb(heatmap(relevance)))
    half = rgb(overlay(picture, relevance, alpha=0.5, cmap="hot"))
    hot = rgb(heatmap(relevance, cmap="hot"))
    np.testing.assert_array_equal(half, np.rint((expected_input / 1.0 + hot) / 2).astype(np.uint8))


def test_overlay_inputs_pil_gray_and_out_of_range():
    relevance = np.zeros((2, 2))
    pil = Image.new("RGB", (2, 2), (10, 20, 30))
    assert rgb(overlay(pil, relevance, alpha=0.0))[0, 0].tolist() == [10, 20, 30]
    # standardised input (outside [0, 1]) is stretched min-max; one channel is shown as gray
    standardised = torch.tensor([[[-2.0, 0.0], [1.0, 2.0]]])
    np.testing.assert_array_equal(rgb(overlay(standardised, relevance, alpha=0.0))[..., 0], [[0, 128], [191, 255]])
    # bwr's centre is white: alpha 0.5 over black gives half white
    assert rgb(overlay(np.zeros((2, 2)), relevance, alpha=0.5, cmap="bwr"))[0, 0].tolist() == [128] * 3


def test_overlay_errors():
    with pytest.raises(ValueError, match=r"4x4 \(H x W\).*3x3"):
        overlay(np.zeros((3, 4, 4)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"overlay: alpha must be a number in \[0, 1\] \(0: input only.*got 1.5$"):
        overlay(np.zeros((4, 4)), np.zeros((4, 4)), alpha=1.5)
    with pytest.raises(ValueError, match="level must be a finite number, got inf"):
        overlay(np.zeros((4, 4)), np.zeros((4, 4)), level=float("inf"))
    with pytest.raises(ValueError, match="input_image has shape"):
        overlay(np.zeros((5, 4, 4)), np.zeros((4, 4)))


# --- imgify against Zennit -------------------------------------------------------------------------


def assert_same_image(ours: Image.Image, theirs: Image.Image) -> None:
    assert ours.mode == theirs.mode and ours.size == theirs.size
    np.testing.assert_array_equal(rgb(ours), rgb(theirs))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cmap": "coldnhot", "symmetric": True},
        {"cmap": "coldnhot", "symmetric": False},
        {"cmap": "hot"},
        {"cmap": "bwr", "symmetric": True, "level": 1.5},
        {"cmap": "gray", "vmin": -0.5, "vmax": 2.0},
        {"symmetric": True, "vmax": 1.0},  # Zennit: a single bound is not mirrored
        {"cmap": "00f,80:fff,f00", "level": 0.7},
    ],
)
def test_imgify_matches_zennit_for_maps(zennit_imgify, kwargs):
    relevance = np.random.default_rng(3).normal(size=(7, 9)).astype(np.float32)
    # The same float32 arithmetic and Zennit's floor(255 x) quantisation: equality is exact.
    assert_same_image(imgify(relevance, **kwargs), zennit_imgify(relevance, **kwargs))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"grid": True},
        {"grid": True, "symmetric": True, "cmap": "coldnhot"},
        {"grid": (2, 3), "cmap": "seismic"},
        {"grid": (1, 2)},  # fewer cells than samples: the rest is dropped
        {"grid": True, "gridfill": 200},
    ],
)
def test_imgify_matches_zennit_for_grids(zennit_imgify, kwargs):
    batch = np.random.default_rng(4).normal(size=(5, 6, 7))
    assert_same_image(imgify(batch, **kwargs), zennit_imgify(batch, **kwargs))


def test_imgify_matches_zennit_for_rgb_uint8_and_tensors(zennit_imgify):
    rng = np.random.default_rng(5)
    colour = rng.uniform(size=(4, 3, 6, 5))
    assert_same_image(imgify(colour, grid=True), zennit_imgify(colour, grid=True))
    assert_same_image(imgify(colour[0]), zennit_imgify(colour[0]))
    assert_same_image(imgify(colour[0].transpose(1, 2, 0)), zennit_imgify(colour[0].transpose(1, 2, 0)))
    assert imgify(colour[0]).mode == "RGB"
    levels = (rng.uniform(size=(6, 5)) * 255).astype(np.uint8)
    assert_same_image(imgify(levels, cmap="cold"), zennit_imgify(levels, cmap="cold"))
    tensor = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    assert_same_image(
        imgify(tensor, grid=True, symmetric=True), zennit_imgify(tensor.numpy(), grid=True, symmetric=True)
    )


def test_imgify_symmetric_zero_is_index_127_as_in_zennit():
    image = imgify(np.array([[-1.0, 0.0, 1.0]]), symmetric=True)
    assert image.mode == "P"
    assert np.asarray(image).tolist() == [[0, 127, 255]]


def test_imgify_rejects_bad_shapes():
    with pytest.raises(ValueError, match="colour axis"):
        imgify(np.zeros((5, 4, 4)))
    with pytest.raises(ValueError, match="with grid"):
        imgify(np.zeros((4, 4)), grid=True)


def test_rendering_emits_no_warnings():
    relevance = np.random.default_rng(6).normal(size=(2, 4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images = heatmap_batch(relevance)
        grid(images)
        overlay(np.ones((3, 4, 4)), relevance[0])
        imgify(relevance, grid=True)
        imgify(relevance[0], cmap="hot").convert("RGB")
        to_png_bytes(heatmap(relevance[0]))


def test_module_does_not_import_peers():
    from lrp_lightning import _colormaps

    for module in (lrp_image, _colormaps):
        source = open(module.__file__, encoding="utf-8").read()
        assert "import zennit" not in source and "from zennit" not in source
