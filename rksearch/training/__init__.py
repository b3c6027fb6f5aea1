"""One trainer and one training step, used by train, the proxy, calibrate and bench."""
