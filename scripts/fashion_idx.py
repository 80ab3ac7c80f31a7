"""IDX reading shared by the scripts that turn Fashion-MNIST into other formats."""
import gzip, os, struct, sys

# The subset embedded in the library: the default source of the scripts.
EMBEDDED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "Data", "FashionMnistSubset")


def idx(path):
    """(dims, data bytes) of an IDX file, raw or .gz."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    rank = struct.unpack(">i", data[:4])[0] & 0xFF
    dims = struct.unpack(">" + "i" * rank, data[4:4 + 4 * rank])
    return dims, data[4 + 4 * rank:]


def find(directory, name):
    """NAME or NAME.gz in DIRECTORY, or exit naming both."""
    for candidate in (name, name + ".gz"):
        p = os.path.join(directory, candidate)
        if os.path.exists(p):
            return p
    sys.exit(f"{directory}: no {name}[.gz]")
