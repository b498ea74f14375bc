"""hsst.core.image: listing image files."""


def test_image_files_recurse_and_follow_linked_folders(tmp_path):
    import cv2
    import numpy as np

    from hsst.core.image import image_files

    real = tmp_path / "real" / "alice"
    real.mkdir(parents=True)
    cv2.imwrite(str(real / "a.png"), np.zeros((8, 8), np.uint8))
    (real / "notes.txt").write_text("not an image")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "alice").symlink_to(real, target_is_directory=True)  # split trees link identity folders
    assert image_files(tree) == [tree / "alice" / "a.png"]
