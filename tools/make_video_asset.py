"""Writes mjsim/assets/clip.mp4: the small, playable H.264 clip mjsim serves for every video job.

mjsim only serves these bytes (it does not need PyAV at run time); run this again to remake them:

    .venv/bin/python tools/make_video_asset.py

Needs PyAV (``av``, a dev dependency). 24 frames of 64x64 at 12 fps: a colour bar sliding across.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "mjsim" / "assets" / "clip.mp4"
EDGE = 64
FRAMES = 24
FPS = 12


def _frame(i: int) -> bytes:
    rows = bytearray()
    bar = (i * EDGE // FRAMES) % EDGE
    for _y in range(EDGE):
        for x in range(EDGE):
            rows += bytes((230, 120, 40)) if abs(x - bar) < 8 else bytes((30, 60, 120))
    return bytes(rows)


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(OUT), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width = stream.height = EDGE
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, FPS)
        stream.options = {"preset": "veryslow", "crf": "35"}
        for i in range(FRAMES):
            image = Image.frombytes("RGB", (EDGE, EDGE), _frame(i))
            frame = av.VideoFrame.from_image(image)
            frame.pts = i
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
