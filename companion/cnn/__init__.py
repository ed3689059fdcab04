"""Part 2, convolutional networks: convolution from scratch, and the classic architectures.

Import from the submodules (``companion.cnn.conv``, ``companion.cnn.lenet``); importing
``companion`` alone stays cheap.
"""
