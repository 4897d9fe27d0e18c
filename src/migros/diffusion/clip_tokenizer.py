"""SD's CLIP tokenizer, rebuilt offline (nothing is downloaded) for the pipelines built here rather than loaded.

Those are the demo model (`demo.architecture`) and SD v1.5's architecture with random weights
(`sd15_architecture`), which also writes the tokenizer's files into its Hugging Face cache.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import json
import tempfile
from pathlib import Path

from transformers import CLIPTokenizer

CLIP_MAX_LENGTH = 77
CLIP_VOCAB_SIZE = 49408
# CLIP keeps the first 49152 - 256 - 2 merges of its BPE file (line 0 is a header): with the 256 byte symbols,
# their 256 end-of-word forms and the two special tokens this gives the 49408-token vocabulary of SD's tokenizer.
CLIP_MERGES = 49152 - 256 - 2


def clip_tokenizer() -> CLIPTokenizer:
    """SD's tokenizer, built from the CLIP BPE vocabulary that ships inside the open-clip-torch wheel.

    transformers 5 builds an empty tokenizer from `CLIPTokenizer(vocab_file=..., merges_file=...)`, so the files
    are written to a folder and loaded with `from_pretrained`.
    """
    with tempfile.TemporaryDirectory() as folder:
        write_clip_vocabulary(Path(folder))
        tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=CLIP_MAX_LENGTH)
    if len(tokenizer) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"CLIP tokenizer has {len(tokenizer)} tokens, expected {CLIP_VOCAB_SIZE}")
    return tokenizer


def write_clip_vocabulary(folder: Path) -> None:
    """CLIP's vocab.json and merges.txt, the files of SD's tokenizer folder, into `folder`."""
    vocab, merges = _clip_vocabulary()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _clip_vocabulary() -> tuple[dict[str, int], tuple[str, ...]]:
    """CLIP's token → id table and merge list, in the order CLIP assigns ids."""
    bpe_file = importlib.resources.files("open_clip") / "bpe_simple_vocab_16e6.txt.gz"
    merges = tuple(gzip.decompress(bpe_file.read_bytes()).decode("utf-8").split("\n")[1 : CLIP_MERGES + 1])
    symbols = _byte_symbols()
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(merge.split()) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def _byte_symbols() -> list[str]:
    """Byte-level BPE's printable stand-in for each byte, in CLIP's id order: printable bytes first, then the rest."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return [chr(byte) for byte in printable] + [chr(256 + rank) for rank in range(len(others))]
