from alexnet_lab.models.alexnet import ACTIVATIONS, ARCHITECTURES, AlexNet, count_parameters

__all__ = ["ACTIVATIONS", "ARCHITECTURES", "AlexNet", "count_parameters"]
