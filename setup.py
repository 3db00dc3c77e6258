from pathlib import Path

from setuptools import find_packages, setup

version = {}
for line in Path("descplug/__init__.py").read_text().splitlines():
    if line.startswith("__version__"):
        exec(line, version)

weights = [str(p) for p in sorted(Path("weights").glob("*")) if p.suffix in (".pt", ".json", ".md") or p.name == "DEFAULT"]

setup(
    name="descplug",
    version=version["__version__"],
    description="Distilled CNN patch descriptors for COLMAP, hloc and OpenCV pipelines",
    long_description=Path("README.md").read_text() if Path("README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["descplug", "descplug.*", "benchmarks", "benchmarks.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "kornia>=0.7",
        "opencv-python-headless>=4.8",
        "h5py>=3.8",
        "pycolmap>=3.13",
        "numpy>=1.24",
        "scipy>=1.10",
        "tqdm>=4.60",
        "pyyaml>=6.0",
    ],
    extras_require={
        "train": ["scikit-image>=0.21"],
        "bench": ["matplotlib>=3.7"],
        "test": ["pytest>=7", "scikit-image>=0.21", "matplotlib>=3.7"],
    },
    data_files=[("share/descplug/weights", weights)],
    entry_points={"console_scripts": ["descplug=descplug.cli:main"]},
)
