#!/usr/bin/env python3
"""Builds src/Data/FashionMnistSubset/ (the embedded default dataset) from Debian's dataset-fashion-mnist:
the first 6,000 training and 1,000 test images and labels of the official files, gzip level 9, mtime 0
(so the output is reproducible). Fashion-MNIST: Zalando SE, MIT licence."""
import gzip, struct, sys
src = sys.argv[1] if len(sys.argv) > 1 else '/usr/share/datasets/fashion-mnist/'
out = 'src/Data/FashionMnistSubset/'
def subset(name, n, rank):
    raw = gzip.open(src + name + '.gz').read()
    dims = [struct.unpack('>i', raw[4 + 4 * i:8 + 4 * i])[0] for i in range(rank)]
    per = 1
    for d in dims[1:]:
        per *= d
    header = raw[:4] + struct.pack('>i', n) + raw[8:4 + 4 * rank]
    with gzip.GzipFile(out + name + '.gz', 'wb', compresslevel=9, mtime=0) as f:
        f.write(header + raw[4 + 4 * rank:4 + 4 * rank + n * per])
subset('train-images-idx3-ubyte', 6000, 3); subset('train-labels-idx1-ubyte', 6000, 1)
subset('t10k-images-idx3-ubyte', 1000, 3); subset('t10k-labels-idx1-ubyte', 1000, 1)
