"""Child process of the kill -9 test: enrol (and now and then remove) identities in a loop until killed.

    python enrol_loop.py GALLERY KEYS_DIR FACES.npz MODEL_HASH TAG

FACES.npz holds real templates (``emb``) and aligned crops (``crops``). Prints ``ready`` once the gallery is
open, then enrols ``TAG-<n>`` with 3 templates and their 3 crops per transaction, removing every 5th
identity it made, as fast as it can. The parent kills it at a random moment.
"""
import sys

import numpy as np

from hsst.gallery.keys import FileKeys
from hsst.gallery.store import GalleryStore

TEMPLATES = 3


def main() -> None:
    gallery, keys_dir, faces, model, tag = sys.argv[1:6]
    data = np.load(faces)
    emb, crops = data["emb"], data["crops"]
    store = GalleryStore.open(gallery, FileKeys.from_dir(keys_dir), model)
    print("ready", flush=True)
    n = 0
    while True:
        rows = [(n * TEMPLATES + i) % len(emb) for i in range(TEMPLATES)]
        store.enrol(f"{tag}-{n}", np.ascontiguousarray(emb[rows]), name=f"person {n}",
                    attributes={"templates": TEMPLATES}, photos=[crops[r] for r in rows])
        if n % 5 == 4:
            store.remove(f"{tag}-{n - 2}")
        n += 1


if __name__ == "__main__":
    main()
