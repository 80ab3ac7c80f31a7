#!/usr/bin/python3
"""Writes Fashion-MNIST as an image folder in torchvision's ImageFolder layout, one grey PNG a image:

    OUT/train/<class>/<index>.png   (class folders 0_T-shirt-top .. 9_Ankle-boot, sorted as the labels are)
    OUT/test/<class>/<index>.png

from the four IDX files of DIR (raw or .gz), by default the subset embedded in the library
(src/Data/FashionMnistSubset: 6,000 training and 1,000 test images). The pixels are the IDX bytes
unchanged. Beside it, OUT-idx/ holds the same images as IDX files in the folder's order (by class,
then by index), so that `train --data OUT --channels 1 --image-size 28x28 --normalize 0.286/0.353`
and `train --data OUT-idx` read the same images in the same order and, with the same seed, give the
same metrics bit for bit (the project's tests check the same on a smaller set).

    /usr/bin/python3 scripts/make-image-folder.py OUT [DIR]        (needs Debian's python3-pil)
"""
import os, struct, sys

from fashion_idx import EMBEDDED, find, idx

from PIL import Image

NAMES = ["T-shirt-top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle-boot"]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    src = sys.argv[2] if len(sys.argv) > 2 else EMBEDDED
    os.makedirs(out + "-idx", exist_ok=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        (n, h, w), pixels = idx(find(src, f"{prefix}-images-idx3-ubyte"))
        (m,), labels = idx(find(src, f"{prefix}-labels-idx1-ubyte"))
        assert n == m, f"{n} images, {m} labels"
        for i in range(n):
            folder = os.path.join(out, split, f"{labels[i]}_{NAMES[labels[i]]}")
            os.makedirs(folder, exist_ok=True)
            Image.frombytes("L", (w, h), pixels[i * h * w:(i + 1) * h * w]).save(os.path.join(folder, f"{i:05d}.png"))
        # The folder's order: by class, then by file name (the index, zero-padded).
        order = sorted(range(n), key=lambda i: (labels[i], i))
        with open(os.path.join(out + "-idx", f"{prefix}-images-idx3-ubyte"), "wb") as f:
            f.write(struct.pack(">iiii", 0x803, n, h, w) + b"".join(pixels[i * h * w:(i + 1) * h * w] for i in order))
        with open(os.path.join(out + "-idx", f"{prefix}-labels-idx1-ubyte"), "wb") as f:
            f.write(struct.pack(">ii", 0x801, n) + bytes(labels[i] for i in order))
        print(f"{split}: {n} images of {h}x{w} in {os.path.join(out, split)} and, in its order, {out}-idx")


if __name__ == "__main__":
    main()
