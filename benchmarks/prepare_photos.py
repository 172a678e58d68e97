"""Writes the default model's training photos and the held-out validation photos.

    python benchmarks/prepare_photos.py     # -> bench_runs/photos/, bench_runs/data/val/

Needs Debian's wallpaper packages (see benchmarks/harness.py); made once, reused after.
"""

from harness import RUNS, prepare_data, prepare_photos

if __name__ == "__main__":
    photos = prepare_photos(RUNS / "photos")
    _, val = prepare_data()
    print(f"train: {len(list(photos.iterdir()))} images in {photos.relative_to(RUNS.parent)}; "
          f"val: {len(list(val.iterdir()))} in {val.relative_to(RUNS.parent)}")
