"""hsst.export.selftest on machines without TensorRT: the advice fits the machine (Jetson Nano: the trtexec path)."""
import pytest

from hsst.export.selftest import jetson_release, no_tensorrt_advice, system_report

NANO_RELEASE = "# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref, EABI: aarch64, DATE: Fri Jun  9"


def test_nano_gets_the_path_that_works_there():
    release = jetson_release(NANO_RELEASE)
    assert release == {"l4t": "32.7.4", "jetpack": "4.6.x"}
    advice = no_tensorrt_advice({"jetpack": release["jetpack"], "python": "3.8.10"})
    assert "Python 3.6 only" in advice and "3.8.10" in advice
    assert "hsst-export --trt" in advice and "trtexec" in advice and "backend onnxruntime" in advice
    assert "firmware_configs/jetson-nano.yaml" in advice and "release/8.2" in advice


def test_other_machines_get_the_jetpack_advice():
    assert "--system-site-packages" in no_tensorrt_advice({"jetpack": "6.1 / 6.2", "python": "3.10.12"})
    assert "--system-site-packages" in no_tensorrt_advice(system_report())  # this machine, as it is


def test_selftest_prints_the_advice_and_exits_3(capsys, monkeypatch):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    from hsst.export import selftest

    monkeypatch.setattr(selftest, "jetson_release", lambda text=None: {"l4t": "32.7.4", "jetpack": "4.6.x"})
    assert selftest.main([]) == 3
    err = capsys.readouterr().err
    assert err.startswith("TensorRT not available") and "trtexec" in err and "Traceback" not in err
