"""Writers of tiny data sets in each benchmark layout (imported by the benchmark tests)."""
import cv2
import h5py
import numpy as np

# Mild homographies (image 1 -> image k) of the fixture sequences.
HOMOGRAPHIES = [
    np.array([[0.95, 0.08, 6.0], [-0.06, 0.97, 4.0], [1e-5, 2e-5, 1.0]]),
    np.array([[1.05, -0.05, -8.0], [0.04, 1.02, -3.0], [-2e-5, 1e-5, 1.0]]),
]


def write_sequence(folder, image, homographies=HOMOGRAPHIES, ext="png"):
    """A homography sequence: 1.<ext> is `image` (grey; written BGR), k.<ext> its warp by H_1_k."""
    folder.mkdir(parents=True)
    h, w = image.shape
    images = [image] + [cv2.warpPerspective(image, H, (w, h), borderMode=cv2.BORDER_REFLECT) for H in homographies]
    for k, im in enumerate(images, start=1):
        if not cv2.imwrite(str(folder / f"{k}.{ext}"), cv2.cvtColor(im, cv2.COLOR_GRAY2BGR)):
            raise OSError(f"cannot write {folder / f'{k}.{ext}'}")
    for k, H in enumerate(homographies, start=2):
        np.savetxt(folder / f"H_1_{k}", H)
    return folder


def write_strecha_camera(path, K, R, t, size):
    """Strecha camera file from a world-to-camera pose: R is written camera-to-world, with the centre C."""
    rows = [*K, *R.T, -R.T @ t]
    text = "\n".join(" ".join(f"{v:.17g}" for v in row) for row in rows)
    path.write_text(text + f"\n{size[0]} {size[1]}\n")


def write_imc_calibration(path, K, R, t):
    with h5py.File(path, "w") as f:
        f["K"], f["R"], f["T"] = K, R, t
