#!/usr/bin/python3
"""The PyTorch peer of the image-folder decoding rate: torchvision's ImageFolder + DataLoader reading
every image of ROOT/train and ROOT/test once (grey, ToTensor), as `gpubackprop train --data ROOT`
decodes them on its first pass. Prints one JSON line: images, seconds, images_per_second.

    /usr/bin/python3 bench/imagefolder_peer.py ROOT [--workers 2] [--channels 1]
(Debian: python3-torchvision python3-pil)
"""
import argparse, json, os, time

import torch
from torchvision import datasets, transforms


def main():
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--channels", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(1)
    t = transforms.Compose([transforms.Grayscale(a.channels), transforms.ToTensor()])
    start = time.perf_counter()
    images = 0
    for split in ("train", "test"):
        loader = torch.utils.data.DataLoader(datasets.ImageFolder(os.path.join(a.root, split), transform=t), batch_size=256, num_workers=a.workers)
        for x, _ in loader:
            images += x.shape[0]
    seconds = time.perf_counter() - start
    print(json.dumps({"peer": "torchvision ImageFolder + DataLoader", "workers": a.workers, "images": images, "seconds": round(seconds, 3),
                      "images_per_second": round(images / seconds)}))


if __name__ == "__main__":
    main()
