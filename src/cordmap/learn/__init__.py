"""Automated segmentation: the published 3D U-Net, its data, training, inference and metrics."""
