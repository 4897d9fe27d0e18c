"""A reader-study pack as it lies on disk, for the server, the command line and the statistics; light (standard
library only), so that the study server starts in a moment. `migros.reader_study.pack` builds packs.

A pack is a folder:

- `study.json`: what the server may show - the question, the calibration slices by class, the items (pairs of
  image tokens, in random order, with their class) and the power statement. No method names.
- `key.json`: which method made each image, the compared pairs of methods and the FIDs that chose them. The
  server copies it into its database and never serves it.
- `images/<token>.png`: every image re-encoded to one size, 8-bit grayscale PNG, with no metadata chunk; the
  token is random (`secrets`), so neither the file name nor the bytes tell the method.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

CLASS_NAMES = {0: "healthy", 1: "tumour"}  # slice and manifest labels
CALIBRATION, TRIAL = "calibration", "trial"
REAL = "real"  # the `method` of a calibration slice
STUDY_JSON, KEY_JSON, IMAGES = "study.json", "key.json", "images"
TOKEN = re.compile(r"[A-Za-z0-9_-]{22}")  # secrets.token_urlsafe(16)
FORMAT = 1


class PackError(ValueError):
    """A pack that cannot be built or read; the message says why and what to change."""


@dataclass(frozen=True)
class Pack:
    """A pack folder as the server and the command line read it."""

    folder: Path
    study: dict
    key: dict

    @classmethod
    def load(cls, folder: Path) -> "Pack":
        folder = Path(folder)
        try:
            study = json.loads((folder / STUDY_JSON).read_text())
            key = json.loads((folder / KEY_JSON).read_text())
        except FileNotFoundError as error:
            raise PackError(f"{folder} is not a reader-study pack (no {Path(error.filename).name}); build it with "
                            "rule reader_study_pack") from error
        if study.get("format") != FORMAT or study["pack_id"] != key["pack_id"]:
            raise PackError(f"{folder}: study.json and key.json are not one pack of format {FORMAT}; rebuild it")
        return cls(folder, study, key)

    @property
    def pack_id(self) -> str:
        return self.study["pack_id"]

    def image_path(self, token: str) -> Path | None:
        """The file of an image token of this pack; None for anything else (a path cannot be smuggled in)."""
        if not TOKEN.fullmatch(token):
            return None
        path = self.folder / IMAGES / f"{token}.png"
        return path if path.is_file() else None
