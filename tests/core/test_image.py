"""hsst.core.image: listing image files, and telling an unreadable file without decoding every image."""


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


def _real_photo_bytes(lfw_dir, fmt):
    import cv2
    import numpy as np

    jpg = (lfw_dir / "AJ_Cook" / "AJ_Cook_0001.jpg").read_bytes()
    if fmt == ".jpg":
        return jpg
    ok, buf = cv2.imencode(fmt, cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR))
    assert ok
    return buf.tobytes()


def test_image_problem_agrees_with_read_image(lfw_dir, orl_dir, tmp_path):
    import pytest

    from hsst.core.errors import ImageReadError
    from hsst.core.image import image_problem, read_image

    cases = {"orl.pgm": (orl_dir / "s1" / "1.pgm").read_bytes(), "empty.jpg": b"",
             "text.jpg": b"a text file named .jpg", "garbage.png": bytes(range(256)) * 4}
    for fmt in (".jpg", ".png", ".bmp"):
        data = _real_photo_bytes(lfw_dir, fmt)
        cases[f"good{fmt}"] = data
        cases[f"truncated{fmt}"] = data[: len(data) * 3 // 4]
        cases[f"header-only{fmt}"] = data[:60]
    cases["trailer.jpg"] = cases["good.jpg"] + b"\0" * 500     # bytes after the JPEG's end: still readable
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        problem = image_problem(path)
        try:
            read_image(path)
        except ImageReadError:
            assert problem, f"{name}: read_image fails, image_problem passes it"
        else:
            assert problem is None, f"{name}: readable, yet {problem}"
    assert image_problem(tmp_path / "empty.jpg") == "empty file (0 bytes)"
    assert "cannot decode" in image_problem(tmp_path / "truncated.jpg")
    with pytest.raises(ImageReadError):
        read_image(tmp_path / "truncated.png")
