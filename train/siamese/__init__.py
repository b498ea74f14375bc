"""HSST parts: prototype queues and the moving-average gallery-net."""
from hsst.train.siamese.ema import ema_update, make_gallery_net
from hsst.train.siamese.queue import PrototypeQueue

__all__ = ["PrototypeQueue", "ema_update", "make_gallery_net"]
