#!/usr/bin/python3
"""Writes the JPEG test images that StbImageWriteSharp cannot make (tests/images/), each beside PIL's decoding:

    progressive.jpg      a progressive (multi-scan) YCbCr JPEG, 4:2:0
    cmyk.jpg             an Adobe CMYK JPEG (four components, as Photoshop writes them)
    NAME.rgb             PIL's decoding to 8-bit RGB, the raw bytes, row-major (for cmyk.jpg: PIL's CMYK to RGB)

The picture is 21x13 (odd sides, so chroma subsampling has edges) of smooth gradients, so that two decoders'
IDCTs and upsampling differ by a few levels at most. Needs Debian's python3-pil.

    /usr/bin/python3 scripts/make-jpeg-fixtures.py [OUT]       (default tests/images)
"""
import os, sys

from PIL import Image


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "images")
    os.makedirs(out, exist_ok=True)
    w, h = 21, 13
    img = Image.new("RGB", (w, h))
    img.putdata([(40 + 8 * x, 60 + 12 * y, 200 - 4 * x - 5 * y) for y in range(h) for x in range(w)])
    img.save(os.path.join(out, "progressive.jpg"), quality=95, progressive=True)
    img.convert("CMYK").save(os.path.join(out, "cmyk.jpg"), quality=95)
    for name in ("progressive", "cmyk"):
        with Image.open(os.path.join(out, name + ".jpg")) as j:
            print(name, j.mode, j.info.get("progressive", 0), j.info.get("adobe", None))
            with open(os.path.join(out, name + ".rgb"), "wb") as f:
                f.write(j.convert("RGB").tobytes())


if __name__ == "__main__":
    main()
