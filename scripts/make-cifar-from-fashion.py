#!/usr/bin/python3
"""Writes a CIFAR-10-format folder from real images: Fashion-MNIST (by default the subset embedded in
the library), each 28x28 grey image padded to 32x32 and tinted into RGB (red = the pixel, green = 3/4 of
it, blue = 1/2 of it, rounded down), so that the three channels have their own statistics:

    OUT/data_batch_1.bin   (6,000 records: a label byte, then the red, green and blue 32x32 planes)
    OUT/test_batch.bin     (1,000 records)
    OUT/batches.meta.txt   (the ten class names, one a line)

`gpubackprop train --data OUT --model examples/models/cifar-resnet.json` then trains a 32x32 RGB
residual network on it end to end, with per-channel statistics and class names; no download.

    /usr/bin/python3 scripts/make-cifar-from-fashion.py OUT [DIR]
"""
import os, struct, sys

from fashion_idx import EMBEDDED, find, idx

NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def record(label, image):
    padded = bytearray(32 * 32)
    for y in range(28):
        padded[(y + 2) * 32 + 2:(y + 2) * 32 + 30] = image[y * 28:(y + 1) * 28]
    return bytes([label]) + bytes(padded) + bytes(p * 3 // 4 for p in padded) + bytes(p // 2 for p in padded)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    src = sys.argv[2] if len(sys.argv) > 2 else EMBEDDED
    os.makedirs(out, exist_ok=True)
    for name, prefix in (("data_batch_1.bin", "train"), ("test_batch.bin", "t10k")):
        (n, h, w), pixels = idx(find(src, f"{prefix}-images-idx3-ubyte"))
        (_,), labels = idx(find(src, f"{prefix}-labels-idx1-ubyte"))
        assert (h, w) == (28, 28)
        with open(os.path.join(out, name), "wb") as f:
            for i in range(n):
                f.write(record(labels[i], pixels[i * 784:(i + 1) * 784]))
        print(f"{name}: {n} records")
    with open(os.path.join(out, "batches.meta.txt"), "w") as f:
        f.write("\n".join(NAMES) + "\n")


if __name__ == "__main__":
    main()
