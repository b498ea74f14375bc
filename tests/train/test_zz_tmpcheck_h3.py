import torch
def test_zz_flag():
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() >= 1
    print("threads", torch.get_num_threads())
