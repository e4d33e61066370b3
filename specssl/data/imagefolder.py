"""An image folder that never stops a run mid-epoch on a bad file.

torchvision's ``ImageFolder`` decodes an image when it is first drawn, so an empty or corrupt
file stops training with a traceback whenever the shuffle reaches it. Here:

* empty (zero-byte) files are left out when the folder is scanned, with one warning that
  counts them and names the first;
* ``validate=True`` decodes every image once up front (progress on stderr every 5%) and leaves
  out those that fail, with one counted warning;
* a file that still fails to decode when drawn is skipped: the next image in index order is
  returned instead, with a warning naming it and counting the skips of this process so far
  (:attr:`SafeImageFolder.skipped`). If :data:`MAX_CONSECUTIVE_FAILURES` files in a row fail,
  the folder is unreadable and a one-line ``OSError`` says so.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, has_file_allowed_extension

#: Consecutive undecodable images after which a folder is reported as unreadable.
MAX_CONSECUTIVE_FAILURES = 20

#: Folders validated in this process -> their undecodable ``(path, reason)`` pairs, so the
#: training, kNN-bank and evaluation datasets of one folder decode it only once.
_VALIDATED: dict[str, list[tuple[str, str]]] = {}


def _decodes(path: str) -> str | None:
    """``None`` when ``path`` decodes to an RGB image, else the reason (one line)."""
    try:
        default_loader(path)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBomb
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return None


class SafeImageFolder(ImageFolder):
    """``ImageFolder`` of ``root/<class>/<image>`` that leaves out empty files (and, with
    ``validate``, undecodable ones) and skips a file that fails to decode when drawn.

    Args:
        root: folder with one sub-folder per class.
        transform: applied to each PIL image.
        validate: decode every image once now and leave out those that fail.
    """

    def __init__(self, root: str | Path, transform: Any = None, validate: bool = False) -> None:
        self.empty: list[str] = []
        self.skipped: list[str] = []
        super().__init__(str(root), transform=transform, is_valid_file=self._non_empty_image)
        if self.empty:
            warnings.warn(
                f"imagefolder {root}: left out {len(self.empty)} empty (zero-byte) files, "
                f"e.g. {self.empty[0]}",
                stacklevel=2,
            )
        if validate:
            self._drop_undecodable(root)

    def _non_empty_image(self, path: str) -> bool:
        if not has_file_allowed_extension(path, IMG_EXTENSIONS):
            return False
        if os.path.getsize(path) == 0:
            self.empty.append(path)
            return False
        return True

    def _drop_undecodable(self, root: str | Path) -> None:
        total = len(self.samples)
        key = str(Path(root).absolute())
        if key not in _VALIDATED:
            bad, step = [], max(1, total // 20)
            for i, (path, _) in enumerate(self.samples):
                reason = _decodes(path)
                if reason is not None:
                    bad.append((path, reason))
                if (i + 1) % step == 0 or i + 1 == total:
                    print(f"\rvalidating {root}: {i + 1}/{total} images", end="", file=sys.stderr)
            print(file=sys.stderr)
            _VALIDATED[key] = bad
        bad = _VALIDATED[key]
        if bad:
            drop = {p for p, _ in bad}
            self.samples = [s for s in self.samples if s[0] not in drop]
            self.imgs = self.samples
            self.targets = [t for _, t in self.samples]
            warnings.warn(
                f"imagefolder {root}: left out {len(bad)} undecodable images of {total}, e.g. "
                f"{bad[0][0]} ({bad[0][1]})",
                stacklevel=3,
            )

    def __getitem__(self, index: int) -> tuple[Any, int]:
        for attempt in range(MAX_CONSECUTIVE_FAILURES):
            i = (index + attempt) % len(self.samples)
            path = self.samples[i][0]
            try:
                return super().__getitem__(i)
            except OSError as err:  # PIL.UnidentifiedImageError and truncated files included
                self.skipped.append(path)
                warnings.warn(
                    f"imagefolder: skipped undecodable image {path} ({type(err).__name__}); "
                    f"{len(self.skipped)} skipped so far in this process (check them all up "
                    "front with data.validate_images=true)",
                    stacklevel=2,
                )
        raise OSError(
            f"imagefolder: {MAX_CONSECUTIVE_FAILURES} images in a row from {self.root} failed "
            f"to decode (last: {path}); the folder is unreadable"
        )
