"""experiments/appearance_leak.py: a pixel leaks only when it is a training colour the held-out person lacks."""


import numpy as np
import pytest
from script_kit import loaded_script

RED, GREEN, BLUE, GREY = (200, 30, 30), (30, 200, 30), (30, 30, 200), (128, 128, 128)


@pytest.fixture(scope="module")
def leak():
    with loaded_script("experiments/appearance_leak.py") as module:
        yield module


def video(colour_of_block, frames=4, size=8):
    """Grey frames whose frames 1.. carry a 4x4 block (a quarter of each frame) in ``colour_of_block``."""
    v = np.full((frames, size, size, 3), GREY, dtype=np.uint8)
    v[1:, :4, :4] = colour_of_block
    return v


def test_own_colours_never_leak(leak):
    own = video(BLUE)
    assert leak.leak_fraction(own, own, np.array([RED], np.float32)) == 0.0


def test_a_foreign_block_leaks_its_share(leak):
    own = video(BLUE)
    assert leak.leak_fraction(video(RED), own, np.array([RED], np.float32)) == pytest.approx(0.25)
    near_red = tuple(c + 10 for c in RED)  # within the tolerance of the training colour
    assert leak.leak_fraction(video(near_red), own, np.array([RED], np.float32)) == pytest.approx(0.25)
    assert leak.leak_fraction(video(GREEN), own, np.array([RED], np.float32)) == 0.0  # neither: not a leak


def test_a_colour_both_people_share_is_not_a_leak(leak):
    own = video(RED)  # the held-out person wears red too
    assert leak.leak_fraction(video(RED), own, np.array([RED], np.float32)) == 0.0


def test_person_colours_hold_both_shades(leak):
    from flashctl_synth.figure import FAR_SHADE

    look = {k: (100, 100, 100) for k in leak.COLOUR_KEYS} | {"shirt": (200, 100, 50),
                                                           "background_colors": [(10, 20, 30), (40, 50, 60)]}
    colours = leak.person_colours(look)
    assert colours.shape == (2 * (len(leak.COLOUR_KEYS) + 2), 3)
    assert any(np.allclose(c, [int(200 * FAR_SHADE), int(100 * FAR_SHADE), int(50 * FAR_SHADE)]) for c in colours)


def test_moving_share_counts_only_what_moved(leak):
    own = video(BLUE)
    red = video(RED)  # the block is the only thing that moves, and all of it leaks
    assert leak.moving_leak_fraction(red, own, np.array([RED], np.float32)) == pytest.approx(1.0)
    still = np.repeat(red[:1], 4, axis=0)  # nothing moves: no leak can be where nothing moved
    assert leak.moving_leak_fraction(still, own, np.array([RED], np.float32)) == 0.0
