"""Embedding spaces that turn text (or users) into points."""

from crowdtune.spaces.text import ENCODERS, TextEncoder, embed_texts

__all__ = ["ENCODERS", "TextEncoder", "embed_texts"]
