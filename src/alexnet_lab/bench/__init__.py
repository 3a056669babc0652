"""Measurements: `make bench` (suite.py drives common, pipeline, training and stream) and
`make gpu-check` (gpu_check.py); `make recipe-check` (recipe_check.py: do the presets leave
chance?). Speed is reported as ratios taken side by side, never as
timed tests."""
