#!/usr/bin/python3
"""Writes the JPEG test images that StbImageWriteSharp cannot make (tests/images/), each beside PIL's decoding:

    progressive.jpg      a progressive (multi-scan) YCbCr JPEG, 4:2:0
    cmyk.jpg             an Adobe CMYK JPEG (four components, as Photoshop writes them)
    sharp-422.jpg        4:2:2 chroma (half width), baseline, and sharp-422-progressive.jpg the same progressive
    sharp-420.jpg        4:2:0 chroma (half width, half height)
    sharp-440.jpg        4:4:0 chroma (half height; written by cjpeg -sample 1x2, PIL cannot)
    narrow-420.jpg       4:2:0, 3 pixels wide (chroma 2 samples wide: libjpeg repeats, it does not interpolate)
    narrow-422.jpg       4:2:2, 4 pixels wide (the same)
    restart-420.jpg      4:2:0 baseline with a restart marker after every MCU (cjpeg -restart 1B), and
    restart-progressive.jpg  the same picture progressive, a restart after every MCU of each scan: the scans'
                         data is cut in tests (a scan that ends before its last block is refused)
    NAME.rgb             PIL's decoding to 8-bit RGB, the raw bytes, row-major (for cmyk.jpg: PIL's CMYK to RGB)

progressive.jpg and cmyk.jpg are 21x13 (odd sides, so chroma subsampling has edges) of smooth gradients, so that two
decoders' IDCTs and upsampling differ by a few levels at most. The sharp and narrow ones are seeded random pixels of
saturated colours, whose chroma changes from one pixel to the next: a chroma upsampler that weights the wrong samples
shows by tens of levels there (stb's 4:2:2 upsampler did, in the second-to-last column). Needs Debian's python3-pil
and libjpeg-turbo-progs (cjpeg).

    /usr/bin/python3 scripts/make-jpeg-fixtures.py [OUT]       (default tests/images)
"""
import os, random, subprocess, sys, tempfile

from PIL import Image


def sharp(w, h, seed):
    rng = random.Random(seed)
    img = Image.new("RGB", (w, h))
    img.putdata([tuple(rng.choice([0, 30, 128, 255]) for _ in range(3)) for _ in range(w * h)])
    return img


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "images")
    os.makedirs(out, exist_ok=True)
    w, h = 21, 13
    img = Image.new("RGB", (w, h))
    img.putdata([(40 + 8 * x, 60 + 12 * y, 200 - 4 * x - 5 * y) for y in range(h) for x in range(w)])
    img.save(os.path.join(out, "progressive.jpg"), quality=95, progressive=True)
    img.convert("CMYK").save(os.path.join(out, "cmyk.jpg"), quality=95)
    picture = sharp(w, h, 23)
    picture.save(os.path.join(out, "sharp-422.jpg"), quality=90, subsampling="4:2:2")
    picture.save(os.path.join(out, "sharp-422-progressive.jpg"), quality=90, subsampling="4:2:2", progressive=True)
    picture.save(os.path.join(out, "sharp-420.jpg"), quality=90, subsampling="4:2:0")
    with tempfile.TemporaryDirectory() as tmp:
        ppm = os.path.join(tmp, "sharp.ppm")
        picture.save(ppm)
        subprocess.run(["cjpeg", "-quality", "90", "-sample", "1x2,1x1,1x1", "-outfile", os.path.join(out, "sharp-440.jpg"), ppm], check=True)
        subprocess.run(["cjpeg", "-quality", "90", "-sample", "2x2,1x1,1x1", "-restart", "1B", "-outfile", os.path.join(out, "restart-420.jpg"), ppm], check=True)
        subprocess.run(["cjpeg", "-quality", "90", "-progressive", "-restart", "1B", "-outfile", os.path.join(out, "restart-progressive.jpg"), ppm], check=True)
    sharp(3, 5, 29).save(os.path.join(out, "narrow-420.jpg"), quality=90, subsampling="4:2:0")
    sharp(4, 5, 31).save(os.path.join(out, "narrow-422.jpg"), quality=90, subsampling="4:2:2")
    for name in ("progressive", "cmyk", "sharp-422", "sharp-422-progressive", "sharp-420", "sharp-440", "narrow-420", "narrow-422", "restart-420", "restart-progressive"):
        with Image.open(os.path.join(out, name + ".jpg")) as j:
            print(name, j.size, j.mode, j.info.get("progressive", 0), j.info.get("adobe", None), j.layer if hasattr(j, "layer") else "")
            with open(os.path.join(out, name + ".rgb"), "wb") as f:
                f.write(j.convert("RGB").tobytes())


if __name__ == "__main__":
    main()
