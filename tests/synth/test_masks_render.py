"""Building blocks of the mask synthesis: UV space and pose, templates, the rasteriser (no model needed)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hsst.core.errors import ConfigError, InputError
from hsst.face.mesh import LEFT_EYE_CONTOUR, RIGHT_EYE_CONTOUR, canonical_vertices
from hsst.synth.mask.render import RenderMesh, fit_shading, rasterize
from hsst.synth.mask.templates import TEMPLATES, MaskStyle, albedo_at, get_template, render_texture, sample_style
from hsst.synth.mask.uv import fit_pose, vertex_uv


def _rot_y(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[math.cos(t), 0, math.sin(t)], [0, 1, 0], [-math.sin(t), 0, math.cos(t)]])


def test_pose_of_canonical_and_rotated_mesh():
    canon = canonical_vertices().astype(np.float64)
    pose = fit_pose(canon * 40 + [100, 120, 0])
    assert pose.scale == pytest.approx(40, rel=1e-4) and pose.rms < 1e-4
    assert abs(pose.yaw) < 1e-3 and abs(pose.pitch) < 1e-3 and abs(pose.roll) < 1e-3
    turned = canon @ _rot_y(-30).T * 40 + [100, 120, 0]   # forward (0, 0, -1) -> towards +x: the image right
    pose = fit_pose(turned)
    assert pose.yaw == pytest.approx(30, abs=1e-3)
    back = pose.to_canonical(turned)
    assert np.allclose(back, canon, atol=1e-4)
    with pytest.raises(InputError):
        fit_pose(np.zeros((10, 3)))


def test_uv_is_canonical_xy():
    uv = vertex_uv()
    assert uv.shape == (468, 2) and uv.dtype == np.float32
    # eye centres at (-1, 0) and (1, 0)
    assert np.allclose(uv[list(LEFT_EYE_CONTOUR)].mean(0), [-1, 0], atol=0.05)
    assert np.allclose(uv[list(RIGHT_EYE_CONTOUR)].mean(0), [1, 0], atol=0.05)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_templates_stay_below_the_eyes_and_render(name):
    template = get_template(name)
    uv = vertex_uv()
    eyes = uv[list(LEFT_EYE_CONTOUR) + list(RIGHT_EYE_CONTOUR)]
    # the top edge passes at least 0.3 units (~1 cm) under every eye contour vertex: eyes are never covered
    assert np.all(template.top_edge(eyes[:, 0]) > eyes[:, 1] + 0.3)
    style = sample_style(template, np.random.default_rng(0))
    tex = render_texture(style)
    assert tex.maps.dtype == np.uint8 and tex.maps[:, :, 1].max() == 255
    assert render_texture(style) is tex   # cached per template
    albedo, weight = albedo_at(np.zeros(4, np.float32), np.full(4, 2.0, np.float32), style)
    assert albedo.shape == (4, 3) and np.all((albedo >= 0) & (albedo <= 1))


def test_unknown_template():
    with pytest.raises(ConfigError, match="unknown mask type"):
        get_template("snorkel")


def test_cloth_patterns_differ():
    u, v = np.meshgrid(np.linspace(-1, 1, 64, dtype=np.float32), np.linspace(1, 3, 64, dtype=np.float32))
    for pattern in ("stripes", "checks", "dots"):
        style = MaskStyle("cloth", "red", (45, 40, 170), pattern=pattern, colour2_bgr=(230, 230, 230))
        albedo, weight = albedo_at(u, v, style)
        assert 0.05 < weight.mean() < 0.95, pattern
    plain = albedo_at(u, v, MaskStyle("cloth", "red", (45, 40, 170)))[0]
    assert np.ptp(plain, axis=(0, 1)).max() == 0


def test_rasterize_culls_back_faces_and_orders_by_depth():
    # two overlapping triangles: the near one (z=1) hides the far one (z=5); a third, clockwise one is culled
    xy = np.array([[10, 10], [50, 10], [10, 50], [12, 12], [60, 12], [12, 60], [70, 70], [70, 90], [90, 70]],
                  np.float32)
    z = np.array([5, 5, 5, 1, 1, 1, 0, 0, 0], np.float32)
    tris = np.array([[0, 2, 1], [3, 5, 4], [6, 8, 7]])
    tris_ccw = tris[:, [0, 2, 1]]   # make the first two positive in y-down image coordinates
    tris_ccw[2] = [6, 7, 8]         # clockwise on screen: a back face
    mesh = RenderMesh(xy=xy, z=z, uv=xy.copy(), shade=np.ones(9, np.float32), triangles=tris_ccw,
                      textured=np.array([True, True, True]))
    raster = rasterize(mesh, (100, 100))
    x0, y0 = raster.origin
    assert raster.ids[20 - y0, 20 - x0] == 1                      # near triangle wins the overlap
    assert not np.any(raster.ids == 2)                             # back face culled
    assert x0 + raster.ids.shape[1] < 70                           # and not even in the region
    # texture coordinates are interpolated exactly (uv == xy here)
    assert raster.map_x[30 - y0, 25 - x0] == pytest.approx(25, abs=1e-3)
    assert raster.map_y[30 - y0, 25 - x0] == pytest.approx(30, abs=1e-3)


def test_fit_shading_ignores_dark_details():
    h, w = 60, 80
    light = np.tile(np.linspace(80, 160, w, dtype=np.float32), (h, 1))
    lum = light.copy()
    lum[25:35, 30:40] = 20                                          # a dark nostril-like blob
    fitted = fit_shading(lum, np.ones((h, w), bool))
    assert np.abs(fitted - light).max() < 8
