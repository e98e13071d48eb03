"""Deterministic stand-ins for /describe (image -> 4 prompts) and /shorten (prompt -> 5 prompts)."""

from __future__ import annotations

import hashlib
import re

__all__ = ["KEYCAPS", "describe_prompts", "describe_text", "shorten_prompts", "shorten_text"]

KEYCAPS = ["1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣"]

_SUBJECTS = ["a fox", "a lighthouse", "a girl with butterfly wings", "a city at dusk", "a teapot", "a dragon"]
_STYLES = ["watercolor", "flat vector clipart", "cinematic lighting", "ukiyo-e", "pixel art", "oil on canvas"]
_EXTRAS = ["soft pastel colors", "high detail", "dreamy background", "bold outlines", "muted palette"]


def describe_prompts(seed: str) -> list[str]:
    digest = hashlib.sha256(seed.encode()).digest()
    out = []
    for i in range(4):
        s = _SUBJECTS[(digest[i] + i) % len(_SUBJECTS)]
        st = _STYLES[digest[i + 4] % len(_STYLES)]
        ex = _EXTRAS[digest[i + 8] % len(_EXTRAS)]
        out.append(f"A simple drawing of {s}, in the style of {st}, {ex} --ar 1:1")
    return out


def describe_text(prompts: list[str]) -> str:
    """Embed description: ``1️⃣ p`` lines separated by a blank line (as the recorded result)."""
    return "\n\n".join(f"{KEYCAPS[i]} {p}" for i, p in enumerate(prompts))


def _tokens(prompt: str) -> list[str]:
    body = prompt.split(" --", 1)[0]
    return [t for t in re.split(r"[,\s]+", body) if t]


def shorten_prompts(prompt: str) -> list[str]:
    """Five progressively shorter prompts (always five, even for one-word prompts)."""
    toks = _tokens(prompt) or ["image"]
    out = []
    for i in range(5):
        keep = max(1, len(toks) - i * max(1, len(toks) // 5))
        out.append(", ".join(toks[:keep]))
    return out


def shorten_text(prompt: str) -> str:
    """Embed description in the recorded layout: important tokens, bar chart, shortened prompts."""
    toks = _tokens(prompt) or ["image"]
    digest = hashlib.sha256(prompt.encode()).digest()
    weights = [round(1.0 - (digest[i % 32] / 255) * 0.99, 2) if i else 1.0 for i in range(len(toks))]
    line = " ".join(
        f"**{t}** ({w:.2f})" if w >= 0.09 else f"{t} ({w:.2f})" for t, w in zip(toks, weights, strict=True)
    )
    ranked = sorted(zip(weights, toks, strict=True), key=lambda x: -x[0])[:6]
    bars = "\n".join(
        "█" * max(1, round(w * 10)) + "░" * (10 - max(1, round(w * 10))) + f" {t}" for w, t in ranked
    )
    prompts = "\n\n".join(f"{KEYCAPS[i]} {p}" for i, p in enumerate(shorten_prompts(prompt)))
    return f"## Important tokens\n{line}\n\n{bars}\n## Shortened prompts\n{prompts}"
