"""Task ``speed``: descriptor time against OpenCV SIFT, measured in one run on one image.

On the same grey uint8 image and the same SIFT keypoints (top 4000 by response, contrast threshold
0.03; the same detector object serves every end-to-end run): OpenCV SIFT ``compute()``, descplug
patch extraction alone, and ``DescDis.compute()`` of every model, as ratios to SIFT; the network
alone in patches per second (fp32, and fp16 on CUDA); and per-image end to end (detect + extract +
describe, ``DescDis.detectAndCompute``) against OpenCV SIFT ``detectAndCompute``. Each time is the
median of several repeats after one warm-up run.
"""

import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from descplug import DescDis
from descplug.api import resolve_device
from descplug.detectors import detect, magnification_for
from descplug.handcrafted import rootsift
from descplug.images import load_image, to_uint8
from descplug.keypoints import as_keypoint_array
from descplug.patches import extract_patches

from . import report
from .methods import BASELINES, method_name

DEFAULT_IMAGE = Path(__file__).resolve().parents[2] / "shared/data/pose/strecha/fountain-P11/images/0000.jpg"
GENERATED_SHAPE = (1024, 1536)  # 1.5 MP, the size of the default image
# SIFT's default contrast threshold (0.04) finds only 3628 keypoints on the default image; 0.03 finds
# 6772, so every method gets the requested 4000 (the strongest by response).
CONTRAST_THRESHOLD = 0.03


def generated_image(shape=GENERATED_SHAPE, seed=0):
    """A textured grey uint8 test image: blurred noise at several scales (SIFT finds many keypoints)."""
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.float32)
    for sigma in (1.5, 3.0, 6.0, 12.0):
        noise = rng.standard_normal(shape).astype(np.float32)
        image += cv2.GaussianBlur(noise, (0, 0), sigma) * sigma
    return to_uint8((image - image.min()) / (image.max() - image.min()))


def median_time(fn, repeats, sync=None):
    """Median wall time of fn() over `repeats` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        if sync:
            sync()
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(gray, specs, max_keypoints=4000, repeats=5, device="auto", progress=True):
    """results {METHOD: {GROUP: metrics}} and data (image facts, patch extraction time)."""
    device = resolve_device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    sift = cv2.SIFT_create(nfeatures=max_keypoints, contrastThreshold=CONTRAST_THRESHOLD, enable_precise_upscale=True)
    keypoints = detect(gray, sift, max_keypoints)
    if not keypoints:
        raise ValueError("no SIFT keypoint in the speed image")
    sift_s = median_time(lambda: sift.compute(gray, keypoints), repeats)
    sift_e2e = median_time(lambda: sift.detectAndCompute(gray, None), repeats)
    results = {"sift": {"all": {"compute_s": sift_s, "compute_ratio": 1.0, "end_to_end_s": sift_e2e,
                                "end_to_end_ratio": 1.0}}}
    if "rootsift" in specs:
        t = median_time(lambda: rootsift(sift.compute(gray, keypoints)[1]), repeats)
        results["rootsift"] = {"all": {"compute_s": t, "compute_ratio": t / sift_s}}
    array = as_keypoint_array(keypoints, default_size=1.0)
    gray_float = load_image(gray)
    magnification = magnification_for("sift")
    extraction_s = median_time(lambda: extract_patches(gray_float, array, magnification, device=device), repeats, sync)
    for spec in tqdm([s for s in specs if s not in BASELINES], desc="models", disable=not progress):
        name = method_name(spec)
        if name in results:
            raise ValueError(f"two models share the name {name}")
        try:
            results[name] = _time_model(spec, gray, keypoints, sift, repeats, device, sync)
        except Exception as error:  # the model has no timings; the others go on
            report.failure(f"timing {name}", error)
            results[name] = {"all": {"failed": 1}}
            continue
        timings = results[name]["all"]
        timings.update(compute_ratio=timings["compute_s"] / sift_s, end_to_end_ratio=timings["end_to_end_s"] / sift_e2e)
    data = {"image_shape": list(gray.shape), "keypoints": len(keypoints), "device": str(device),
            "torch_threads": torch.get_num_threads(), "repeats": repeats,
            "patch_extraction_s": extraction_s, "patch_extraction_ratio": extraction_s / sift_s}
    return results, data


def _time_model(spec, gray, keypoints, sift, repeats, device, sync):
    """{GROUP: timings} of one model: compute, network alone (fp32; fp16 on CUDA), end to end."""
    extractor = DescDis(spec, device=device, detector=sift, max_keypoints=len(keypoints), half=False)
    patches = extractor.extract_patches(gray, keypoints)
    groups = {"all": {"compute_s": median_time(lambda: extractor.compute(gray, keypoints), repeats, sync),
                      "patches_per_s": _patches_per_s(extractor, patches, repeats, sync),
                      "end_to_end_s": median_time(lambda: extractor.detectAndCompute(gray), repeats, sync),
                      "failed": 0}}
    if device.type == "cuda":
        half = DescDis(spec, device=device, half=True)
        groups["fp16"] = {"patches_per_s": _patches_per_s(half, patches, repeats, sync)}
    return groups


def _patches_per_s(extractor, patches, repeats, sync):
    return len(patches) / median_time(lambda: extractor.describe_patches(patches), repeats, sync)


def add_arguments(parser):
    parser.add_argument("--image", help=f"test image (default: {DEFAULT_IMAGE} when present, else a generated "
                                        "1536x1024 image)")
    parser.add_argument("--max-keypoints", type=int, default=4000, help="SIFT keypoints (default: 4000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up (default: 5)")


def run(args, specs):
    if args.image:
        gray, source = to_uint8(load_image(args.image)), args.image
    elif DEFAULT_IMAGE.exists():
        gray, source = to_uint8(load_image(DEFAULT_IMAGE)), str(DEFAULT_IMAGE)
    else:
        gray, source = generated_image(), "generated"
    results, data = measure(gray, specs, args.max_keypoints, args.repeats, args.device, not args.no_progress)
    data = {"image": source, **data}
    protocol = ("One image, the same SIFT keypoints for every method; median of "
                f"{args.repeats} timed runs after a warm-up; {data['device']}, {data['torch_threads']} torch "
                f"threads; patch extraction alone: {1000 * data['patch_extraction_s']:.1f} ms "
                f"({data['patch_extraction_ratio']:.2f} x SIFT compute).")
    return report.document("speed", protocol, data, results), markdown_sections(results)


def markdown_sections(results):
    columns = [("compute (ms)", "all", "compute_ms", None), ("x SIFT compute", "all", "compute_ratio", None),
               ("patches/s", "all", "patches_per_s", None), ("patches/s fp16", "fp16", "patches_per_s", None),
               ("end to end (ms)", "all", "end_to_end_ms", None), ("x SIFT end to end", "all", "end_to_end_ratio", None)]
    in_ms = ("compute_s", "end_to_end_s")
    shown = {m: {g: {**v, **{k[:-2] + "_ms": 1000 * v[k] for k in in_ms if k in v}} for g, v in groups.items()}
             for m, groups in results.items()}
    return [("speed", report.table(shown, columns, digits=2))]


def plot(results, path):
    panels = [("x SIFT compute", "all", "compute_ratio", None), ("x SIFT end to end", "all", "end_to_end_ratio", None)]
    report.plot_bars(results, panels, "Time relative to OpenCV SIFT", path)
