"""cordmap: plan epidural stimulation over the lumbosacral spinal cord from MRI."""

__version__ = "0.1.0"
