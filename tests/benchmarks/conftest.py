"""Fixtures of the benchmark tests (session-scoped: a tiny checkpoint and a rendered posed scene)."""
import pytest

from bench_fixtures import write_strecha_camera
from descplug import demo
from descplug.models import DesDisNet, save_checkpoint


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    """A tiny untrained descplug student, passed by path like any checkpoint."""
    return save_checkpoint(DesDisNet(width=4).eval(), tmp_path_factory.mktemp("weights") / "tiny4.pt")


@pytest.fixture(scope="session")
def rendered_scene(tmp_path_factory):
    """The descplug demo scene in the Strecha layout (images/, cameras/<image>.txt), 6 views."""
    root = tmp_path_factory.mktemp("posed") / "room"
    truth = demo.write_scene(root / "images", num_views=6)
    (root / "cameras").mkdir()
    K = demo.intrinsics()
    for name, (R, t) in truth.items():
        write_strecha_camera(root / "cameras" / f"{name}.txt", K, R, t, (demo.WIDTH, demo.HEIGHT))
    return root, truth
