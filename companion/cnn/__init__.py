"""Part 2, convolutional networks: convolution from scratch, and the classic architectures.

Import from the submodules; importing ``companion`` alone stays cheap:

- ``conv``, ``pooling``, ``depthwise``: convolution and pooling as loops and im2col, depthwise
  separable convolution; ``complexity``: parameters, multiply-adds, latency.
- Architectures (builders default to torchvision's ImageNet configuration, with its parameter names,
  and take ``num_classes``, ``in_channels`` and ``small_input``): ``lenet``, ``alexnet`` (+ ``lrn``),
  ``vgg``, ``googlenet``, ``inception_v3``, ``resnet`` (ResNet, ResNeXt), ``densenet``, ``mobilenet``;
  ``pretrained`` loads torchvision's ImageNet weights into them.
- Training: ``label_smoothing``, ``recipe``, ``transfer`` (heads, freezing, discriminative learning
  rates), ``linear_probe`` (logistic regression on frozen features), ``speedrun`` (a fast CIFAR-10
  recipe for the full profile).
"""
